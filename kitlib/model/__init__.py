"""The 5-channel YOLOv8 with a z-head: model, loss, trainer, validator, inference.

Public API (imported lazily: ``import kitlib.model`` does not import torch or ultralytics):
- `ZDetector` (kitlib.model.detector): ``ZDetector.load(path).predict(stacks)`` -> per image [x, y, w, h, conf, dz];
- `train_fold` (kitlib.model.fold): export one fold and train the model that holds it out, into the run folder;
  `train_folds` several (side by side on the CPU: `train.parallel_folds`); `is_finished` tells a finished fold
  checkpoint from an interrupted one;
- `train` (kitlib.model.trainer): train on a kit training export, returns ``<save_dir>/weights/best.pt``;
  `epochs_trained` tells how many epochs the run that wrote a checkpoint trained;
- `build_model`, `load_3ch_weights`, `ZModel` (kitlib.model.build); `ZHead` (head); `ZLoss` (loss);
  `ZTrainer` (trainer); `ZValidator` (validator);
Every submodule that imports ultralytics calls `kitlib.runtime.prepare()` first.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "ZDetector": "kitlib.model.detector",
    "train": "kitlib.model.trainer",
    "epochs_trained": "kitlib.model.trainer",
    "train_fold": "kitlib.model.fold",
    "train_folds": "kitlib.model.fold",
    "is_finished": "kitlib.model.fold",
    "ZTrainer": "kitlib.model.trainer",
    "ZValidator": "kitlib.model.validator",
    "ZModel": "kitlib.model.build",
    "build_model": "kitlib.model.build",
    "load_3ch_weights": "kitlib.model.build",
    "load_kit_checkpoint": "kitlib.model.build",
    "ZHead": "kitlib.model.head",
    "ZLoss": "kitlib.model.loss",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kitlib.model' has no attribute {name!r}")
