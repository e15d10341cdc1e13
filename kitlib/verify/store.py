"""The verifier's material on disk: each held-out tomogram's candidates and labelled motors with their patches,
written while local scoring predicts its fold (`runs/<run>/verify/<tomo_id>.npz`), read back to train the fold
networks and to rescore the out-of-fold candidates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitlib.config import HIT_RADIUS_A
from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord


@dataclass
class TomoPatches:
    """One tomogram's candidates (best detector score first) and labelled motors, in original voxels, with patches."""

    tomo_id: str
    zyx: np.ndarray  # (K, 3) candidates
    scores: np.ndarray  # (K,) their detector scores
    patches: np.ndarray  # (K, planes, S, S) uint8
    motor_patches: np.ndarray  # (M, planes, S, S) uint8, at the labelled motors


def patches_file(folder: Path, tomo_id: str) -> Path:
    return Path(folder) / f"{tomo_id}.npz"


def save_tomo_patches(folder: Path, item: TomoPatches) -> Path:
    """Write `item` to `<folder>/<tomo_id>.npz` (complete, or not at all)."""
    path = patches_file(folder, item.tomo_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, zyx=item.zyx, scores=item.scores, patches=item.patches, motor_patches=item.motor_patches)
    tmp.replace(path)
    return path


def load_tomo_patches(folder: Path, tomo_id: str) -> TomoPatches:
    path = patches_file(folder, tomo_id)
    try:
        with np.load(path) as f:
            return TomoPatches(tomo_id, f["zyx"], f["scores"], f["patches"], f["motor_patches"])
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot read the verifier's patches ({type(e).__name__}: {e}); rerun local-score "
                        f"with --resume to predict the held-out folds again") from e


def candidate_labels(zyx: np.ndarray, record: TomoRecord) -> np.ndarray:
    """Per candidate: 1 within the competition's hit radius of a labelled motor, 0 farther from all of them, -1
    (unknown) when far but the tomogram states more motors than it lists (it may be an unlisted one)."""
    zyx = np.asarray(zyx, np.float64).reshape(-1, 3)
    motors = np.asarray(record.motors, np.float64).reshape(-1, 3)
    if len(motors):
        near = np.linalg.norm(zyx[:, None] - motors[None], axis=-1).min(1) <= HIT_RADIUS_A / record.voxel_spacing
    else:
        near = np.zeros(len(zyx), bool)
    complete = record.n_motors_stated <= len(record.motors)
    return np.where(near, 1, 0 if complete else -1)


def training_samples(folder: Path, records: list[TomoRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(patches, 0/1 labels) of `records`' stored tomograms: every candidate of known label, and every motor."""
    patches, labels = [], []
    for record in records:
        item = load_tomo_patches(folder, record.tomo_id)
        label = candidate_labels(item.zyx, record)
        known = label >= 0
        patches += [item.patches[known], item.motor_patches]
        labels += [label[known], np.ones(len(item.motor_patches), np.int64)]
    if not patches:
        raise ValueError("no tomograms to train the verifier on")
    return np.concatenate(patches), np.concatenate(labels).astype(bool)
