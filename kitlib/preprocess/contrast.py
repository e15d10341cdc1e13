"""Per-tomogram percentile contrast: one window per tomogram, applied with a 256-entry lookup table."""

from __future__ import annotations

import cv2
import numpy as np

from kitlib.config import PreprocessConfig


def _check_volume(volume: np.ndarray) -> None:
    if volume.dtype != np.uint8 or volume.ndim != 3:
        raise TypeError(f"expected a uint8 (z, y, x) volume, got {volume.dtype} {volume.shape}")


def percentile_window(
    volume: np.ndarray, low: float = 2.0, high: float = 98.0, sample_step: int = 4
) -> tuple[float, float]:
    """The `low` and `high` percentiles of every `sample_step`-th voxel along each axis of a uint8 volume.

    Equal to ``np.percentile(volume[::s, ::s, ::s], [low, high])`` (linear interpolation), but computed from a
    histogram accumulated slice by slice, so the subsample is never copied as a whole.
    """
    _check_volume(volume)
    if not 0.0 <= low <= high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low <= high <= 100, got {low}, {high}")
    step = max(1, int(sample_step))
    sample = volume[::step, ::step, ::step]  # a strided view
    if sample.size == 0:
        raise ValueError(f"cannot compute a contrast window of an empty volume {volume.shape}")
    hist = np.zeros(256, np.int64)
    for plane in sample:
        hist += np.bincount(plane.ravel(), minlength=256)
    cdf = np.cumsum(hist)  # cdf[v] = number of samples <= v
    rank = np.array([low, high]) / 100.0 * (cdf[-1] - 1)  # fractional rank in the sorted sample
    below = np.searchsorted(cdf, np.floor(rank), side="right")
    above = np.searchsorted(cdf, np.ceil(rank), side="right")
    lo, hi = below + (above - below) * (rank - np.floor(rank))
    return float(lo), float(hi)


def window_lut(lo: float, hi: float) -> np.ndarray:
    """The uint8 lookup table mapping [lo, hi] linearly onto [0, 255], clipped outside.

    A degenerate window (hi <= lo, e.g. a constant volume) is the limit of the linear map: a step at `lo`
    (values <= lo -> 0, above -> 255), so a constant volume becomes all zeros.
    """
    values = np.arange(256, dtype=np.float64)
    if hi > lo:
        mapped = (values - lo) * (255.0 / (hi - lo))
    else:
        mapped = np.where(values > lo, 255.0, 0.0)
    return np.rint(np.clip(mapped, 0.0, 255.0)).astype(np.uint8)


def apply_window(volume: np.ndarray, lo: float, hi: float, out: np.ndarray | None = None) -> np.ndarray:
    """Map [lo, hi] to [0, 255] with clipping, as a table look-up (`cv2.LUT`, no temporaries).

    `out` may be `volume` itself (in place); otherwise a new array is the only extra memory.
    """
    _check_volume(volume)
    if out is None:
        out = np.empty(volume.shape, np.uint8)
    elif out.shape != volume.shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 of shape {volume.shape}, got {out.dtype} {out.shape}")
    lut = window_lut(lo, hi)
    # np.take(lut, volume) would cast the uint8 indices to intp (8x the volume in memory); cv2.LUT reads the bytes
    # directly, ~10x faster. One call per slice keeps every view 2-D, whatever the strides.
    for src, dst in zip(volume, out):
        cv2.LUT(src, lut, dst=dst)
    return out


def normalize_tomogram(volume: np.ndarray, cfg: PreprocessConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Percentile contrast of a whole tomogram: the window from `percentile_window`, applied once."""
    lo, hi = percentile_window(volume, cfg.clip_low, cfg.clip_high, cfg.sample_step)
    return apply_window(volume, lo, hi, out=out)
