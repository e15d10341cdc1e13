"""`PatchNet`: the verifier's network, a small 2D CNN that reads a patch's z planes as channels."""

from __future__ import annotations

import torch
from torch import nn

BASE_WIDTHS = (24, 48, 64)  # channels of the three stages at width 1.0


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class PatchNet(nn.Module):
    """(N, planes, H, W) float patches -> (N,) motor logits.

    Three stages that each halve the size and widen (two 3x3 conv-BN-SiLU, the first with stride 2), global average
    pooling, dropout and one linear layer. At 40 x 40 px and width 1 it costs ~15 MFLOP a patch (a full-size stem
    before them cost a third more time and scored no better on the demo: docs/EXPERIMENTS.md).
    """

    def __init__(self, planes: int, width: float = 1.0):
        super().__init__()
        c = [max(4, round(w * width)) for w in BASE_WIDTHS]
        self.planes, self.width = planes, width
        self.features = nn.Sequential(
            _conv(planes, c[0], 2), _conv(c[0], c[0], 1),
            _conv(c[0], c[1], 2), _conv(c[1], c[1], 1),
            _conv(c[1], c[2], 2), _conv(c[2], c[2], 1),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c[2], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))[:, 0]
