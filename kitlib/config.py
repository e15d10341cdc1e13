"""One typed configuration for the whole kit: preprocessing, export, model, training, inference, tuning.

Every tool reads a `KitConfig`. Defaults are sized for a Kaggle T4/P100; `KitConfig.preset("cpu")` trains in minutes
on a laptop-class CPU. A config round-trips through YAML (`save` / `load`), so a run directory records exactly what
produced it.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The competition's hit radius. Everything measured "in threshold units" derives from it.
HIT_RADIUS_A = 1000.0
GRID_POLICIES = ("native", "spacing", "size")  # PreprocessConfig.grid
COMPETITION_SLUG = "byu-locating-bacterial-flagellar-motors-2025"


@dataclass
class PreprocessConfig:
    """Per-tomogram contrast, voxel-spacing policy and 5-channel stack geometry."""

    clip_low: float = 2.0  # percentile mapped to 0
    clip_high: float = 98.0  # percentile mapped to 255
    sample_step: int = 4  # percentiles are computed on every n-th voxel along each axis
    # The grid the model sees (the spacing policy; `make spacing` compares them: docs/SPACING.md).
    # "spacing" (default, the best there): resampled to `target_spacing` A, from the label file's spacing in training
    # and an assumed one where none is known (test: the labels' most common spacing, else `assumed_spacing`).
    # "native": the tomogram's own voxels. "size": every axis scaled by one factor so the longest in-plane edge is
    # `resize_to` voxels (needs no spacing).
    grid: str = "spacing"
    target_spacing: float = 16.0
    assumed_spacing: float = 13.1
    resize_to: int = 640
    channels: int = 5
    stack_stride: int = 8  # slices between neighbouring channels: channel k holds z + (k - 2) * stride
    z_average: int = 1  # odd: each slice of the model's grid becomes the mean of this many around it (1: as it is)


@dataclass
class ExportConfig:
    """Training-set export: 5-page TIFF stacks with pose-format labels carrying z."""

    z_window: int = 6  # positive stacks are centred within +-z_window slices of a motor
    positives_per_motor: int = 4
    negatives_per_tomo: int = 3  # stacks from motor-free tomograms (and far from motors)
    neg_ratio: float = 1.0  # negatives kept per positive, at most
    box_angstrom: float = 1000.0  # box side in A (the hit radius); `box_px` overrides it
    box_px: int | None = None
    # Whole slices are written resized to `model.imgsz` (the training size: no pixel is stored that training cannot
    # see). `crop`: square windows of this side cut at full resolution instead: positives hold their motor at a
    # random place, negatives are anywhere. The checkpoint records it, and inference then takes whole slices at their
    # own size (padded, not resized: `infer.imgsz` null).
    crop: int | None = None


@dataclass
class ModelConfig:
    """The 5-channel YOLOv8 with a z-head."""

    scale: str = "n"  # n/s/m/l/x of ultralytics' yolov8 yaml
    imgsz: int = 640  # training size (longest side); the checkpoint records it and inference uses it
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
    batch: int = 16
    nbs: int = 64  # nominal batch: gradients accumulate over nbs / batch batches per optimizer step
    device: str = "0"
    workers: int = 4  # ultralytics uses none on the CPU (it loads in the training process there)
    cache: bool = False  # hold the decoded training stacks in RAM (ultralytics' cache="ram"; the export's size)
    # Folds trained, and then their held-out tomograms predicted, at once on the CPU (local-score, the demo), each in
    # its own process with an equal share of the threads: small models use two cores better as two 1-thread
    # processes than as one 2-thread one.
    parallel_folds: int = 1
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
    # Probability that a training image gets a new contrast, gamma, blur, noise and JPEG quality
    # (`kitlib.model.appearance`; ultralytics' own colour augmentation skips images of more than 3 channels).
    appearance: float = 0.0
    warmup_epochs: float = 3.0
    val: bool = True  # validate every epoch (False: only after the last one, which is then also best.pt)
    seed: int = 0
    # Log losses (box, cls, dfl, z), metrics and lr to TensorBoard in the training's folder (runs/<run>/fold<k>/):
    # ultralytics' TensorBoard callback, offline; needs `pip install 'kitlib[tensorboard]'`.
    tensorboard: bool = False

    def length(self) -> str:
        """How long a fold trains, in words: "60 epochs" or "7 min (epochs fitted to the time)"."""
        if self.time_budget_s is None:
            return f"{self.epochs} epochs"
        return f"{self.time_budget_s / 60:g} min (epochs fitted to the time)"

    def folds_at_once(self) -> int:
        """How many folds train (and their verifiers) side by side: `parallel_folds` on the CPU, one at a time on a
        GPU (a process per fold would share one device)."""
        return self.parallel_folds if self.device == "cpu" else 1


@dataclass
class InferConfig:
    """Tomogram -> motor: slice sweep, batching, TTA, 3D fusion and the time budget."""

    slice_step: int = 4  # centre slices visited every n slices
    batch: int = 32
    conf: float = 0.05  # detections below this are dropped before fusion
    device: str = "0"
    half: bool = True  # fp16 on CUDA (ignored on CPU)
    imgsz: int | None = None  # None: the checkpoint's training size (set it to predict at another size)
    tta: tuple[str, ...] = ("identity",)  # names from kitlib.infer.tta.VIEWS
    fuse_radius_factor: float = 0.5  # cluster radius as a fraction of the hit radius
    per_view: int = 3  # centre slices per view on which a real motor is expected to fire (fusion's support count)
    top_k: int = 5
    decode_threads: int = 8


@dataclass
class VerifyConfig:
    """The second stage (`kitlib.verify`): a small CNN that rescores each tomogram's `infer.top_k` candidates on a
    full-resolution patch of the model's grid, trained on the out-of-fold candidates of local scoring."""

    enabled: bool = False
    patch: int = 40  # in-plane side of the patch the network sees, in (binned) grid voxels
    planes: int = 9  # z planes of the patch (odd), `plane_step` (binned) slices apart; they are its channels
    plane_step: int = 2
    shift: int = 12  # training moves the patch up to this many voxels off the candidate in-plane ...
    shift_z: int = 2  # ... and this many slices along z (stored patches have the room: `kitlib.verify.patches`)
    bin: int = 4  # the grid is averaged over bin^3 voxels first: 4 makes the default's 16 A the cpu preset's 64 A
    width: float = 1.0  # the network's channel multiple (24, 48, 64 at 1.0)
    steps: int = 4000  # a fixed count of optimizer steps, half positives and half negatives in each batch
    members: int = 2  # networks per fold, member m from seed train.seed + m, their probabilities averaged: two
    # halve the seed-to-seed spread of the F2 (docs/EXPERIMENTS.md)
    batch: int = 32
    lr: float = 3e-3  # AdamW with a one-cycle schedule


