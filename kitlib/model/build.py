"""Build the 5-channel YOLOv8 with a z-head, adapt 3-channel weights, read kit checkpoints.

`ZModel` is ultralytics' `DetectionModel` built from ``yolov8{scale}.yaml`` (any scale, no download) whose last layer
is swapped for `ZHead` (``parse_model`` cannot build a custom head from YAML), and whose criterion is `ZLoss`.
Checkpoints are ultralytics checkpoints (pickled model); these classes live in kitlib.model, so a checkpoint loads in
any process where kitlib is importable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kitlib import runtime

runtime.prepare()

import torch  # noqa: E402
from ultralytics.nn.tasks import DetectionModel, yaml_model_load  # noqa: E402
from ultralytics.utils.torch_utils import initialize_weights  # noqa: E402

from kitlib.data.errors import DataError  # noqa: E402
from kitlib.model.head import ZHead  # noqa: E402
from kitlib.model.loss import ZLoss  # noqa: E402
from kitlib.version import package_version  # noqa: E402

LOG = logging.getLogger(__name__)

SCALES = ("n", "s", "m", "l", "x")
FIRST_CONV = "model.0.conv.weight"
KIT_META_KEYS = ("stack_stride", "z_span", "channels", "imgsz", "kit_version")


def model_yaml(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown YOLOv8 scale {scale!r}: choose one of {', '.join(SCALES)}")
    return f"yolov8{scale}.yaml"


def model_cfg(scale: str, width: float | None = None) -> str | dict:
    """``yolov8{scale}.yaml``, or its parsed dict with the scale's width multiple replaced by `width`."""
    if width is None:
        return model_yaml(scale)
    if not 0 < width <= 2:
        raise ValueError(f"model width {width} out of range: a channel multiple in (0, 2], e.g. 0.125")
    cfg = yaml_model_load(model_yaml(scale))
    depth, _, max_channels = cfg["scales"][scale]
    cfg["scales"] = {scale: [depth, float(width), max_channels]}
    return cfg


def make_kit_meta(stack_stride: int, z_span: float, channels: int, imgsz: int, fold: int | None = None,
                  held_out: list[str] | None = None, sources: dict[str, int] | None = None,
                  grid: dict[str, Any] | None = None, crop: int | None = None) -> dict[str, Any]:
    """The metadata every kit checkpoint carries (DEVELOPERS.md, training-export contract); `fold` and `held_out`
    (the tomo_ids it never trained on) when it is a fold model, the extra sources it trained on (name ->
    tomograms), the grid policy of its stacks (`kitlib.preprocess.grid_policy`) and, when it trained on
    full-resolution crops, their side (it then predicts whole slices at their own size)."""
    meta = {
        "stack_stride": int(stack_stride),
        "z_span": float(z_span) if float(z_span) != int(z_span) else int(z_span),
        "channels": int(channels),
        "imgsz": int(imgsz),
        "kit_version": package_version(),
    }
    if fold is not None:
        meta["fold"], meta["held_out"] = int(fold), sorted(held_out or [])
    if sources:
        meta["sources"] = dict(sources)
    if grid:
        meta["grid"] = dict(grid)
    if crop:
        meta["crop"] = int(crop)
    return meta


class ZModel(DetectionModel):
    """YOLOv8 (``cfg`` = ``yolov8{n,s,m,l,x}.yaml`` or a parsed yaml dict) with ``ch`` inputs and a z-head.

    Attributes beyond DetectionModel: ``z_gain`` (multiplies the z loss), ``appearance`` (the training images'
    `StackAppearance` probability), ``kit_meta`` (dict, see `make_kit_meta`; empty until a trainer fills it).
    """

    def __init__(self, cfg: str | dict = "yolov8n.yaml", ch: int = 5, nc: int = 1, verbose: bool = True):
        super().__init__(cfg, ch=ch, nc=nc, verbose=False)
        self.model[-1] = ZHead.from_detect(self.model[-1])
        self.stride = self.model[-1].stride
        initialize_weights(self.model[-1])
        self.z_gain = 1.0
        self.appearance = 0.0
        self.kit_meta: dict[str, Any] = {}
        if verbose:
            self.info()

    def init_criterion(self):
        return ZLoss(self)


