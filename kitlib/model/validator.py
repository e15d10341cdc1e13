"""Validation of the z-head model: ultralytics' box mAP plus the z error of matched detections.

`ZValidator` subclasses `DetectionValidator` (box metrics, plots, confusion matrix as ultralytics makes them) and:
- builds its dataset with ``task="pose"`` so labels keep their point (the z carrier);
- calls NMS with the real ``nc`` (the detect validator passes ``nc=0``, which would read z as a class);
- matches each ground-truth box with a known z to the most confident detection with IoU >= 0.5 and records |dz| in
  slices; the median is reported as ``metrics/dz_med(slices)`` (a column of the validation table and results.csv).
"""

from __future__ import annotations

from typing import Any

from kitlib import runtime

runtime.prepare()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from ultralytics.models.yolo.detect import DetectionValidator  # noqa: E402
from ultralytics.utils import RANK, nms, ops  # noqa: E402
from ultralytics.utils.metrics import DetMetrics, box_iou  # noqa: E402

from kitlib.preprocess.zcode import decode_zenc  # noqa: E402

DZ_KEY = "metrics/dz_med(slices)"
MATCH_IOU = 0.5


class ZMetrics(DetMetrics):
    """DetMetrics plus the median |dz| (slices) of matched detections (NaN when nothing matched)."""

    def __init__(self, names: dict[int, str] | None = None) -> None:
        super().__init__(names or {})
        self.dz_med = float("nan")
        self.dz_count = 0

    @property
    def keys(self) -> list[str]:
        return [*super().keys, DZ_KEY]

    def mean_results(self) -> list[float]:
        return [*super().mean_results(), self.dz_med]

    def class_result(self, i: int) -> tuple:
        return (*super().class_result(i), self.dz_med)


class ZValidator(DetectionValidator):
    """DetectionValidator on pose-format labels, with a z error metric."""

    def __init__(self, dataloader=None, save_dir=None, args=None, _callbacks=None) -> None:
        super().__init__(dataloader, save_dir, args, _callbacks)
        self.args.task = "pose"  # the pose dataset keeps each box's point, i.e. its z
        self.metrics = ZMetrics()
        self.z_span: float | None = None
        self.dz_errors: list[float] = []

    def init_metrics(self, model: torch.nn.Module) -> None:
        super().init_metrics(model)
        meta = getattr(getattr(model, "model", model), "kit_meta", None) or getattr(model, "kit_meta", None) or {}
        z_span = (self.data or {}).get("z_span") or meta.get("z_span")
        self.z_span = float(z_span) if z_span else None
        self.dz_errors = []

    def get_desc(self) -> str:
        return ("%22s" + "%11s" * 7) % ("Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)", "dz_med")

    def preprocess(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = super().preprocess(batch)
        if "keypoints" in batch:
            batch["keypoints"] = batch["keypoints"].float()
        return batch

    def postprocess(self, preds) -> list[dict[str, torch.Tensor]]:
        outputs = nms.non_max_suppression(
            preds,
            self.args.conf,
            self.args.iou,
            nc=self.nc,  # the real class count: the channel after the scores is z, not a class
            multi_label=True,
            agnostic=self.args.single_cls or self.args.agnostic_nms,
            max_det=self.args.max_det,
            end2end=self.end2end,
        )
        return [{"bboxes": x[:, :4], "conf": x[:, 4], "cls": x[:, 5], "z": x[:, 6]} for x in outputs]

    def update_metrics(self, preds: list[dict[str, torch.Tensor]], batch: dict[str, Any]) -> None:
        super().update_metrics(preds, batch)
        if self.z_span is None or "keypoints" not in batch:
            return
        imgsz = batch["img"].shape[2:]
        scale = torch.tensor(imgsz, device=batch["bboxes"].device)[[1, 0, 1, 0]]
        for si, pred in enumerate(preds):
            idx = batch["batch_idx"] == si
            kp = batch["keypoints"][idx]
            zgt = kp.reshape(-1, kp.shape[-1])[:, -1]  # one point per box: its third value is zenc
            known = zgt > 0
            if not bool(known.any()) or pred["conf"].shape[0] == 0:
                continue
            gt_boxes = ops.xywh2xyxy(batch["bboxes"][idx][known]) * scale
            ok = box_iou(gt_boxes, pred["bboxes"]) >= MATCH_IOU  # (G, P), predictions sorted by confidence
            matched = ok.any(1)
            if not bool(matched.any()):
                continue
            first = ok.float().argmax(1)[matched]  # the most confident prediction over the IoU threshold
            dz_gt = decode_zenc(zgt[known][matched].cpu().numpy(), self.z_span)
            dz_pred = decode_zenc(pred["z"][first].float().cpu().numpy(), self.z_span)
            self.dz_errors.extend(np.abs(dz_pred - dz_gt).tolist())

    def gather_stats(self) -> None:
        super().gather_stats()
        if RANK == 0:
            gathered = [None] * dist.get_world_size()
            dist.gather_object(self.dz_errors, gathered, dst=0)
            self.dz_errors = [e for part in gathered for e in (part or [])]
        elif RANK > 0:
            dist.gather_object(self.dz_errors, None, dst=0)
            self.dz_errors = []

    def get_stats(self) -> dict[str, Any]:
        self.metrics.dz_count = len(self.dz_errors)
        self.metrics.dz_med = float(np.median(self.dz_errors)) if self.dz_errors else float("nan")
        return super().get_stats()
