"""The z-head: ultralytics' YOLOv8 Detect head plus a per-anchor z branch.

`ZHead` subclasses `Detect` the way ultralytics' own OBB / Pose heads do: a third branch ``cv4`` (two 3x3 Conv and a
1x1 conv to one channel per level) whose output joins the prediction dict as ``"z"`` (raw logits, shape
``(B, 1, anchors)``). In inference the decoded output is ``(B, 4 + nc + 1, anchors)``: xywh boxes, class scores, then
``sigmoid(z)`` = zenc in (0, 1), the z offset normalised to the stack span (see `kitlib.preprocess.zcode`).

Because z is appended after the class scores, NMS must be called with the real ``nc`` (with ``nc=0`` ultralytics
would read the z channel as a second class).
"""

from __future__ import annotations

import copy

from kitlib import runtime

runtime.prepare()

import torch  # noqa: E402
from torch import nn  # noqa: E402
from ultralytics.nn.modules.conv import Conv  # noqa: E402
from ultralytics.nn.modules.head import Detect  # noqa: E402

Z_KEY = "z"
DFL_PRIOR_DECAY = 0.7  # box-bin logits fall by this per bin: expected distance ~1 bin (= one stride) per side


class ZHead(Detect):
    """YOLOv8 Detect head with a per-anchor z output (``cv4``)."""

    legacy = True  # YOLOv8's head layout (plain Conv class branch), so yolov8*.pt head weights fit

    def __init__(self, nc: int = 1, reg_max: int = 16, end2end: bool = False, ch: tuple[int, ...] = ()):
        super().__init__(nc, reg_max, end2end, ch)
        c4 = max(16, ch[0] // 4)
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, 1, 1)) for x in ch)
        if end2end:
            self.one2one_cv4 = copy.deepcopy(self.cv4)

    @property
    def one2many(self):
        return {"box_head": self.cv2, "cls_head": self.cv3, "z_head": self.cv4}

    @property
    def one2one(self):
        return {"box_head": self.one2one_cv2, "cls_head": self.one2one_cv3, "z_head": self.one2one_cv4}

    def forward_head(self, x, box_head=None, cls_head=None, z_head=None) -> dict[str, torch.Tensor]:
        preds = super().forward_head(x, box_head, cls_head)
        if z_head is not None and preds:
            bs = x[0].shape[0]
            preds[Z_KEY] = torch.cat([z_head[i](x[i]).view(bs, 1, -1) for i in range(self.nl)], 2)
        return preds

    def _inference(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded boxes and class scores, then zenc = sigmoid(z) as the last channel."""
        return torch.cat([super()._inference(x), x[Z_KEY].sigmoid()], 1)

    def bias_init(self):
        super().bias_init()
        # ultralytics starts every DFL bin equal: initial boxes ~15 strides wide (120 px on P3). Against boxes of a
        # few tens of pixels, trained from scratch, their IoU^6 in the task-aligned assigner underflows the target
        # scores and the box and class losses never start (box_loss ~1e-6). A prior of ~1 stride per side instead.
        prior = -DFL_PRIOR_DECAY * torch.arange(self.reg_max, dtype=torch.float32).repeat(4)
        for branch in (self.cv2, getattr(self, "one2one_cv2", None)):
            for seq in branch or ():
                seq[-1].bias.data[:] = prior
        for branch in (self.cv4, getattr(self, "one2one_cv4", None)):
            for seq in branch or ():
                seq[-1].bias.data[:] = 0.0  # sigmoid(0) = 0.5: dz = 0 until trained

    @classmethod
    def from_detect(cls, old: Detect) -> "ZHead":
        """A z-head replacing `old` in a freshly parsed model: same channels, layer bookkeeping and box/class
        weights, with the z-head's bias initialisation (box prior, dz = 0)."""
        ch = tuple(seq[0].conv.in_channels for seq in old.cv2)
        end2end = getattr(old, "one2one_cv2", None) is not None
        head = cls(nc=old.nc, reg_max=old.reg_max, end2end=end2end, ch=ch)
        head.stride = old.stride.clone()
        missing, unexpected = head.load_state_dict(old.state_dict(), strict=False)
        assert not unexpected, f"Detect weights that do not fit the z-head: {unexpected}"
        assert all(k.startswith(("cv4.", "one2one_cv4.")) for k in missing), missing
        head.bias_init()
        for attr in ("i", "f", "inplace", "max_det"):
            if hasattr(old, attr):
                setattr(head, attr, getattr(old, attr))
        head.type = f"{cls.__module__}.{cls.__qualname__}"
        head.np = sum(p.numel() for p in head.parameters())
        return head
