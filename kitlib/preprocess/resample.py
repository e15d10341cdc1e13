"""The spacing policy: resampling to a common voxel spacing or size, with exact coordinate maps between the two grids.

Convention (OpenCV's, for every axis): voxel i covers [i, i + 1) and its centre is i + 0.5, so a resize from n to m
voxels maps a coordinate as ``x_dst = (x_src + 0.5) * m / n - 0.5``. The maps use the integer shapes, not the
nominal factor, so they are exact for the grid `resample_volume` actually produced.
"""

from __future__ import annotations

import cv2
import numpy as np

from kitlib.config import PreprocessConfig

_Z_BLOCK = 32768  # columns per cv2.resize call in the z pass (cache-friendly, far from cv2's size limits)


def resample_factor(shape: tuple[int, ...], voxel_spacing: float | None, cfg: PreprocessConfig) -> float:
    """Scale from a tomogram's native grid (`shape`, (z, y, x)) to the grid the model sees, by `cfg.grid`: 1.0 for
    "native", spacing / `target_spacing` for "spacing" (an unknown spacing, the test set's, taken as
    `cfg.assumed_spacing`), `resize_to` / the longest in-plane edge for "size". Below 1 shrinks the volume."""
    if cfg.grid == "size":
        return float(cfg.resize_to) / float(max(shape[-2:]))
    if cfg.grid != "spacing":
        return 1.0
    spacing = cfg.assumed_spacing if voxel_spacing is None else voxel_spacing
    if spacing <= 0 or cfg.target_spacing <= 0:
        raise ValueError(f"voxel spacings must be positive, got {spacing} and {cfg.target_spacing}")
    return float(spacing) / float(cfg.target_spacing)


def grid_policy(cfg: PreprocessConfig) -> dict:
    """The settings that decide the model's grid, as a checkpoint records them (prediction re-applies them)."""
    return {"grid": cfg.grid, "target_spacing": cfg.target_spacing, "resize_to": cfg.resize_to,
            "z_average": cfg.z_average}


def resampled_shape(shape: tuple[int, ...], factor: float) -> tuple[int, ...]:
    """The grid `resample_volume` produces: every axis scaled by `factor` and rounded, at least one voxel."""
    return tuple(max(1, int(round(n * factor))) for n in shape)


def resample_volume(volume: np.ndarray, factor: float) -> np.ndarray:
    """Resize a (z, y, x) volume by `factor` on every axis (the input itself when factor is 1).

    Separable: each z slice is resized in (y, x), then the (z, y * x) view in z, in column blocks. `INTER_AREA`
    (box average, no aliasing) when shrinking, `INTER_LINEAR` when enlarging; both follow the pixel-centre
    convention of the module docstring.
    """
    if factor == 1.0:
        return volume
    z, y, x = volume.shape
    dz, dy, dx = resampled_shape(volume.shape, factor)
    interp = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    planar = np.empty((z, dy, dx), volume.dtype)
    for src, dst in zip(volume, planar):
        cv2.resize(src, (dx, dy), dst=dst, interpolation=interp)
    if dz == z:
        return planar
    out = np.empty((dz, dy, dx), volume.dtype)
    src, dst = planar.reshape(z, -1), out.reshape(dz, -1)  # z runs down the rows: only the height changes
    for c in range(0, src.shape[1], _Z_BLOCK):
        width = min(_Z_BLOCK, src.shape[1] - c)
        cv2.resize(src[:, c : c + width], (width, dz), dst=dst[:, c : c + width], interpolation=interp)
    return out


def _scale(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    src, dst = np.asarray(src_shape[-3:], np.float64), np.asarray(dst_shape[-3:], np.float64)
    return dst / src


def to_resampled(zyx: np.ndarray, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """(z, y, x) voxel coordinates (shape (..., 3)) on the `src_shape` grid -> the same points on `dst_shape`."""
    return (np.asarray(zyx, np.float64) + 0.5) * _scale(src_shape, dst_shape) - 0.5


def to_original(zyx: np.ndarray, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `to_resampled`: points on the resampled `dst_shape` grid -> the original `src_shape` grid."""
    return (np.asarray(zyx, np.float64) + 0.5) / _scale(src_shape, dst_shape) - 0.5
