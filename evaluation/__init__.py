"""Judging stylized pictures on held-out photos, apart from the training that made them.

- ``quality``: the training loss's own measure (EfficientNet-Lite0 Gram ratio, content kept), run on what
  the server answers, and the labelled gallery.
- ``independent``: measures no training run optimized (VGG16 Gram in colour and grayscale, colour distance,
  edge F1, SSIM, stamped circles, edge bands, a colour-transfer baseline).
- ``droplets``: where a network hides a spike past instance norm (the cause of the stamps), inside the
  served picture or in its margin.
"""
