"""Density primitives of a synthetic tomogram, in voxels of the written grid (z, y, x), dense = positive.

Each shape has a bounding box and a vectorised `density(z, y, x)` over open coordinate grids (shapes (S,1,1),
(1,H,1), (1,1,W)), so a slab only evaluates the shapes that reach it and only inside their boxes. Compact shapes
take a `stretch` > 1 that elongates them along z, as the missing wedge of a tilt series does. Thin structures are
blurred by the voxel footprint so they fade (rather than alias) on binned grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VOXEL_BLUR = 0.45  # std (voxels) of the voxel footprint
LUT_STEPS = 16  # radial lookup-table samples per voxel


def soft_inside(d: np.ndarray, radius: float, edge: float) -> np.ndarray:
    """1 well inside `radius`, 0 well outside, with a logistic edge `edge` wide."""
    return 0.5 - 0.5 * np.tanh((d - radius) / (2.0 * edge))


def thin_layer(d: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    """A gaussian layer at `centre`, widened by the voxel footprint with its integral kept (so it fades when binned)."""
    blurred = float(np.hypot(sigma, VOXEL_BLUR))
    return (sigma / blurred) * np.exp(-0.5 * ((d - centre) / blurred) ** 2)


def membrane(d: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    """A lipid bilayer seen through the microscope's contrast transfer: dark core with faint bright flanks."""
    return thin_layer(d, centre, sigma) - 0.25 * thin_layer(d, centre, 2.5 * sigma)


def _stretched_offsets(z, y, x, centre, stretch: float):
    return (z - centre[0]) / stretch, y - centre[1], x - centre[2]


