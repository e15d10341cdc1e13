"""Training the z-head model with ultralytics' trainer.

`ZTrainer` subclasses ultralytics' `DetectionTrainer` (not the pose trainer: no keypoint model, OKS metrics or
visibility loss) and runs it with ``task="pose"`` so ultralytics' pose dataset reads the contract's pose-format labels
and carries each box's point (whose third value is zenc) through mosaic, affine, flips and letterbox. On top of the
detection trainer it:
- builds `ZModel` (5-channel YOLOv8 + z-head, criterion `ZLoss`; loss names box/cls/dfl/z_loss);
- adds `StackAppearance` (contrast, gamma, blur, noise, JPEG) to the training transforms with ``train.appearance``;
- validates with `ZValidator` (mAP + median |dz| of matched detections);
- stores ``kit_meta`` (stack_stride, z_span, channels, imgsz, grid policy, kit version) on the model and as a checkpoint key;
- replaces ultralytics' AMP check (which downloads yolo26n.pt on CUDA) by a local one;
- launches multi-GPU DDP through ultralytics' own launcher, or a kit launcher with the same script shape when
  cloudpickle (which ultralytics' launcher needs) is not installed;
- with ``train.tensorboard``, hands the trainer ultralytics' TensorBoard callback (events beside results.csv; the
  callbacks travel to DDP workers): only that one, ultralytics' own settings keep every integration off.

`train()` is the library entry point used by the CLI.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import subprocess
from copy import copy, deepcopy
from pathlib import Path
from typing import Any

import yaml

from kitlib import runtime

runtime.prepare()

import torch  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.utils import DEFAULT_CFG, LOGGER, RANK, colorstr  # noqa: E402
from ultralytics.utils.torch_utils import strip_optimizer, unwrap_model  # noqa: E402

from kitlib.config import ConfigError, KitConfig, TrainConfig  # noqa: E402
from kitlib.data.errors import DataError  # noqa: E402
from kitlib.model.appearance import StackAppearance  # noqa: E402
from kitlib.model.build import ZModel, load_3ch_weights, make_kit_meta, model_cfg, model_yaml  # noqa: E402
from kitlib.model.validator import ZValidator  # noqa: E402
from kitlib.run import last_checkpoint  # noqa: E402

REQUIRED_DATA_KEYS = ("stack_stride", "z_span", "kpt_shape")
_BAD_AMP_GPUS = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.I)


def check_z_dataset(data: dict[str, Any], where: str | Path) -> None:
    """Raise a DataError unless a dataset dict follows the training-export contract."""
    missing = [k for k in REQUIRED_DATA_KEYS if k not in data]
    if missing:
        raise DataError(f"{where}: dataset.yaml lacks {missing} (not a kit training export?)")
    if list(data["kpt_shape"]) != [1, 3]:
        raise DataError(f"{where}: kpt_shape must be [1, 3] (one point carrying z), got {data['kpt_shape']}")
    if int(data.get("channels", 3)) < 1:
        raise DataError(f"{where}: bad channels {data.get('channels')}")
    if float(data["z_span"]) <= 0 or int(data["stack_stride"]) <= 0:
        raise DataError(f"{where}: stack_stride and z_span must be positive")


def local_check_amp(model: torch.nn.Module) -> bool:
    """AMP check without ultralytics' yolo26n.pt download: off on CPU/MPS and on GPUs known to misbehave; otherwise on
    if an autocast forward of the model itself gives finite outputs."""
    device = next(model.parameters()).device
    if device.type in {"cpu", "mps"}:
        return False
    if device.type == "cuda" and _BAD_AMP_GPUS.search(torch.cuda.get_device_name(device)):
        LOGGER.warning(f"AMP: disabled on {torch.cuda.get_device_name(device)} (known NaN/zero-mAP issues)")
        return False
    try:
        m = deepcopy(model).eval()
        ch = int(m.yaml.get("channels", 3)) if isinstance(getattr(m, "yaml", None), dict) else 3
        im = torch.rand(2, ch, 256, 256, device=device)
        with torch.no_grad(), torch.autocast(device.type):
            out = m(im)
        out = out[0] if isinstance(out, (list, tuple)) else out
        ok = bool(torch.isfinite(out.float()).all())
    except Exception as e:  # any failure means: do not trust AMP here
        LOGGER.warning(f"AMP: local check failed ({e}), training in FP32")
        return False
    LOGGER.info(f"AMP: local check {'passed' if ok else 'failed (non-finite outputs), training in FP32'}")
    return ok


def check_tensorboard(t: TrainConfig) -> None:
    """ConfigError when ``train.tensorboard`` is on and the tensorboard package is not installed."""
    if t.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard: the tensorboard package is not installed: "
                          "pip install 'kitlib[tensorboard]'")


def trainer_callbacks(t: TrainConfig) -> dict | None:
    """ultralytics' default callbacks plus its TensorBoard logger when ``train.tensorboard`` is on (None: the
    defaults). The logger writes into the trainer's save_dir."""
    if not t.tensorboard:
        return None
    check_tensorboard(t)
    from ultralytics.utils.callbacks import get_default_callbacks
    from ultralytics.utils.callbacks import tensorboard

    if not tensorboard.callbacks:  # the module disables itself when torch.utils.tensorboard fails, or in CI / pytest
        LOGGER.warning("TensorBoard: ultralytics' logger disabled itself (torch.utils.tensorboard failed to import, "
                       "or a CI / pytest run): no events are written")
    callbacks = get_default_callbacks()
    for event, callback in tensorboard.callbacks.items():
        callbacks[event].append(callback)
    return callbacks


