"""One typed configuration for the whole kit: preprocessing, export, model, training, inference, tuning.

Every tool reads a `KitConfig`. Defaults are sized for a Kaggle T4/P100; `KitConfig.preset("cpu")` trains in minutes
on a laptop-class CPU. A config round-trips through YAML (`save` / `load`), so a run directory records exactly what
produced it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The competition's hit radius. Everything measured "in threshold units" derives from it.
HIT_RADIUS_A = 1000.0
COMPETITION_SLUG = "byu-locating-bacterial-flagellar-motors-2025"


@dataclass
class PreprocessConfig:
    """Per-tomogram contrast, voxel-spacing policy and 5-channel stack geometry."""

    clip_low: float = 2.0  # percentile mapped to 0
    clip_high: float = 98.0  # percentile mapped to 255
    sample_step: int = 4  # percentiles are computed on every n-th voxel along each axis
    # Resampling policy. None keeps the native voxel grid (default: test spacing is not given on Kaggle, and the
    # training spacings cluster at 13-16 A). A number resamples every tomogram to that spacing, using the label
    # file's spacing in training and `assumed_spacing` where none is known (test).
    target_spacing: float | None = None
    assumed_spacing: float = 13.1
    channels: int = 5
    stack_stride: int = 8  # slices between neighbouring channels: channel k holds z + (k - 2) * stride


@dataclass
class ExportConfig:
    """Training-set export: 5-page TIFF stacks with pose-format labels carrying z."""

    z_window: int = 6  # positive stacks are centred within +-z_window slices of a motor
    positives_per_motor: int = 4
    negatives_per_tomo: int = 3  # stacks from motor-free tomograms (and far from motors)
    neg_ratio: float = 1.0  # negatives kept per positive, at most
    box_angstrom: float = 1000.0  # box side in A (the hit radius); `box_px` overrides it
    box_px: int | None = None
    imgsz: int | None = None  # None keeps full slices; else longest side is resized to this
    # Square windows of this side cut at full resolution instead of whole slices (exclusive with imgsz): positives
    # hold their motor at a random place, negatives are anywhere. Predict on whole slices at their own size then.
    crop: int | None = None


@dataclass
class ModelConfig:
    """The 5-channel YOLOv8 with a z-head."""

    scale: str = "n"  # n/s/m/l/x of ultralytics' yolov8 yaml
    width: float | None = None  # replaces the scale's channel multiple (n: 0.25); 0.125 halves yolov8n's channels
    weights: str | None = None  # optional local 3-channel YOLOv8 .pt to adapt to 5 channels
    z_loss_gain: float = 1.0


@dataclass
class TrainConfig:
    """Ultralytics trainer settings for one fold."""

    epochs: int = 60
    # Train for this many seconds instead (None: a fixed `epochs`): ultralytics re-estimates the epoch count, and with
    # it the lr schedule and where mosaic closes, after every epoch; a slow machine trains fewer epochs in that time.
    time_budget_s: float | None = None
    imgsz: int = 640
    batch: int = 16
    nbs: int = 64  # nominal batch: gradients accumulate over nbs / batch batches per optimizer step
    device: str = "0"
    workers: int = 4
    # "auto" is ultralytics' choice: AdamW at lr 0.002 for runs under 10k iterations (lr0 is then ignored), else
    # MuSGD at 0.01. Name one ("SGD", "AdamW", ...) to use lr0.
    optimizer: str = "auto"
    lr0: float = 0.01
    cls_gain: float = 0.5  # ultralytics' `cls`: weight of the class (presence) loss beside box 7.5 and dfl 1.5
    patience: int = 20
    mosaic: float = 1.0
    close_mosaic: int = 10
    scale: float = 0.5  # random zoom +-scale (ultralytics' affine augmentation)
    translate: float = 0.1
    fliplr: float = 0.5
    flipud: float = 0.0  # tomograms have no up/down: worth turning on (the cpu preset does)
    warmup_epochs: float = 3.0
    val: bool = True  # validate every epoch (False: only after the last one, which is then also best.pt)
    seed: int = 0
    project: str = "runs"

    def set_length(self, epochs: int | None = None, minutes: float | None = None) -> None:
        """Train for `epochs`, or for `minutes` (the epoch count is then re-estimated); None keeps the current."""
        if epochs is not None:
            self.epochs, self.time_budget_s = epochs, None
        if minutes is not None:
            self.time_budget_s = 60.0 * minutes

    def length(self) -> str:
        """How long a fold trains, in words: "60 epochs" or "7 min (epochs fitted to the time)"."""
        if self.time_budget_s is None:
            return f"{self.epochs} epochs"
        return f"{self.time_budget_s / 60:g} min (epochs fitted to the time)"


@dataclass
class InferConfig:
    """Tomogram -> motor: slice sweep, batching, TTA, 3D fusion and the time budget."""

    slice_step: int = 4  # centre slices visited every n slices
    batch: int = 32
    conf: float = 0.05  # detections below this are dropped before fusion
    device: str = "0"
    half: bool = True  # fp16 on CUDA (ignored on CPU)
    imgsz: int = 640
    tta: tuple[str, ...] = ("identity",)  # names from kitlib.infer.tta.VIEWS
    fuse_radius_factor: float = 0.5  # cluster radius as a fraction of the hit radius
    per_view: int = 3  # centre slices per view on which a real motor is expected to fire (fusion's support count)
    top_k: int = 5
    time_budget_s: float = 9.0 * 3600  # kernel budget, well under Kaggle's 12 h
    decode_threads: int = 8


@dataclass
class TuneConfig:
    """Presence-rule search on out-of-fold predictions."""

    rule: str = "auto"  # "threshold", "quantile" or "auto" (the better of the two on OOF F2)
    bootstrap: int = 1000
    seed: int = 0
    n_folds: int = 5


@dataclass
class KitConfig:
    """The whole kit's configuration."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    @classmethod
    def preset(cls, name: str) -> "KitConfig":
        """`default` (Kaggle GPU) or `cpu` (trains in minutes on two cores, for the demo and tests)."""
        if name == "default":
            return cls()
        if name == "cpu":
            # For the demo's small synthetic data (bin 4, ~60 A voxels) on 2 cores (measured: README): from scratch,
            # 2 folds x 7 min of training (~80 epochs of ~280 stacks at 160 px on the machine measured, fewer on a
            # slower one; the demo then ends in ~17 min), an optimizer step per batch (nbs = batch). Stack stride 3
            # puts the motor (~9 voxels across) in the middle three channels; mild zoom (scale 0.2) keeps the ~6 px
            # motors visible; class loss x4 (presence is what F2 scores; the box is a fixed-size proxy) and z loss x2
            # to keep z's share of the gradient; 8 TTA views (measured: +0.04 OOF F2 over 4).
            return cls(
                preprocess=PreprocessConfig(stack_stride=3),
                export=ExportConfig(imgsz=160, positives_per_motor=4, negatives_per_tomo=3),
                model=ModelConfig(z_loss_gain=2.0),
                train=TrainConfig(epochs=60, time_budget_s=420.0, imgsz=160, batch=16, nbs=16, device="cpu", workers=2,
                                  patience=100, close_mosaic=8, warmup_epochs=1.0, val=False, scale=0.2, flipud=0.5,
                                  cls_gain=2.0),
                infer=InferConfig(device="cpu", half=False, imgsz=160, batch=64, slice_step=4, decode_threads=2,
                                  tta=("identity", "flip_lr", "flip_ud", "rot90", "rot270", "transpose", "zrev",
                                       "rot180+zrev")),
                tune=TuneConfig(bootstrap=300, n_folds=2),
            )
        raise ValueError(f"unknown preset {name!r}: choose 'default' or 'cpu'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KitConfig":
        """Build from a (possibly partial) nested dict; unknown keys are an error, not silently dropped."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            section = d.get(f.name) or {}
            sub_cls = type(getattr(cls(), f.name))
            known = {sf.name for sf in dataclasses.fields(sub_cls)}
            unknown = set(section) - known
            if unknown:
                raise ValueError(f"unknown config keys in [{f.name}]: {sorted(unknown)}")
            if "tta" in section:
                section = {**section, "tta": tuple(section["tta"])}
            kwargs[f.name] = sub_cls(**section)
        extra = set(d) - {f.name for f in dataclasses.fields(cls)}
        if extra:
            raise ValueError(f"unknown config sections: {sorted(extra)}")
        return cls(**kwargs)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        data["infer"]["tta"] = list(data["infer"]["tta"])
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "KitConfig":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read config: {e}") from e
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e
