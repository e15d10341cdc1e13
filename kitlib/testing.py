"""Test helpers that ship with the kit (tests, `make dry-run --tiny-weights`, `make bench`): a toy training export,
an untrained checkpoint, a tiny run folder (with an untrained verifier).

`make_toy_export`: a tiny synthetic training export following the training-export contract.

Each image is a 5-page uint8 TIFF: noise plus, in positive images, a bright blob whose brightness across the pages
follows the motor's z offset from the centre slice (page k shows slice ``centre + (k - 2) * stack_stride``), so both
the box and dz are learnable. Labels are pose-format lines ``0 cx cy w h cx cy zenc``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from kitlib.config import KitConfig
from kitlib.preprocess.zcode import encode_dz, z_span_for


def _stack(rng: np.random.Generator, size: int, motor: tuple[float, float, float] | None, stride: int, box: int):
    """(pages, label line or None) for one image; motor = (cx, cy, dz) in pixels / slices."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    pages = []
    for k in range(5):
        page = rng.normal(90.0, 12.0, (size, size)).astype(np.float32)
        if motor is not None:
            cx, cy, dz = motor
            z_k = (k - 2) * stride  # this page's slice relative to the centre
            amp = 150.0 * np.exp(-((z_k - dz) ** 2) / (2.0 * (0.8 * stride) ** 2))
            page += amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * (box / 4.0) ** 2))
        pages.append(np.clip(page, 0, 255).astype(np.uint8))
    if motor is None:
        return pages, None
    cx, cy, dz = motor
    zenc = float(encode_dz(dz, z_span_for(stride)))
    n = [cx / size, cy / size, box / size, box / size]
    return pages, f"0 {n[0]:.6f} {n[1]:.6f} {n[2]:.6f} {n[3]:.6f} {n[0]:.6f} {n[1]:.6f} {zenc:.6f}"


def make_toy_export(
    root: str | Path,
    n_train: int = 12,
    n_val: int = 4,
    size: int = 96,
    stack_stride: int = 2,
    box: int = 24,
    negatives: int = 2,
    seed: int = 0,
) -> Path:
    """Write a toy export under `root`; returns its dataset.yaml. ``negatives`` images per split have no motor."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    z_span = z_span_for(stack_stride)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            motor = None
            if i >= min(negatives, n - 1):
                margin = box
                motor = (
                    float(rng.uniform(margin, size - margin)),
                    float(rng.uniform(margin, size - margin)),
                    float(rng.uniform(-0.8, 0.8) * z_span),
                )
            pages, line = _stack(rng, size, motor, stack_stride, box)
            stem = f"toy_{split}_{i:03d}"
            if not cv2.imwritemulti(str(root / "images" / split / f"{stem}.tif"), pages):
                raise OSError(f"{root}: cannot write TIFF {stem}.tif")
            (root / "labels" / split / f"{stem}.txt").write_text(f"{line}\n" if line else "")
    data = {
        "path": str(root.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": {0: "motor"},
        "channels": 5,
        "kpt_shape": [1, 3],
        "flip_idx": [0],
        "stack_stride": int(stack_stride),
        "z_span": int(z_span),
    }
    out = root / "dataset.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def untrained_checkpoint(
    path: Path, imgsz: int = 96, stack_stride: int = 2, scale: str = "n", channels: int = 5, seed: int = 0,
    fold: int | None = None, held_out: list[str] | None = None,
) -> Path:
    """A freshly initialised z-head model saved as a kit checkpoint (what `ZDetector.load` reads): for plumbing and
    speed checks, whose results do not depend on the weights."""
    import torch

    from kitlib.model.build import build_model, make_kit_meta
    from kitlib.preprocess.zcode import z_span_for

    torch.manual_seed(seed)
    model = build_model(scale, channels=channels)
    model.kit_meta = make_kit_meta(stack_stride, z_span_for(stack_stride), channels, imgsz, fold, held_out)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "kit_meta": model.kit_meta}, path)
    return path


def tiny_run(run_dir: Path, imgsz: int = 96, stack_stride: int = 2, seed: int = 0) -> Path:
    """A run folder with an untrained scale-n z-head as fold 0's checkpoint, an untrained verifier, a quantile-0.5
    presence rule and a CPU config sized for `synthesize(size='tiny')` tomograms (32 slices)."""
    import torch

    from kitlib.presence import PresenceRule
    from kitlib.run import RunDir
    from kitlib.verify.net import PatchNet
    from kitlib.verify.verifier import Verifier

    run = RunDir(Path(run_dir))
    untrained_checkpoint(run.fold_checkpoint(0), imgsz, stack_stride, seed=seed)
    PresenceRule("quantile", 0.5, f2=0.0, f2_ci=(0.0, 0.0), n=0).save(run.presence)
    # an untrained model scores low: a low conf keeps some detections so rows get a motor
    changes = {"preprocess": {"stack_stride": stack_stride}, "model": {"imgsz": imgsz}, "infer": {"conf": 0.01}}
    cfg = KitConfig.preset("cpu").override(changes, "tiny_run")
    run.save_config(cfg)
    torch.manual_seed(seed)
    Verifier({0: [PatchNet(cfg.verify.planes, cfg.verify.width)]}, cfg.verify).save(run.verifier)
    return run.root
