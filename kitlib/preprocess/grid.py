"""The preprocessing every consumer of a tomogram shares (inference, the z-error check, the training export): contrast
once, resample once onto the grid the model sees, then cut stacks at centre slices in batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from kitlib.config import PreprocessConfig
from kitlib.preprocess.contrast import normalize_tomogram
from kitlib.preprocess.resample import resample_factor, resample_volume
from kitlib.preprocess.stacks import make_stacks, z_average


def model_grid(volume: np.ndarray, voxel_spacing: float | None, cfg: PreprocessConfig) -> tuple[np.ndarray, float]:
    """(grid, factor): `volume` contrast-normalised in place (a copy would double peak memory; the raw values are
    not needed afterwards), resampled by the spacing policy and averaged along z (`cfg.z_average`); `factor` maps
    native voxels onto the grid."""
    normalize_tomogram(volume, cfg, out=volume)
    factor = resample_factor(volume.shape, voxel_spacing, cfg)
    return z_average(resample_volume(volume, factor), cfg.z_average), factor


def stack_batches(
    grid: np.ndarray, centres: np.ndarray, stride: int, channels: int, batch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(centres, (B, H, W, channels) stacks) for consecutive batches of `centres`: one batch in memory at a time."""
    for start in range(0, len(centres), batch):
        part = centres[start : start + batch]
        yield part, make_stacks(grid, part, stride, channels)