@contextlib.contextmanager
def _no_download_amp_check():
    import ultralytics.engine.trainer as engine_trainer

    original = engine_trainer.check_amp
    engine_trainer.check_amp = local_check_amp
    try:
        yield
    finally:
        engine_trainer.check_amp = original


class ZTrainer(DetectionTrainer):
    """DetectionTrainer for `ZModel` on pose-format labels carrying z."""

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None):
        overrides = {**(overrides or {}), "task": "pose"}
        super().__init__(cfg, overrides, _callbacks)

    def get_dataset(self) -> dict[str, Any]:
        data = super().get_dataset()
        check_z_dataset(data, self.args.data)
        return data

    def kit_meta(self) -> dict[str, Any]:
        d = self.data
        return make_kit_meta(d["stack_stride"], d["z_span"], d.get("channels", 3), self.args.imgsz, d.get("fold"),
                             d.get("held_out"), d.get("sources"), d.get("grid"), d.get("crop"))

    def get_model(self, cfg=None, weights=None, verbose: bool = True) -> ZModel:
        model = self.set_model_names_for_load(
            ZModel(cfg or "yolov8n.yaml", ch=self.data["channels"], nc=self.data["nc"], verbose=verbose and RANK == -1)
        )
        if weights:
            model.load(weights)
            model.z_gain = float(getattr(weights, "z_gain", model.z_gain))
            model.appearance = float(getattr(weights, "appearance", model.appearance))
        return model

    def set_model_attributes(self):
        super().set_model_attributes()
        self.model.kit_meta = self.kit_meta()

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None):
        dataset = super().build_dataset(img_path, mode, batch)
        if mode == "train":
            self._add_appearance(dataset)
        return dataset

    def _close_dataloader_mosaic(self):
        super()._close_dataloader_mosaic()  # rebuilds the train transforms
        self._add_appearance(self.train_loader.dataset)

    def _add_appearance(self, dataset) -> None:
        """Insert `StackAppearance` before the dataset's final formatting step (the model carries its probability,
        so DDP workers and a resumed run get it too)."""
        p = float(getattr(unwrap_model(self.model), "appearance", 0.0))
        if p > 0 and hasattr(dataset, "transforms"):
            dataset.transforms.insert(-1, StackAppearance(p))

    def get_validator(self) -> ZValidator:
        return ZValidator(self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks)

    def _setup_train(self):
        with _no_download_amp_check():
            super()._setup_train()

    def write_kit_meta(self):
        """Add ``kit_meta`` as a top-level key of last.pt / best.pt (the model inside carries it too)."""
        if RANK in {-1, 0}:
            meta = self.kit_meta()
            for f in (self.last, self.best):
                if f.exists():
                    strip_optimizer(f, updates={"kit_meta": meta})

    def final_eval(self):
        self.write_kit_meta()
        super().final_eval()

    def train(self):
        if self.ddp and importlib.util.find_spec("cloudpickle") is None:
            return self._train_ddp_without_cloudpickle()
        return super().train()

    def _train_ddp_without_cloudpickle(self):
        """ultralytics' DDP launcher pickles the trainer state with cloudpickle; without it, launch the same kind of
        temporary script (trainer class imported by module path) with a plain-pickle state file."""
        from kitlib.model.ddp import cleanup, ddp_command

        if self.args.rect:
            LOGGER.warning("'rect=True' is incompatible with Multi-GPU training, setting 'rect=False'")
            self.args.rect = False
        cmd, file = ddp_command(self)
        LOGGER.info(f"{colorstr('DDP:')} debug command {' '.join(cmd)}")
        try:
            subprocess.run(cmd, check=True)
        finally:
            cleanup(file)


