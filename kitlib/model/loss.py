"""Detection loss (box, cls, dfl) plus a z term on the anchors the task-aligned assigner matched.

The z target comes from the third value of each label's single pose point (zenc in (0, 1], 0 = unknown, see
`kitlib.preprocess.zcode`); ultralytics' pose dataset moves the point with its box through mosaic / affine / flips and
zeroes it when the point leaves the frame. The visibility BCE of ultralytics' pose loss is not used: z is regressed.

z loss = smooth-L1 between 2 * sigmoid(z_logit) and 2 * zenc (the offset in units of z_span), on foreground anchors
whose target has zenc > 0 (mean over those anchors, as ultralytics' keypoint loss does); multiplied by
``Z_BASE_GAIN * model.z_gain`` (``ModelConfig.z_loss_gain``).
"""

from __future__ import annotations

from kitlib import runtime

runtime.prepare()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ultralytics.utils.loss import v8DetectionLoss  # noqa: E402

from kitlib.model.head import Z_KEY  # noqa: E402

Z_BASE_GAIN = 5.0  # puts the z term on the scale of box (7.5 x CIoU) and dfl (1.5 x DFL) at z_loss_gain = 1
Z_SMOOTH_BETA = 0.1  # in units of z_span: quadratic below ~0.1 * z_span slices of error


class ZLoss(v8DetectionLoss):
    """`v8DetectionLoss` + ``z_loss``; loss names: box_loss, cls_loss, dfl_loss, z_loss."""

    def __init__(self, model, tal_topk: int = 10, tal_topk2: int | None = None):
        super().__init__(model, tal_topk, tal_topk2)
        self.z_gain = Z_BASE_GAIN * float(getattr(model, "z_gain", 1.0))
        self.loss_names = (*self.loss_names, "z_loss")

    @staticmethod
    def batch_zenc(batch: dict, batch_size: int, device) -> torch.Tensor:
        """Per-image padded zenc targets (batch_size, max_objects), in the same order as the padded boxes."""
        batch_idx = batch["batch_idx"].flatten().long().to(device)
        kpts = batch.get("keypoints")
        if kpts is None or len(batch_idx) == 0:
            return torch.zeros(batch_size, max(len(batch_idx), 0), device=device)
        zenc = kpts.to(device).float().reshape(-1, kpts.shape[-1])[:, -1]  # (n,): the point's third value
        counts = torch.bincount(batch_idx, minlength=batch_size)
        out = zenc.new_zeros((batch_size, int(counts.max())))
        within = torch.arange(len(batch_idx), device=device) - (counts.cumsum(0) - counts)[batch_idx]
        out[batch_idx, within] = zenc
        return out

    def loss(self, preds: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch_size = preds["boxes"].shape[0]
        (fg_mask, target_gt_idx, _, _, _), det_loss, _ = self.get_assigned_targets_and_loss(preds, batch)
        z_logit = preds[Z_KEY].squeeze(1)  # (B, A)
        z_loss = self.z_term(z_logit, fg_mask, target_gt_idx, batch, batch_size)
        loss = torch.cat([det_loss, (z_loss * self.z_gain).reshape(1)])
        return loss * batch_size, dict(zip(self.loss_names, loss.detach()))

    def z_term(self, z_logit, fg_mask, target_gt_idx, batch, batch_size) -> torch.Tensor:
        zero = z_logit.sum() * 0.0  # keeps the z branch in the graph (DDP) when nothing is matched
        if not bool(fg_mask.any()):
            return zero
        zgt_img = self.batch_zenc(batch, batch_size, z_logit.device)
        if zgt_img.shape[1] == 0:
            return zero
        b, a = fg_mask.nonzero(as_tuple=True)
        zgt = zgt_img[b, target_gt_idx[b, a]]
        valid = zgt > 0
        if not bool(valid.any()):
            return zero
        pred = z_logit[b, a][valid].float().sigmoid()
        err = F.smooth_l1_loss(2.0 * pred, 2.0 * zgt[valid], reduction="none", beta=Z_SMOOTH_BETA)
        return err.mean()
