"""5-channel slice stacks: channel k of the stack centred on z holds slice ``z + (k - channels // 2) * stride``.

Out-of-range slices are reflected like numpy's ``mode="reflect"`` (the edge slice is not repeated: -1 -> 1,
depth -> depth - 2), folded repeatedly when the stack spans more than the tomogram (period 2 * (depth - 1)).
"""

from __future__ import annotations

import cv2
import numpy as np


def reflect_index(index: np.ndarray, depth: int) -> np.ndarray:
    """Fold any integer indices into [0, depth) by mirror reflection about the first and last slice."""
    index = np.asarray(index, np.int64)
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if depth == 1:
        return np.zeros_like(index)
    period = 2 * (depth - 1)
    folded = np.mod(index, period)
    return np.where(folded < depth, folded, period - folded)


def stack_indices(z_centre: int | np.ndarray, depth: int, stride: int, channels: int = 5) -> np.ndarray:
    """Slice indices of the stacks centred on `z_centre`: shape (channels,) for a scalar, (*z.shape, channels) else."""
    z = np.asarray(z_centre, np.int64)
    if np.any((z < 0) | (z >= depth)):
        raise ValueError(f"stack centres must lie in [0, {depth}), got {z.min()}..{z.max()}")
    offsets = (np.arange(channels, dtype=np.int64) - channels // 2) * int(stride)
    return reflect_index(z[..., None] + offsets, depth)


def make_stacks(volume: np.ndarray, z_centres: np.ndarray, stride: int, channels: int = 5) -> np.ndarray:
    """(B, H, W, channels) uint8 stacks of a (z, y, x) volume, copied slice by slice straight into place: no
    temporaries, and several times faster than a gather followed by a channels-last copy."""
    idx = stack_indices(np.asarray(z_centres).reshape(-1), volume.shape[0], stride, channels)
    out = np.empty((len(idx), *volume.shape[1:], channels), volume.dtype)
    for b, slices in enumerate(idx):
        for k, z in enumerate(slices):
            out[b, ..., k] = volume[z]
    return out


def make_stack(volume: np.ndarray, z_centre: int, stride: int, channels: int = 5) -> np.ndarray:
    """One (H, W, channels) stack centred on slice `z_centre`."""
    return make_stacks(volume, np.asarray([z_centre]), stride, channels)[0]


def z_average(volume: np.ndarray, n: int) -> np.ndarray:
    """(D, H, W) uint8 -> each slice the rounded mean of the `n` (odd) slices centred on it, edges mirrored as stacks
    mirror them: a stack with a stride of `n` then sees every slice once, with 1/sqrt(n) of the noise per channel."""
    if n <= 1:
        return volume
    if n % 2 == 0:
        raise ValueError(f"z_average must be odd (centred on the slice), got {n}")
    return cv2.blur(volume.reshape(len(volume), -1), (1, n)).reshape(volume.shape)
