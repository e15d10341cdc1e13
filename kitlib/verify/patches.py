"""Patches for the verifier (pure numpy): cut around candidates on the model's grid, the network's window of them, and
augmented training views.

A stored patch is a (depth, side, side) uint8 block of consecutive slices centred on the point: the network's window
(`planes` z planes `plane_step` slices apart, each `patch` x `patch`) plus room to move that window by up to
`shift_z` slices and `shift` voxels each way in training. Prediction takes the centred window. The grid may be
binned first (`bin`: every value the mean of bin^3 voxels), so the default preset's 16 A grid gives the same 64 A
patches as the cpu preset's. Out-of-range voxels are mirrored, as the stacks mirror slices
(`kitlib.preprocess.reflect_index`).
"""

from __future__ import annotations

import numpy as np

from kitlib.config import VerifyConfig
from kitlib.preprocess import reflect_index


def cut_shape(vcfg: VerifyConfig) -> tuple[int, int]:
    """(depth, side) of a stored patch: the network's window plus the room to shift it."""
    return (vcfg.planes - 1) * vcfg.plane_step + 1 + 2 * vcfg.shift_z, vcfg.patch + 2 * vcfg.shift


def cut_patches(grid: np.ndarray, points: np.ndarray, vcfg: VerifyConfig) -> np.ndarray:
    """(N, depth, side, side) uint8 patches (`cut_shape`) of a (z, y, x) grid centred on `points` ((N, 3) grid voxel
    coordinates, rounded to the nearest binned voxel)."""
    depth, side = cut_shape(vcfg)
    points = np.asarray(points, np.float64).reshape(-1, 3)
    b = vcfg.bin
    offsets_z = (np.arange(depth) - depth // 2) * b
    offsets_yx = np.arange(side * b) - side * b // 2
    within = np.arange(b) - (b - 1) // 2  # the bin's voxels around each binned voxel's centre
    out = np.empty((len(points), depth, side, side), np.uint8)
    for i, (z, y, x) in enumerate(np.rint(points).astype(np.int64)):
        iz = reflect_index((z + offsets_z)[:, None] + within, grid.shape[0]).ravel()
        iy = reflect_index(y + offsets_yx, grid.shape[1])
        ix = reflect_index(x + offsets_yx, grid.shape[2])
        block = grid[np.ix_(iz, iy, ix)]
        if b > 1:
            block = np.rint(block.reshape(depth, b, side, b, side, b).mean(axis=(1, 3, 5)))
        out[i] = block
    return out


def _window(patch: np.ndarray, vcfg: VerifyConfig, z0: int, y0: int, x0: int) -> np.ndarray:
    """The network's planes of one stored patch, from slice z0 and in-plane corner (y0, x0)."""
    last = z0 + (vcfg.planes - 1) * vcfg.plane_step
    return patch[z0 : last + 1 : vcfg.plane_step, y0 : y0 + vcfg.patch, x0 : x0 + vcfg.patch]


def to_input(patches: np.ndarray) -> np.ndarray:
    """uint8 windows -> float32 network input, mid-grey at 0 (the grid's contrast is already per tomogram)."""
    return (patches.astype(np.float32) - 128.0) / 64.0


def network_input(patches: np.ndarray, vcfg: VerifyConfig) -> np.ndarray:
    """(N, planes, patch, patch) float32 input: the centred window of each stored patch."""
    return to_input(np.stack([_window(p, vcfg, vcfg.shift_z, vcfg.shift, vcfg.shift) for p in patches]))


def augment(patches: np.ndarray, vcfg: VerifyConfig, rng: np.random.Generator) -> np.ndarray:
    """Training views of stored patches as float32 input (N, planes, patch, patch): the window moved at random
    (the candidate anywhere within `shift_z` slices and `shift` voxels of its centre), a random one of the 8 in-plane
    flips and rotations, z reversed half the time (the wedge is symmetric) and a random contrast and brightness."""
    n = len(patches)
    out = np.empty((n, vcfg.planes, vcfg.patch, vcfg.patch), np.float32)
    starts = np.column_stack([rng.integers(0, 2 * vcfg.shift_z + 1, n), rng.integers(0, 2 * vcfg.shift + 1, (n, 2))])
    flips = rng.random((n, 4)) < 0.5
    gain, offset = rng.uniform(0.7, 1.3, n), rng.uniform(-0.3, 0.3, n)
    for i in range(n):
        (flip_y, flip_x, swap, flip_z) = flips[i]
        p = to_input(_window(patches[i], vcfg, *starts[i]))
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
