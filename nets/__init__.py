"""The torch parts that training, the sidecar's techniques and evaluation share: the loss networks (VGG and
EfficientNet-Lite0 behind one interface), the perceptual losses, and images as every part reads them."""
