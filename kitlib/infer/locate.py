"""Tomogram -> motor candidates: normalise once, sweep 5-channel stacks through the detector(s) in every TTA view,
map each detection back to a 3D point of the original grid, and fuse the points in 3D; with `verify.enabled`, cut
the verifier's patches around the candidates (and any probe points) from the same grid."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kitlib.config import KitConfig
from kitlib.infer.fusion import Candidate, fuse_points, radius_voxels, spacing_or_assumed
from kitlib.infer.tta import View, apply_view, invert_points
from kitlib.preprocess import model_grid, stack_batches, to_original, to_resampled
from kitlib.verify.patches import cut_patches


class Detector(Protocol):
    """What `locate_motor` needs of a model (kitlib.model.ZDetector is one)."""

    stack_stride: int

    def predict(self, stacks: np.ndarray, conf: float = ..., imgsz: int | None = ...) -> list[np.ndarray]: ...


@dataclass
class Located:
    """Candidates of one tomogram (best first), where the time went, and with `verify.enabled` the verifier's patches
    around the candidates and the probe points (`kitlib.verify.patches.cut_patches`)."""

    candidates: list[Candidate]
    seconds: dict[str, float] = field(default_factory=dict)
    n_stacks: int = 0
    n_views: int = 0
    patches: np.ndarray | None = None
    probe_patches: np.ndarray | None = None

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def centre_slices(depth: int, step: int) -> np.ndarray:
    """Centre slices every `step` slices, placed symmetrically in the volume."""
    step = max(1, int(step))
    start = ((depth - 1) % step) // 2
    return np.arange(start, depth, step)


def detections_to_points(dets: np.ndarray, z_centre: int, view: View, shape_hw: tuple[int, int]) -> np.ndarray:
    """(N, 6) detections `[x, y, w, h, conf, dz]` in a view -> (N, 4) points `[z, y, x, conf]` in voxel indices.

    Box centres are continuous (pixel i covers [i, i+1)), voxel indices are pixel centres: index = coordinate - 0.5.
    """
    xy_dz = invert_points(dets[:, [0, 1, 5]], view, shape_hw)
    return np.stack([z_centre + xy_dz[:, 2], xy_dz[:, 1] - 0.5, xy_dz[:, 0] - 0.5, dets[:, 4]], axis=1)


def locate_motor(
    volume: np.ndarray,
    detectors: Sequence[Detector],
    cfg: KitConfig,
    views: Sequence[View],
    voxel_spacing: float | None = None,
    slice_step: int | None = None,
    probes: np.ndarray | None = None,
) -> Located:
    """Ranked motor candidates of one uint8 (z, y, x) tomogram, in voxels of its original grid.

    `volume` is normalised in place (it is not needed afterwards, and a copy would double peak memory).
    `detectors` is a fold ensemble: their points are pooled before fusion. All must share one stack stride.
    `probes`: (M, 3) more points (original voxels) to cut verifier patches at, e.g. the labelled motors.
    """
    strides = {d.stack_stride for d in detectors}
    if len(strides) != 1:
        raise ValueError(f"detectors disagree on the stack stride: {sorted(strides)}")
    stride = strides.pop()
    icfg, pcfg = cfg.infer, cfg.preprocess
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    grid, factor = model_grid(volume, voxel_spacing, pcfg)
    seconds["normalize"] = time.perf_counter() - t

    t = time.perf_counter()
    centres = centre_slices(grid.shape[0], slice_step or icfg.slice_step)
    shape_hw = grid.shape[1:]
    points = []
    for batch_centres, stacks in stack_batches(grid, centres, stride, pcfg.channels, icfg.batch):
        for view in views:
            viewed = apply_view(stacks, view)
            for detector in detectors:
                for z_c, dets in zip(batch_centres, detector.predict(viewed, conf=icfg.conf, imgsz=icfg.imgsz)):
                    if len(dets):
                        points.append(detections_to_points(dets, int(z_c), view, shape_hw))
            del viewed  # freed before the next view's copy is made
        del stacks  # and before the next batch's stacks
    seconds["model"] = time.perf_counter() - t

    t = time.perf_counter()
    pts = np.concatenate(points) if points else np.empty((0, 4))
    if factor != 1.0 and len(pts):
        pts[:, :3] = to_original(pts[:, :3], volume.shape, grid.shape)
    spacing = spacing_or_assumed(voxel_spacing, pcfg.assumed_spacing)
    radius = radius_voxels(spacing, icfg.fuse_radius_factor)
    n_views = len(views) * len(detectors)
    candidates = fuse_points(pts, radius, n_views=n_views, top_k=icfg.top_k, per_view=icfg.per_view)
    seconds["fusion"] = time.perf_counter() - t
    located = Located(candidates, seconds, n_stacks=len(centres), n_views=n_views)
    if cfg.verify.enabled:
        located.patches = _patches_at(grid, [(c.z, c.y, c.x) for c in candidates], volume.shape, cfg)
        located.probe_patches = _patches_at(grid, [] if probes is None else probes, volume.shape, cfg)
    return located


def _patches_at(grid: np.ndarray, zyx, original_shape: tuple[int, ...], cfg: KitConfig) -> np.ndarray:
    """The verifier's patches of `grid` at points given in voxels of the original tomogram."""
    points = to_resampled(np.asarray(zyx, np.float64).reshape(-1, 3), original_shape, grid.shape)
    return cut_patches(grid, points, cfg.verify)