@dataclass
class Shape:
    """Axis-aligned bounding box [lo, hi] in voxels; subclasses add `density`."""

    lo: np.ndarray = field(init=False, repr=False)
    hi: np.ndarray = field(init=False, repr=False)

    def box(self, z_lo: float, z_hi: float) -> tuple[np.ndarray, np.ndarray]:
        """The box to evaluate for the slab z_lo..z_hi (a shape may narrow it)."""
        return self.lo, self.hi

    def density(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _set_box(self, centre: np.ndarray, half: np.ndarray) -> None:
        self.lo, self.hi = centre - half, centre + half


@dataclass
class Ball(Shape):
    """A soft solid ball: ribosome, membrane complex, ice contamination."""

    centre: np.ndarray
    radius: float
    amplitude: float
    edge: float
    stretch: float

    def __post_init__(self) -> None:
        half = self.radius + 4 * self.edge
        self._set_box(self.centre, np.array([half * self.stretch, half, half]))

    def density(self, z, y, x):
        dz, dy, dx = _stretched_offsets(z, y, x, self.centre, self.stretch)
        return self.amplitude * soft_inside(np.sqrt(dz * dz + dy * dy + dx * dx), self.radius, self.edge)


@dataclass
class Vesicle(Shape):
    """A hollow membrane sphere."""

    centre: np.ndarray
    radius: float
    amplitude: float
    sigma: float
    stretch: float

    def __post_init__(self) -> None:
        half = self.radius + 6 * self.sigma + 2
        self._set_box(self.centre, np.array([half * self.stretch, half, half]))

    def density(self, z, y, x):
        dz, dy, dx = _stretched_offsets(z, y, x, self.centre, self.stretch)
        d = np.sqrt(dz * dz + dy * dy + dx * dx)
        # The missing wedge hides membranes whose normal points along z.
        visibility = 1.0 - (dz * dz) / (d * d + 1e-6)
        return self.amplitude * visibility * membrane(d, self.radius, self.sigma)


@dataclass
class Gold(Shape):
    """A gold fiducial: a very dense bead with a bright halo and X-shaped streaks in the tilt (x-z) plane."""

    centre: np.ndarray
    radius: float
    amplitude: float
    stretch: float
    streak_angle: float = np.deg2rad(60.0)  # the maximum tilt, measured from z

    def __post_init__(self) -> None:
        self.streak_length = 10.0 * self.radius
        half = self.streak_length + 2
        self._set_box(self.centre, np.array([half, 3 * self.radius + 2, half]))

    def density(self, z, y, x):
        dz, dy, dx = _stretched_offsets(z, y, x, self.centre, self.stretch)
        d = np.sqrt(dz * dz + dy * dy + dx * dx)
        core = soft_inside(d, self.radius, 0.15 * self.radius + 0.4)
        halo = thin_layer(d, 1.8 * self.radius, 0.5 * self.radius + 0.5)
        rz, ry, rx = z - self.centre[0], y - self.centre[1], x - self.centre[2]
        streaks = 0.0
        for sign in (-1.0, 1.0):
            u = np.array([np.cos(self.streak_angle), 0.0, sign * np.sin(self.streak_angle)])
            along = rz * u[0] + rx * u[2]
            across2 = rz * rz + ry * ry + rx * rx - along * along
            fade = np.exp(-np.abs(along) / (0.4 * self.streak_length))
            streaks = streaks + fade * np.exp(-across2 / (2 * (0.6 * self.radius + 0.5) ** 2))
        return self.amplitude * (core - 0.12 * halo + 0.06 * streaks)


@dataclass
class Tube(Shape):
    """A soft cylinder along a polyline: flagellar filament, pilus."""

    points: np.ndarray  # (k, 3)
    radius: float
    amplitude: float
    edge: float
    stretch: float

    def __post_init__(self) -> None:
        margin = self.radius + 4 * self.edge
        margins = np.array([margin * self.stretch, margin, margin])
        self.lo, self.hi = self.points.min(0) - margins, self.points.max(0) + margins

    def density(self, z, y, x):
        s = np.array([self.stretch, 1.0, 1.0])
        pts = self.points / s
        pz, py, px = z / self.stretch, y, x
        best = None
        for a, b in zip(pts[:-1], pts[1:]):
            ab = b - a
            t = ((pz - a[0]) * ab[0] + (py - a[1]) * ab[1] + (px - a[2]) * ab[2]) / float(ab @ ab)
            t = np.clip(t, 0.0, 1.0)
            d2 = (pz - a[0] - t * ab[0]) ** 2 + (py - a[1] - t * ab[1]) ** 2 + (px - a[2] - t * ab[2]) ** 2
            best = d2 if best is None else np.minimum(best, d2)
        return self.amplitude * soft_inside(np.sqrt(best), self.radius, self.edge)


@dataclass
class Motor(Shape):
    """A flagellar motor: a dense bell (C-ring, export apparatus, MS-ring) under the inner membrane, a rod through the
    periplasm and L/P rings in the outer membrane. `centre` is the labelled point; `normal` points out of the cell.
    Geometry is in Angstrom, so the motor keeps its physical size on every grid."""

    centre: np.ndarray
    normal: np.ndarray
    spacing: float  # A per voxel
    scale: float
    periplasm_a: float  # label-plane to outer membrane distance minus the MS-ring offset
    amplitude: float
    stretch: float
    core: float = 0.85  # density of the bell's core: 0 shows a hollow ring

    def __post_init__(self) -> None:
        self.edge_a = float(np.hypot(12.0, VOXEL_BLUR * self.spacing))
        self.top_a = 40.0 * self.scale + self.periplasm_a  # the outer membrane, along the normal
        half = (max(280.0 * self.scale, self.top_a + 40.0 * self.scale) + 3 * self.edge_a) / self.spacing
        self._set_box(self.centre, np.array([half * self.stretch, half, half]))

    def density(self, z, y, x):
        sc, e = self.scale, self.edge_a
        dz, dy, dx = _stretched_offsets(z, y, x, self.centre, self.stretch)
        dz, dy, dx = dz * self.spacing, dy * self.spacing, dx * self.spacing
        n = self.normal
        s = dz * n[0] + dy * n[1] + dx * n[2]
        r = np.sqrt(np.maximum(dz * dz + dy * dy + dx * dx - s * s, 0.0))
        c_ring = soft_inside(np.hypot(r - 210 * sc, s + 120 * sc), 55 * sc, e)
        wall = 0.9 * soft_inside(_segment_distance(s, r, (-120 * sc, 210 * sc), (40 * sc, 120 * sc)), 30 * sc, e)
        core = self.core * soft_inside(np.hypot(r / (140 * sc), (s + 80 * sc) / (110 * sc)), 1.0, e / (120 * sc))
        ms_ring = soft_inside(np.maximum(np.abs(s - 40 * sc) - 35 * sc, r - 130 * sc), 0.0, e)
        rod = soft_inside(np.maximum(r - 35 * sc, np.maximum(40 * sc - s, s - self.top_a)), 0.0, e)
        lp_ring = soft_inside(np.maximum(np.abs(s - self.top_a + 30 * sc) - 35 * sc, r - 100 * sc), 0.0, e)
        parts = np.maximum(np.maximum(np.maximum(c_ring, wall), np.maximum(core, ms_ring)), np.maximum(rod, lp_ring))
        return self.amplitude * parts


def _segment_distance(s: np.ndarray, r: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance in the (s, r) half-plane from points to the segment a-b."""
    ab = np.array(b) - np.array(a)
    t = np.clip(((s - a[0]) * ab[0] + (r - a[1]) * ab[1]) / float(ab @ ab), 0.0, 1.0)
    return np.hypot(s - a[0] - t * ab[0], r - a[1] - t * ab[1])


@dataclass
class Cell(Shape):
    """A rod-shaped bacterium lying flat in the ice: a capsule (flattened along z) with outer and inner membranes, a
    faint peptidoglycan layer and cytoplasm denser than the ice. Its axis is in the y-x plane."""

    centre: np.ndarray
    axis: np.ndarray  # (y, x) unit vector
    half_length: float  # of the cylinder, voxels
    radius: float  # outer membrane, voxels
    flattening: float  # z semi-axis / radius
    periplasm: float  # outer to inner membrane, voxels
    membrane_sigma: float  # voxels
    cytoplasm: float  # density
    membrane_amplitude: float

    def __post_init__(self) -> None:
        self.margin = 12 * float(np.hypot(self.membrane_sigma, VOXEL_BLUR)) + 2
        reach = self.radius + self.margin
        ends = self.centre[1:] + np.outer([-self.half_length, self.half_length], self.axis)
        self.lo = np.array([self.centre[0] - reach * self.flattening, *(ends.min(0) - reach)])
        self.hi = np.array([self.centre[0] + reach * self.flattening, *(ends.max(0) + reach)])
        rho = np.arange(int(np.ceil(reach * LUT_STEPS)) + 2, dtype=np.float32) / LUT_STEPS
        inner = self.radius - self.periplasm
        self.cytoplasm_lut = (self.cytoplasm * soft_inside(rho, inner, 0.5)).astype(np.float32)
        self.membrane_lut = (
            self.membrane_amplitude
            * (
                membrane(rho, self.radius, self.membrane_sigma)
                + membrane(rho, inner, self.membrane_sigma)
                + 0.3 * thin_layer(rho, self.radius - 0.35 * self.periplasm, self.membrane_sigma)
            )
        ).astype(np.float32)

    @property
    def inner_radius(self) -> float:
        return self.radius - self.periplasm

    def box(self, z_lo, z_hi):
        # A slab above or below the cell's equator only meets a narrower footprint.
        nearest = float(np.clip(self.centre[0], z_lo, z_hi))
        reach = self.radius + self.margin
        footprint = np.sqrt(max(reach**2 - ((nearest - self.centre[0]) / self.flattening) ** 2, 0.0))
        ends = self.centre[1:] + np.outer([-self.half_length, self.half_length], self.axis)
        return (
            np.array([self.lo[0], *(ends.min(0) - footprint)]),
            np.array([self.hi[0], *(ends.max(0) + footprint)]),
        )

    def plane_distance_sq(self, y, x):
        """Squared in-plane distance to the cell's axis segment."""
        vy, vx = y - self.centre[1], x - self.centre[2]
        t = np.clip(vy * self.axis[0] + vx * self.axis[1], -self.half_length, self.half_length)
        return (vy - t * self.axis[0]) ** 2 + (vx - t * self.axis[1]) ** 2

    def rho(self, points: np.ndarray) -> np.ndarray:
        """Radial coordinate of points (n, 3): `radius` on the outer membrane, z scaled by the flattening."""
        d2 = self.plane_distance_sq(points[:, 1], points[:, 2])
        return np.sqrt(d2 + ((points[:, 0] - self.centre[0]) / self.flattening) ** 2)

    def density(self, z, y, x):
        d2 = self.plane_distance_sq(y, x).astype(np.float32)
        dz = (z - self.centre[0]).astype(np.float32)
        rho = np.sqrt(d2 + (dz / self.flattening) ** 2)
        idx = (rho * LUT_STEPS).astype(np.int32)
        # The missing wedge hides membranes whose normal points along z (the cell's top and bottom).
        gz = (dz / self.flattening**2) ** 2
        visibility = d2 / (d2 + gz + 1e-6)
        visibility *= visibility
        return np.take(self.cytoplasm_lut, idx, mode="clip") + visibility * np.take(self.membrane_lut, idx, mode="clip")