@dataclass
class TuneConfig:
    """Presence-rule search on out-of-fold predictions."""

    rule: str = "auto"  # "threshold", "quantile" or "auto" (the better of the two on OOF F2)
    bootstrap: int = 1000
    seed: int = 0
    n_folds: int = 5


@dataclass
class DataConfig:
    """Labels and training data beyond the competition's (`kitlib.data.sources`)."""

    # Extra training sources: folders in the competition layout (train/<tomo_id>/, train_labels.csv), each
    # "DIR" or "DIR:z_window=N:negatives=false". They train every fold; they are never scored or tuned on.
    extra: tuple[str, ...] = ()
    labels_override: str | None = None  # a labels_override.csv (`make review`) applied wherever labels are read


@dataclass
class KitConfig:
    """The whole kit's configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    @classmethod
    def preset(cls, name: str) -> "KitConfig":
        """`default` (Kaggle GPU) or `cpu` (trains in minutes on two cores, for the demo and tests)."""
        if name == "default":
            return cls()
        if name == "cpu":
            # For the demo's small synthetic data (bin 4, ~60 A voxels) on 2 cores (measured: README, EXPERIMENTS):
            # from scratch, 2 folds x 38 epochs of ~560 stacks at 160 px (a fixed count, so every machine trains the
            # same model; the demo's 200 train tomograms at 43 epochs did better than 100 at 85, for the same cost;
            # 38 leave room for the verifier),
            # the two folds side by side with a thread each (more epochs per second than one 2-thread training), an
            # optimizer step per batch (nbs = batch). Positive stacks within +-3 slices of their motor
            # (about its radius at 64 A; at +-6 the centre slice misses it: OOF F2 0.76 -> 0.80). Stack stride 3
            # puts the motor (6-8 voxels across) in the middle three channels, each the mean of 3 slices so that every
            # slice is seen (z_average: 0.80 -> 0.83; 5 slices 0.80); mild zoom (scale 0.2) keeps the small
            # motors visible; class loss x4 (presence is what F2 scores; the box is a fixed-size proxy) and z loss x2
            # to keep z's share of the gradient; 8 TTA views (measured: +0.04 OOF F2 over 4). The grid: 64 A, the
            # default's 16 A at bin 4; a test tomogram without a spacing is taken as bin 4 of the real mode, 13.1 A.
            return cls(
                preprocess=PreprocessConfig(stack_stride=3, z_average=3, target_spacing=64.0, assumed_spacing=52.4,
                                            resize_to=160),
                export=ExportConfig(z_window=3, positives_per_motor=4, negatives_per_tomo=3),
                model=ModelConfig(imgsz=160, z_loss_gain=2.0),
                train=TrainConfig(epochs=38, batch=16, nbs=16, device="cpu", workers=2, parallel_folds=2,
                                  patience=100, close_mosaic=8, warmup_epochs=1.0, val=False, scale=0.2, flipud=0.5,
                                  cls_gain=2.0, appearance=0.7),
                infer=InferConfig(device="cpu", half=False, batch=64, slice_step=4, decode_threads=2, top_k=8,
                                  tta=("identity", "flip_lr", "flip_ud", "rot90", "rot270", "transpose", "zrev",
                                       "rot180+zrev")),
                verify=VerifyConfig(enabled=True, bin=1),
                tune=TuneConfig(bootstrap=300, n_folds=2),
            )
        raise ValueError(f"unknown preset {name!r}: choose 'default' or 'cpu'")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for section in data.values():  # YAML's safe dumper writes lists, not tuples
            section.update({k: list(v) for k, v in section.items() if isinstance(v, tuple)})
        return data

    @classmethod
    def from_dict(cls, d: Any, source: str = "config", base: "KitConfig | None" = None) -> "KitConfig":
        """A validated config from a (possibly partial) nested dict merged onto `base` (default: the defaults).

        Raises `ConfigError` "<source>: <section>.<key>: <problem>" for unknown sections or keys, wrong types and
        values out of range.
        """
        return (base or cls()).override(d, source)

    def override(self, changes: Any, source: str = "config") -> "KitConfig":
        """A new, validated config with the nested `changes` (`{"infer": {"batch": 8}}`) applied; self is unchanged."""
        if changes is None:
            changes = {}
        if not isinstance(changes, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(changes).__name__}")
        sections = {f.name: f for f in dataclasses.fields(self)}
        new = {}
        for name, value in _migrate(changes, source).items():
            if name not in sections:
                raise ConfigError(f"{source}: unknown section {name!r} (sections: {', '.join(sections)})")
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section {name!r} must be a mapping of keys, got {value!r}")
            new[name] = _override_section(getattr(self, name), value, f"{source}: {name}")
        cfg = dataclasses.replace(self, **new)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        """Raise `ConfigError` naming `source` and the key if a value is out of range or two values disagree."""
        for name, (low, high) in _RANGES.items():
            section, key = name.split(".")
            value = getattr(getattr(self, section), key)
            if value is not None and not (low <= value and (high is None or value <= high)):
                bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
                raise ConfigError(f"{source}: {name}: must be {bounds}, got {value!r}")
        for name, choices in _CHOICES.items():
            section, key = name.split(".")
            value = getattr(getattr(self, section), key)
            if value not in choices:
                raise ConfigError(f"{source}: {name}: must be one of {list(choices)}, got {value!r}")
        p = self.preprocess
        if p.clip_low >= p.clip_high:
            raise ConfigError(f"{source}: preprocess.clip_low ({p.clip_low}) must be below clip_high ({p.clip_high})")
        if p.z_average % 2 == 0:
            raise ConfigError(f"{source}: preprocess.z_average: must be odd (centred on the slice), got {p.z_average}")
        if self.verify.planes % 2 == 0:
            raise ConfigError(f"{source}: verify.planes: must be odd (centred on the candidate), "
                              f"got {self.verify.planes}")
        if not self.infer.tta:
            raise ConfigError(f"{source}: infer.tta: name at least one view (e.g. [identity])")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path, base: "KitConfig | None" = None) -> "KitConfig":
        """Read a config YAML, merged onto `base` (default: the defaults); a partial file changes only its keys."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from e
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from e
        if data is None:
            raise ConfigError(f"{path}: empty config file (write the keys to change, e.g. 'train: {{epochs: 10}}')")
        return cls.from_dict(data, str(path), base)