def _read_data_yaml(data_yaml: Path) -> dict[str, Any]:
    if not data_yaml.is_file():
        raise DataError(f"{data_yaml}: dataset.yaml not found")
    try:
        data = yaml.safe_load(data_yaml.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{data_yaml}: cannot read dataset.yaml: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{data_yaml}: dataset.yaml is not a mapping")
    check_z_dataset(data, data_yaml)
    return data


def train_overrides(data_yaml: Path, cfg: KitConfig, save_dir: Path) -> dict[str, Any]:
    """ultralytics trainer arguments for a kit training run."""
    t = cfg.train
    device = str(t.device)
    return dict(
        model=model_yaml(cfg.model.scale),
        data=str(data_yaml),
        task="pose",
        epochs=t.epochs,
        time=None if t.time_budget_s is None else t.time_budget_s / 3600,  # ultralytics counts hours
        imgsz=cfg.model.imgsz,
        batch=t.batch,
        nbs=t.nbs,
        device=device,
        workers=t.workers,
        cache="ram" if t.cache else False,
        optimizer=t.optimizer,
        lr0=t.lr0,
        cls=t.cls_gain,
        patience=t.patience,
        mosaic=t.mosaic,
        close_mosaic=t.close_mosaic,
        scale=t.scale,
        translate=t.translate,
        fliplr=t.fliplr,
        flipud=t.flipud,
        warmup_epochs=t.warmup_epochs,
        val=t.val,
        seed=t.seed,
        project=str(save_dir.parent),
        name=save_dir.name,
        exist_ok=True,  # the run folder's owner (kitlib.run) decided already
        amp=device not in {"cpu", "mps"},  # on CUDA the kit's local AMP check decides, with no download
        pretrained=False,  # initial weights come from cfg.model.weights (adapted to 5 channels), see train()
        plots=True,
    )


def epochs_trained(weights: Path) -> int | None:
    """Epochs the run that wrote `weights` trained (the last epoch in ultralytics' results.csv beside `weights/`)."""
    results = Path(weights).parent.parent / "results.csv"
    if not results.is_file():
        return None
    return int(float(results.read_text().splitlines()[-1].split(",")[0]))


def train(data_yaml: Path, cfg: KitConfig, save_dir: Path, resume: bool = False) -> Path:
    """Train one model on a kit training export; returns ``<save_dir>/weights/best.pt``.

    Args:
        data_yaml: the export's dataset.yaml (training-export contract in DEVELOPERS.md).
        cfg: kit configuration; uses ``cfg.model`` (scale, size, 3-channel weights to adapt, z loss gain) and
            ``cfg.train``.
        save_dir: ultralytics' run folder (weights, results.csv, plots), e.g. `RunDir.fold_dir(k)`.
        resume: continue ``<save_dir>/weights/last.pt`` (epochs, optimizer, EMA) instead of starting over.
    """
    data_yaml = Path(data_yaml).resolve()
    data = _read_data_yaml(data_yaml)
    save_dir = Path(save_dir).resolve()
    if resume:
        last = last_checkpoint(save_dir)
        if not last.is_file():
            raise DataError(f"{last}: no checkpoint to resume")
        t = cfg.train
        trainer = ZTrainer(
            overrides=dict(resume=str(last), data=str(data_yaml), device=str(t.device), workers=t.workers,
                           batch=t.batch),
            _callbacks=trainer_callbacks(t),
        )
    else:
        (save_dir / "results.csv").unlink(missing_ok=True)  # ultralytics appends to it: a rerun would mix two runs
        trainer = ZTrainer(overrides=train_overrides(data_yaml, cfg, save_dir), _callbacks=trainer_callbacks(cfg.train))
        model = ZModel(
            model_cfg(cfg.model.scale, cfg.model.width), ch=int(data.get("channels", 3)), nc=int(trainer.data["nc"]),
            verbose=RANK == -1,
        )
        model.names = trainer.data["names"]
        if cfg.model.weights:
            counts = load_3ch_weights(model, cfg.model.weights, verbose=False)
            LOGGER.info(
                f"Initial weights {cfg.model.weights}: {counts['loaded']}/{counts['total']} tensors loaded "
                f"(first conv adapted to {data.get('channels', 3)} channels), {len(counts['skipped'])} left at init"
            )
        model.z_gain = float(cfg.model.z_loss_gain)
        model.appearance = float(cfg.train.appearance)
        trainer.model = model  # a ready model: ultralytics skips its own build and pickles it for DDP workers
    trainer.train()
    best = Path(trainer.best)
    if not best.is_file():
        last = Path(trainer.last)
        if last.is_file():
            LOGGER.warning(f"{best} missing (no validation improved?), returning {last}")
            return last
        raise RuntimeError(f"{save_dir}: training finished without a checkpoint")
    return best
