"""The serving graph: uint8 HWC pixels in, uint8 HWC pixels out, any H x W.

Conversion to float, layout change, padding to what the strides need, cropping back and clamping
all live inside the ONNX graph, so the wire carries plain pixels and a Triton user needs no
stylecast code to call the model.
"""

from __future__ import annotations

import torch
from stylecast.training.networks import TransformerNet
from torch import nn
from torch.nn import functional as F

from stylecast.contract import SERVING_MARGIN, STRIDE


class ServingModel(nn.Module):
    """Wraps a TransformerNet with the wire contract's pre- and post-processing."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net
        self.multi = net.n_styles > 1

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        h, w = x.shape[2], x.shape[3]
        # Pad to a multiple of the network's stride (sizes stay symbolic in the exported graph).
        ph = (STRIDE - h % STRIDE) % STRIDE
        pw = (STRIDE - w % STRIDE) % STRIDE
        x = F.pad(x, [SERVING_MARGIN, SERVING_MARGIN + pw, SERVING_MARGIN, SERVING_MARGIN + ph], mode="replicate")
        y = self.net(x, style_weights if self.multi else None)
        y = y[:, :, SERVING_MARGIN:SERVING_MARGIN + h, SERVING_MARGIN:SERVING_MARGIN + w]
        y = torch.clamp(torch.round(y), 0.0, 255.0).to(torch.uint8)
        return y.permute(0, 2, 3, 1)