class ConfigError(ValueError):
    """A configuration problem, said in one line that names the file (or option) and the key."""


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """`["infer.batch=8", "infer.tta=[identity,flip_lr]"]` -> `{"infer": {"batch": 8, "tta": [...]}}`; values are
    YAML (so `8` is a number, `null` is None)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise ConfigError(f"--set {item}: expected section.key=value, e.g. --set infer.batch=8")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out.setdefault(section, {})[name] = value
    return out


# Values a config can hold: (low, high) inclusive bounds (None: unbounded above) and fixed choices.
_RANGES: dict[str, tuple[float, float | None]] = {
    "preprocess.clip_low": (0, 100), "preprocess.clip_high": (0, 100), "preprocess.sample_step": (1, None),
    "preprocess.target_spacing": (1e-6, None), "preprocess.assumed_spacing": (1e-6, None),
    "preprocess.resize_to": (8, None),
    "preprocess.channels": (1, None), "preprocess.stack_stride": (1, None), "preprocess.z_average": (1, None),
    "export.z_window": (0, None), "export.positives_per_motor": (0, None), "export.negatives_per_tomo": (0, None),
    "export.neg_ratio": (0, None), "export.box_angstrom": (1e-6, None), "export.box_px": (1, None),
    "export.crop": (32, None),
    "model.imgsz": (32, None), "model.width": (1e-6, None), "model.z_loss_gain": (0, None),
    "train.epochs": (1, None), "train.time_budget_s": (1e-6, None), "train.batch": (1, None), "train.nbs": (1, None),
    "train.workers": (0, None), "train.parallel_folds": (1, None), "train.lr0": (1e-12, None),
    "train.cls_gain": (0, None), "train.patience": (0, None),
    "train.mosaic": (0, 1), "train.appearance": (0, 1), "train.close_mosaic": (0, None), "train.scale": (0, 1),
    "train.translate": (0, 1),
    "train.fliplr": (0, 1), "train.flipud": (0, 1), "train.warmup_epochs": (0, None),
    "infer.slice_step": (1, None), "infer.batch": (1, None), "infer.conf": (0, 1), "infer.imgsz": (32, None),
    "infer.fuse_radius_factor": (1e-6, None), "infer.per_view": (1, None), "infer.top_k": (1, None),
    "infer.decode_threads": (1, None),
    "verify.patch": (8, None), "verify.shift": (0, None), "verify.shift_z": (0, None), "verify.planes": (1, None),
    "verify.plane_step": (1, None), "verify.bin": (1, None), "verify.width": (1e-6, None), "verify.steps": (1, None),
    "verify.batch": (2, None), "verify.lr": (1e-12, None), "verify.members": (1, None),
    "tune.bootstrap": (0, None), "tune.n_folds": (2, None),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "preprocess.grid": GRID_POLICIES,
    "model.scale": ("n", "s", "m", "l", "x"),
    "tune.rule": ("auto", "threshold", "quantile"),
}
# Keys of older kits: where they went (None: removed, the value is dropped with a warning).
_MOVED: dict[str, str | None] = {
    "train.imgsz": "model.imgsz", "export.imgsz": None, "infer.time_budget_s": None, "train.project": None,
}


def _migrate(changes: dict[str, Any], source: str) -> dict[str, Any]:
    """`changes` with keys of older kits moved to their new place (a warning says so)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in changes.items()}
    pre = out.get("preprocess")
    if isinstance(pre, dict) and "target_spacing" in pre and "grid" not in pre:
        # older kits had no `grid`: a target spacing meant resampling, null the native grid
        pre["grid"] = "native" if pre["target_spacing"] is None else "spacing"
        if pre["target_spacing"] is None:
            del pre["target_spacing"]
    for old, new in _MOVED.items():
        section, key = old.split(".")
        if not isinstance(out.get(section), dict) or key not in out[section]:
            continue
        value = out[section].pop(key)
        if new is None:
            warnings.warn(f"{source}: {old} is no longer a setting (ignored)", stacklevel=3)
            continue
        new_section, new_key = new.split(".")
        target = out.setdefault(new_section, {})
        if isinstance(target, dict):
            target.setdefault(new_key, value)
    return out


def _override_section(section: Any, values: dict[str, Any], where: str) -> Any:
    """A copy of a config section with `values` set, each checked against the field's type."""
    hints = typing.get_type_hints(type(section))
    known = {f.name for f in dataclasses.fields(section)}
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key (keys: {', '.join(sorted(known))})")
        checked[key] = _coerce(value, hints[key], f"{where}.{key}")
    return dataclasses.replace(section, **checked)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as the annotated type (int for an int field, str for a device given as 0, ...), or ConfigError."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of names, got {value!r}")
        return tuple(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # `device: 0` reads as a number
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise TypeError(f"{where}: unsupported config type {hint!r}")  # a kit bug, not the user's
