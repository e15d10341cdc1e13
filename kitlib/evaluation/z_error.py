"""Does the z-head learn? Out-of-fold |z error| of matched detections, next to the no-z-head baseline.

For every held-out tomogram with motors (scored by its fold's own model), stacks are cut after the inference
preprocessing at every centre slice within +-z_span of each true motor. The most confident detection within the hit
radius of that motor in (y, x) is matched; its z estimate ``centre + dz`` (the z-head) and the centre slice alone (the
baseline) are compared with the true z. Errors are in slices of the inference grid (the original grid unless
`preprocess.grid` resamples). The z-head passes when its median error is below ``stride / 2``.

Writes `runs/<run>/z_error.json` and `z_error.png`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kitlib.config import HIT_RADIUS_A, KitConfig
from kitlib.data.errors import DataError
from kitlib.data.layout import CompetitionData
from kitlib.data.sources import load_training_labels
from kitlib.data.tomogram import iter_tomograms
from kitlib.evaluation.local_score import run_folds
from kitlib.evaluation.plots import plot_z_error
from kitlib.infer.locate import Detector, detections_to_points
from kitlib.infer.predictor import Predictor
from kitlib.infer.tta import View
from kitlib.preprocess import model_grid, stack_batches, to_resampled
from kitlib.preprocess.zcode import z_span_for
from kitlib.run import RunDir

ERROR_COLUMNS = ("offset", "z_head", "baseline")  # centre - true z, |centre + dz - true z|, |centre - true z|


def match_detection(points: np.ndarray, yx: Sequence[float], radius: float) -> int | None:
    """Row of the most confident point ``[z, y, x, conf]`` within `radius` voxels of `yx` in (y, x); None if none."""
    pts = np.asarray(points, np.float64).reshape(-1, 4)
    near = np.hypot(pts[:, 1] - yx[0], pts[:, 2] - yx[1]) <= radius
    if not near.any():
        return None
    rows = np.flatnonzero(near)
    return int(rows[np.argmax(pts[rows, 3])])


def motor_z_errors(
    grid: np.ndarray, motor: Sequence[float], detector: Detector, radius: float, cfg: KitConfig
) -> tuple[np.ndarray, int]:
    """(M, 3) rows `ERROR_COLUMNS` of the matched stacks around one motor (z, y, x on `grid`), and the stacks cut."""
    stride = detector.stack_stride
    z_true = float(motor[0])
    centres = np.arange(round(z_true) - 2 * stride, round(z_true) + 2 * stride + 1)
    centres = centres[(centres >= 0) & (centres < grid.shape[0])]
    rows = []
    for batch, stacks in stack_batches(grid, centres, stride, cfg.preprocess.channels, cfg.infer.batch):
        for centre, dets in zip(batch, detector.predict(stacks, conf=cfg.infer.conf, imgsz=cfg.infer.imgsz)):
            points = detections_to_points(dets, int(centre), View(), grid.shape[1:])
            hit = match_detection(points, motor[1:], radius)
            if hit is not None:
                rows.append((centre - z_true, abs(points[hit, 0] - z_true), abs(centre - z_true)))
    return np.asarray(rows, np.float64).reshape(-1, 3), len(centres)


def error_stats(errors: np.ndarray, stride: int, n_stacks: int) -> dict:
    """Median and p90 of the z-head and baseline errors, the counts, and `pass` (z-head median < stride / 2)."""
    errors = np.asarray(errors, np.float64).reshape(-1, 3)

    def q(col: int, p: float) -> float | None:
        return float(np.percentile(errors[:, col], p)) if len(errors) else None

    median = q(1, 50)
    return {
        "stride": int(stride),
        "z_span": z_span_for(stride),
        "threshold": stride / 2,
        "n_stacks": int(n_stacks),
        "n_matched": len(errors),
        "median_z_head": median,
        "p90_z_head": q(1, 90),
        "median_baseline": q(2, 50),
        "p90_baseline": q(2, 90),
        "pass": median is not None and median < stride / 2,
    }


def z_error(
    data: CompetitionData,
    cfg: KitConfig,
    run: RunDir,
    folds_path: Path | None = None,
    progress: bool = True,
) -> dict:
    """Out-of-fold z error of the run's fold models on the train split (folds: the run's); the JSON dict.

    Folds whose checkpoint is missing (still training) are skipped with a warning.
    """
    records = load_training_labels(data, cfg.data).records  # the override's corrections count here too
    folds = run_folds(data, records, cfg, run, folds_path)
    detectors: dict[int, Detector] = {}
    for fold in sorted(set(folds.values())):
        path = run.fold_checkpoint(fold)
        if path.is_file():
            detectors[fold] = Predictor.from_run([path], config=cfg, need_rule=False).detectors[0]
        else:
            warnings.warn(f"{path}: missing -> fold {fold} skipped", stacklevel=2)
    if not detectors:
        raise DataError(f"{run.root}: no fold*/weights/best.pt to evaluate")
    strides = {d.stack_stride for d in detectors.values()}
    if len(strides) != 1:
        raise DataError(f"{run.root}: fold models disagree on the stack stride: {sorted(strides)}")

    held_out = [r for r in records if r.motors and folds[r.tomo_id] in detectors]
    parts, n_stacks = [], 0
    folders = [data.split_dir("train") / r.tomo_id for r in held_out]
    stream = iter_tomograms(folders, threads=cfg.infer.decode_threads, progress=progress, desc="z error")
    for rec, (folder, volume) in zip(held_out, stream):
        if isinstance(volume, DataError):
            warnings.warn(f"{volume} -> skipped", stacklevel=2)
            continue
        grid, factor = model_grid(volume, rec.voxel_spacing, cfg.preprocess)
        radius = HIT_RADIUS_A / rec.voxel_spacing * factor
        for motor in to_resampled(np.asarray(rec.motors, np.float64), rec.shape, grid.shape):
            rows, n = motor_z_errors(grid, motor, detectors[folds[rec.tomo_id]], radius, cfg)
            parts.append(rows)
            n_stacks += n
    errors = np.concatenate(parts) if parts else np.empty((0, 3))

    result = {
        **error_stats(errors, strides.pop(), n_stacks),
        "units": "slices",
        "folds": sorted(detectors),
        "n_tomograms": len(held_out),
        "n_motors": sum(len(r.motors) for r in held_out),
        "folds_csv": str(run.folds_csv),
        "weights": [str(run.fold_checkpoint(f)) for f in sorted(detectors)],
        "plot": str(plot_z_error(errors, run.plot("z_error"))),
    }
    run.z_error.write_text(json.dumps(result, indent=2))
    return result


def format_z_table(result: dict) -> str:
    """The figures as a small text table."""
    def f(v: float | None) -> str:
        return f"{v:7.2f}" if v is not None else "      -"

    return "\n".join([
        f"{'|z error| (slices)':<22} {'median':>7} {'p90':>7}",
        f"{'z-head (centre + dz)':<22} {f(result['median_z_head'])} {f(result['p90_z_head'])}",
        f"{'baseline (centre)':<22} {f(result['median_baseline'])} {f(result['p90_baseline'])}",
        f"matched {result['n_matched']} of {result['n_stacks']} stacks around {result['n_motors']} motors in "
        f"{result['n_tomograms']} held-out tomograms (folds {result['folds']}), stride {result['stride']}",
        f"pass (z-head median < stride/2 = {result['threshold']:g}): {'yes' if result['pass'] else 'NO'}",
    ])
