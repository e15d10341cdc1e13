"""locate_motor's coordinate maths end to end: a motor planted in a tomogram comes back at the same (z, y, x) through
every TTA view (flips, quarter turns, z-reversal), on non-square slices, with and without resampling, to 0.1 voxel
(well inside the 0.5 asked for, so a half-voxel slip fails).

`BlobDetector` is a stand-in for the model (it implements `ZDetector.predict`'s interface): it measures the planted
blob in whatever view it is handed, so the view, stack, resampling and inverse maps are tested without training.
"""

from __future__ import annotations

import numpy as np
import pytest

from kitlib.config import KitConfig, PreprocessConfig
from kitlib.infer.locate import detections_to_points, locate_motor
from kitlib.infer.tta import VIEWS, forward_points
from kitlib.preprocess import make_stacks

SHAPE = (48, 30, 44)  # (z, y, x): non-square slices, so a swapped height / width shows
MOTOR = (23.3, 12.6, 27.8)  # voxel indices, off the voxel centres
SIGMA_XY, SIGMA_Z, AMPLITUDE = 2.5, 3.0, 200.0
STRIDE = 3
ALL = list(VIEWS.values())


class BlobDetector:
    """Stand-in for the model: the box centre is the intensity centroid (pixel i covers [i, i + 1)) of the summed
    channels in a window around the brightest pixel; dz is the vertex of the parabola through the log channel masses
    around the brightest channel (exact for a Gaussian along z). No detection when the blob is faint or its peak
    channel is at the edge of the stack."""

    def __init__(self, stack_stride: int = STRIDE, half_window: int = 10, min_mass: float = 2000.0):
        self.stack_stride = stack_stride
        self.half_window = half_window
        self.min_mass = min_mass

    def predict(self, stacks: np.ndarray, conf: float = 0.05, imgsz: int | None = None) -> list[np.ndarray]:
        return [self._detect(s.astype(np.float64)) for s in stacks]

    def _detect(self, stack: np.ndarray) -> np.ndarray:
        total = stack.sum(-1)
        py, px = np.unravel_index(np.argmax(total), total.shape)
        r = self.half_window
        (y0, y1), (x0, x1) = (max(0, py - r), py + r + 1), (max(0, px - r), px + r + 1)
        y1, x1 = min(y1, total.shape[0]), min(x1, total.shape[1])
        window = stack[y0:y1, x0:x1]
        mass = window.sum((0, 1))
        k = int(np.argmax(mass))
        if mass.sum() < self.min_mass or not 0 < k < len(mass) - 1 or mass[k - 1 : k + 2].min() <= 0:
            return np.empty((0, 6), np.float32)
        lo, mid, hi = np.log(mass[k - 1 : k + 2])
        vertex = k + 0.5 * (lo - hi) / (lo - 2 * mid + hi)
        dz = (vertex - len(mass) // 2) * self.stack_stride
        w = window.sum(-1)
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
        return np.array([[(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum(), 8.0, 8.0, 0.9, dz]], np.float32)


def planted_volume() -> np.ndarray:
    """A Gaussian blob at `MOTOR` on a black background, with one white corner voxel so that a 0-100 percentile
    window is the identity (the contrast step must not clip the blob)."""
    zz, yy, xx = np.indices(SHAPE, dtype=np.float64)
    z0, y0, x0 = MOTOR
    r2 = ((yy - y0) ** 2 + (xx - x0) ** 2) / SIGMA_XY**2 + (zz - z0) ** 2 / SIGMA_Z**2
    volume = np.rint(AMPLITUDE * np.exp(-r2 / 2)).astype(np.uint8)
    volume[0, 0, 0] = 255
    return volume


def config(**grid) -> KitConfig:
    """The cpu preset with an identity contrast window and the grid policy `grid` (PreprocessConfig keys)."""
    cfg = KitConfig.preset("cpu")
    cfg.preprocess = PreprocessConfig(clip_low=0.0, clip_high=100.0, stack_stride=STRIDE, **grid)
    cfg.infer.batch = 8
    return cfg


@pytest.mark.parametrize("view", ALL, ids=str)
def test_detections_to_points_inverts_the_view(view):
    """A detection placed where a voxel lands in the view maps back to that voxel index and its z."""
    rng = np.random.default_rng(0)
    h, w = SHAPE[1:]
    zyx = np.column_stack([rng.integers(10, 40, 50), rng.uniform(0, h - 1, 50), rng.uniform(0, w - 1, 50)])
    dz = rng.uniform(-6, 6, 50)
    z_centre = 20
    seen = forward_points(np.column_stack([zyx[:, 2] + 0.5, zyx[:, 1] + 0.5, zyx[:, 0] - z_centre + dz]), view, (h, w))
    dets = np.column_stack([seen[:, 0], seen[:, 1], np.full(50, 8.0), np.full(50, 8.0), np.full(50, 0.7), seen[:, 2]])
    points = detections_to_points(dets, z_centre, view, (h, w))
    np.testing.assert_allclose(points[:, :3], zyx + np.column_stack([dz, 0 * dz, 0 * dz]), atol=1e-9)
    np.testing.assert_array_equal(points[:, 3], 0.7)


GRIDS = {  # (voxel spacing, grid policy): every policy, shrinking and enlarging, and a test tomogram's unknown spacing
    "native": (15.0, {"grid": "native"}),
    "spacing-up": (15.0, {"grid": "spacing", "target_spacing": 10.0}),
    "spacing-down": (10.0, {"grid": "spacing", "target_spacing": 16.0}),
    "spacing-assumed": (None, {"grid": "spacing", "target_spacing": 16.0, "assumed_spacing": 10.0}),
    "size-down": (15.0, {"grid": "size", "resize_to": 29}),
    "size-up": (None, {"grid": "size", "resize_to": 66}),
}


@pytest.mark.parametrize("spacing, grid", GRIDS.values(), ids=GRIDS)
@pytest.mark.parametrize("view", ALL, ids=str)
def test_planted_motor_round_trip(view, spacing, grid):
    """The motor found on the policy's grid maps back onto the original voxels."""
    located = locate_motor(planted_volume(), [BlobDetector()], config(**grid), [view], voxel_spacing=spacing,
                           slice_step=2)
    best = located.best
    assert best is not None and best.n_members >= 3
    np.testing.assert_allclose([best.z, best.y, best.x], MOTOR, atol=0.1)


def test_all_views_fused_and_ensemble():
    cfg = config(grid="spacing", target_spacing=10.0)
    located = locate_motor(planted_volume(), [BlobDetector(), BlobDetector()], cfg, ALL, voxel_spacing=15.0,
                           slice_step=3)
    assert located.n_views == 2 * len(ALL)
    assert len(located.candidates) == 1
    np.testing.assert_allclose([located.best.z, located.best.y, located.best.x], MOTOR, atol=0.1)


def test_blob_detector_sees_dz_sign():
    """The stand-in itself: dz is positive when the blob lies above the stack centre (higher channels)."""
    volume = planted_volume()
    centres = np.array([20, 23, 26])
    dets = BlobDetector().predict(make_stacks(volume, centres, STRIDE))
    dz = np.array([d[0, 5] for d in dets])
    np.testing.assert_allclose(centres + dz, MOTOR[0], atol=0.3)
