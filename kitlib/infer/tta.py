"""Test-time augmentation: the 8 dihedral views of the (y, x) plane, each optionally z-reversed, and their inverse maps.

A view is applied to a channel-last stack, ``(H, W, C)`` or ``(B, H, W, C)``: first a left-right flip (if ``flip``),
then ``rot`` counter-clockwise quarter turns (``np.rot90`` on the (y, x) axes), and independently a z-reversal
(``zrev``): the channel order is reversed, so channel k of the view holds the original slice
``z_c - (k - centre) * stride``, and a z offset ``dz`` predicted in the view is ``-dz`` in the original frame. This
needs an odd channel count (the centre channel stays put), which the 5-channel stack has.

Coordinate convention (the one YOLO box centres use): continuous, ``x in [0, W)`` and ``y in [0, H)``, pixel ``i``
covers ``[i, i + 1)`` so its centre is ``i + 0.5``. In that convention a left-right flip is ``x -> W - x`` and a quarter
turn of an ``(H, W)`` image is ``(x, y) -> (y, W - x)``; both are exact, and so is every inverse map below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# (rot, flip) -> name of the dihedral view; flip is applied before the rotation.
_SPATIAL_NAMES = {
    (0, False): "identity",
    (0, True): "flip_lr",
    (2, True): "flip_ud",
    (1, False): "rot90",
    (2, False): "rot180",
    (3, False): "rot270",
    (1, True): "transpose",
    (3, True): "antitranspose",
}


@dataclass(frozen=True)
class View:
    """One TTA view: ``rot`` counter-clockwise quarter turns (0..3) after an optional left-right ``flip``; ``zrev``
    reverses the channel (z) order."""

    rot: int = 0
    flip: bool = False
    zrev: bool = False

    def __post_init__(self) -> None:
        if self.rot not in (0, 1, 2, 3):
            raise ValueError(f"View.rot must be 0..3, got {self.rot!r}")

    @property
    def name(self) -> str:
        spatial = _SPATIAL_NAMES[(self.rot, self.flip)]
        if not self.zrev:
            return spatial
        return "zrev" if spatial == "identity" else f"{spatial}+zrev"

    def __str__(self) -> str:
        return self.name


VIEWS: dict[str, View] = {
    View(rot, flip, zrev).name: View(rot, flip, zrev) for zrev in (False, True) for rot, flip in _SPATIAL_NAMES
}


def parse_views(names: Sequence[str]) -> list[View]:
    """Views by name, in the given order. Unknown or repeated names, or none at all, are an error."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"no TTA view given: name at least one of {list(VIEWS)}")
    unknown = [n for n in names if n not in VIEWS]
    if unknown:
        raise ValueError(f"unknown TTA view(s) {unknown}: valid names are {list(VIEWS)}")
    if len(set(names)) < len(names):
        raise ValueError(f"a TTA view is listed more than once: {names}")
    return [VIEWS[n] for n in names]


def default_view_order() -> list[View]:
    """All 16 views, most useful first: the order in which a time budget sheds them (from the end).

    Views that keep the image axes (flips, rot180) and the z-reversal come first: the tilt axis and the missing-wedge
    streaks keep their orientation, so these views stay closest to the training distribution while still decorrelating
    the detector's errors. Quarter turns and transposes follow, then the z-reversed forms of everything else.
    """
    names = [
        "identity", "flip_lr", "zrev", "flip_ud", "rot180", "rot90", "rot270", "transpose", "antitranspose",
        "flip_lr+zrev", "flip_ud+zrev", "rot180+zrev", "rot90+zrev", "rot270+zrev", "transpose+zrev",
        "antitranspose+zrev",
    ]  # fmt: skip
    return [VIEWS[n] for n in names]


def apply_view(stack: np.ndarray, view: View) -> np.ndarray:
    """The view of a channel-last stack ``(H, W, C)`` or ``(B, H, W, C)``, as a new C-contiguous array."""
    if stack.ndim not in (3, 4):
        raise ValueError(f"expected a (H, W, C) or (B, H, W, C) stack, got shape {stack.shape}")
    out = stack
    if view.flip:
        out = out[..., :, ::-1, :]
    if view.rot:
        out = np.rot90(out, k=view.rot, axes=(-3, -2))
    if view.zrev:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def forward_points(xy_dz: np.ndarray, view: View, shape_hw: tuple[int, int]) -> np.ndarray:
    """Map ``(N, 3)`` points ``[x, y, dz]`` of the original frame (image ``shape_hw``) into the view's frame."""
    x, y, dz = _columns(xy_dz)
    h, w = shape_hw
    if view.flip:
        x = w - x
    for _ in range(view.rot):  # (x, y) -> (y, W - x), and the image becomes (W, H)
        x, y = y, w - x
        h, w = w, h
    return np.stack([x, y, -dz if view.zrev else dz], axis=1)


def invert_points(xy_dz: np.ndarray, view: View, shape_hw: tuple[int, int]) -> np.ndarray:
    """Map ``(N, 3)`` points ``[x, y, dz]`` found in the view back to the original frame; ``shape_hw`` is the
    ORIGINAL image's ``(H, W)``."""
    x, y, dz = _columns(xy_dz)
    h, w = shape_hw
    for i in reversed(range(view.rot)):  # undo turn i, whose input image was (H, W) for even i, (W, H) for odd i
        w_in = w if i % 2 == 0 else h
        x, y = w_in - y, x
    if view.flip:
        x = w - x
    return np.stack([x, y, -dz if view.zrev else dz], axis=1)


def _columns(xy_dz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pts = np.asarray(xy_dz, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"expected (N, 3) points [x, y, dz], got shape {pts.shape}")
    return pts[:, 0], pts[:, 1], pts[:, 2]