def build_model(scale: str = "n", channels: int = 5, nc: int = 1, verbose: bool = False,
                width: float | None = None) -> ZModel:
    """A fresh (randomly initialised) z-head model at the given YOLOv8 scale (and channel width, see `model_cfg`)."""
    return ZModel(model_cfg(scale, width), ch=channels, nc=nc, verbose=verbose)


def read_checkpoint(path: str | Path) -> dict:
    """torch.load a checkpoint with clear errors; never goes through ultralytics' download-on-miss."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # zip/pickle/module errors: all mean "not a checkpoint we can read"
        raise DataError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: not an ultralytics checkpoint (a {type(ckpt).__name__}, expected a dict)")
    return ckpt


def checkpoint_model(ckpt: dict, path: str | Path) -> torch.nn.Module:
    """The (EMA if present) model of an ultralytics checkpoint, as float32."""
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, torch.nn.Module):
        raise DataError(f"{path}: checkpoint holds no model under 'ema' or 'model'")
    return model.float()


def load_kit_checkpoint(path: str | Path) -> tuple[ZModel, dict[str, Any], dict]:
    """(model in eval mode on CPU, kit_meta, raw checkpoint) of a kit z-head checkpoint, or a DataError."""
    ckpt = read_checkpoint(path)
    model = checkpoint_model(ckpt, path)
    if not isinstance(getattr(model, "model", [None])[-1], ZHead):
        raise DataError(f"{path}: not a kit z-head checkpoint (last layer is {type(model.model[-1]).__name__})")
    meta = dict(ckpt.get("kit_meta") or getattr(model, "kit_meta", None) or {})
    missing = [k for k in KIT_META_KEYS if k not in meta]
    if missing:
        raise DataError(f"{path}: checkpoint has no kit_meta {missing} (not trained by kitlib?)")
    model.kit_meta = meta
    return model.eval(), meta, ckpt


def adapt_input_weight(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """timm's first-conv adaptation: RGB filters repeated over ``channels`` and rescaled by 3 / channels."""
    from timm.models import adapt_input_conv

    return adapt_input_conv(channels, weight.float().clone())


def load_3ch_weights(model: ZModel, weights: str | Path, verbose: bool = True) -> dict[str, Any]:
    """Initialise `model` from a local 3-channel YOLOv8 checkpoint (e.g. an ultralytics yolov8n.pt).

    Everything whose shape matches is copied (ultralytics' `load` also rebuilds the class branch at the source's hidden
    width when only the class count differs, so its hidden layers transfer too); the first conv is adapted to the
    model's input channels with `timm.models.adapt_input_conv`; the z branch keeps its initialisation.

    Returns:
        counts: ``loaded`` (tensors copied, first conv included), ``adapted`` (1), ``total`` (tensors in the model),
        ``skipped`` (names of model tensors left at initialisation).
    """
    ckpt = read_checkpoint(weights)
    src = checkpoint_model(ckpt, weights)
    src_sd = src.state_dict()
    w3 = src_sd.get(FIRST_CONV)
    if w3 is None or w3.ndim != 4:
        raise DataError(f"{weights}: no YOLO first conv '{FIRST_CONV}' in the checkpoint")
    dst_first = model.state_dict()[FIRST_CONV]
    if w3.shape[0] != dst_first.shape[0] or w3.shape[2:] != dst_first.shape[2:]:
        raise DataError(
            f"{weights}: first conv {tuple(w3.shape)} does not fit this model's {tuple(dst_first.shape)} "
            "(another YOLO scale?)"
        )
    model.load(src, verbose=False)  # ultralytics: intersect by name and shape, class-branch width fix-up
    sd = model.state_dict()
    with torch.no_grad():
        sd[FIRST_CONV].copy_(adapt_input_weight(w3, dst_first.shape[1]))
    sd = model.state_dict()
    loaded = [k for k, v in sd.items() if k in src_sd and src_sd[k].shape == v.shape]
    skipped = [k for k in sd if k not in loaded and k != FIRST_CONV]
    counts = {"loaded": len(loaded) + 1, "adapted": 1, "total": len(sd), "skipped": skipped}
    if verbose:
        LOG.info(
            "%s: %d/%d tensors loaded (first conv adapted %d->%d channels), %d left at init",
            weights, counts["loaded"], counts["total"], w3.shape[1], dst_first.shape[1], len(skipped),
        )
    return counts
