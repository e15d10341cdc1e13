"""Patches for the verifier (pure numpy): cut around candidates on the model's grid, centre-cropped to the network's
input, and augmented for training.

A patch is a (planes, side, side) uint8 array: `planes` z planes `plane_step` slices apart, centred on the point, each
a side x side window around it. The grid may be binned first (`bin`: every value the mean of bin^3 voxels), so the
default preset's 16 A grid gives the same 64 A patches as the cpu preset's. Out-of-range voxels are mirrored, as
the stacks mirror slices (`kitlib.preprocess.reflect_index`).
"""

from __future__ import annotations

import numpy as np

from kitlib.config import VerifyConfig
from kitlib.preprocess import reflect_index


def cut_side(vcfg: VerifyConfig) -> int:
    """Side of the patches stored for training: the network's input plus room to shift it by `shift` each way."""
    return vcfg.patch + 2 * vcfg.shift


def cut_patches(grid: np.ndarray, points: np.ndarray, vcfg: VerifyConfig, side: int | None = None) -> np.ndarray:
    """(N, planes, side, side) uint8 patches of a (z, y, x) grid centred on `points` ((N, 3) grid voxel coordinates,
    rounded to the nearest binned voxel); `side` defaults to `cut_side(vcfg)`."""
    side = cut_side(vcfg) if side is None else side
    points = np.asarray(points, np.float64).reshape(-1, 3)
    b = vcfg.bin
    offsets_z = (np.arange(vcfg.planes) - vcfg.planes // 2) * vcfg.plane_step * b
    offsets_yx = np.arange(side * b) - side * b // 2
    within = np.arange(b) - (b - 1) // 2  # the bin's voxels around each binned voxel's centre
    out = np.empty((len(points), vcfg.planes, side, side), np.uint8)
    for i, (z, y, x) in enumerate(np.rint(points).astype(np.int64)):
        iz = reflect_index((z + offsets_z)[:, None] + within, grid.shape[0]).ravel()
        iy = reflect_index(y + offsets_yx, grid.shape[1])
        ix = reflect_index(x + offsets_yx, grid.shape[2])
        block = grid[np.ix_(iz, iy, ix)]
        if b > 1:
            block = block.reshape(vcfg.planes, b, side, b, side, b).mean(axis=(1, 3, 5))
        out[i] = np.rint(block) if b > 1 else block
    return out


def centre_crop(patches: np.ndarray, side: int) -> np.ndarray:
    """The central side x side window of (N, planes, S, S) patches."""
    start = (patches.shape[-1] - side) // 2
    return np.ascontiguousarray(patches[..., start : start + side, start : start + side])


def to_input(patches: np.ndarray) -> np.ndarray:
    """uint8 patches -> float32 network input, mid-grey at 0 (the grid's contrast is already per tomogram)."""
    return (patches.astype(np.float32) - 128.0) / 64.0


def augment(patches: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """Training views of uint8 (N, planes, S, S) patches as float32 input (N, planes, side, side): a random window
    (the candidate anywhere within (S - side) / 2 of its centre), a random one of the 8 in-plane flips and rotations,
    z reversed half the time (the wedge is symmetric) and a random contrast and brightness."""
    n, _, s, _ = patches.shape
    x = to_input(patches)
    out = np.empty((n, patches.shape[1], side, side), np.float32)
    corners = rng.integers(0, s - side + 1, (n, 2))
    flips = rng.random((n, 4)) < 0.5
    gain, offset = rng.uniform(0.7, 1.3, n), rng.uniform(-0.3, 0.3, n)
    for i in range(n):
        (y0, x0), (flip_y, flip_x, swap, flip_z) = corners[i], flips[i]
        p = x[i, :, y0 : y0 + side, x0 : x0 + side]
        p = p[:, ::-1] if flip_y else p
        p = p[:, :, ::-1] if flip_x else p
        p = p.transpose(0, 2, 1) if swap else p
        p = p[::-1] if flip_z else p
        out[i] = p * gain[i] + offset[i]
    return out


def tta_views(x: np.ndarray) -> list[np.ndarray]:
    """The views a batch of (N, planes, H, W) inputs is scored in (its probability is their mean): as it is, flipped
    up-down, left-right and both, transposed, and reversed along z."""
    return [x, x[..., ::-1, :], x[..., ::-1], x[..., ::-1, ::-1], x.swapaxes(-1, -2), x[:, ::-1]]
