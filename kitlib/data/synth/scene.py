"""Plan one synthetic tomogram: acquisition, imaging, cells, motors and distractors, all drawn from one Generator.

Physical sizes are in Angstrom and converted with the written grid's voxel spacing, so a binned grid shows the same
specimen at a coarser sampling. Motor positions (relative to the volume), motor counts, neighbour distances, shapes
and spacings follow the real label statistics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from kitlib.data.synth.shapes import Ball, Cell, Gold, Motor, Shape, Tube, Vesicle
from kitlib.data.synth.stats import REAL_LABEL_STATS, LabelStats
from kitlib.data.synth.style import STYLES, Range, Style

# Specimen, in Angstrom unless named otherwise.
CELL_RADIUS_A = (1800.0, 3000.0)
CELL_HALF_LENGTH_A = (1500.0, 9000.0)
CELL_FLATTENING = (0.55, 0.95)  # z semi-axis / radius; cells are squashed in the ice
ICE_FILL = 0.42  # a cell's z semi-axis is at most this fraction of the volume's depth
PERIPLASM_A = (200.0, 300.0)
MEMBRANE_SIGMA_A = 18.0
MEMBRANE_AMPLITUDE = (1.3, 1.8)
MOTOR_MS_RING_A = 40.0  # the label sits this far inside the inner membrane
POLAR_MOTOR = 0.6  # fraction of motor cells whose (first) motor sits at a pole
FILAMENT_RADIUS_A = 100.0
PILUS_RADIUS_A = 35.0
RIBOSOME_RADIUS_A = (100.0, 135.0)
RIBOSOME_VOLUME_FRACTION = (0.02, 0.08)
GOLD_RADIUS_A = (45.0, 75.0)
UM2 = 1e8  # A^2

# Imaging: grey = mean - gain * density + noise, noise std shrinking with binning (averaged voxels); the rest of
# the appearance comes from the tomogram's style.
GREY_MEAN = (95.0, 165.0)
GAIN = (28.0, 48.0)
NOISE_BINNING_EXPONENT = 1.0

# The hidden test tomograms are reported larger on average than the train ones (~900 of them, spacing not given);
# their spread is not known, so a size with `test_shape` writes every test tomogram at this mean (z, y, x).
REPORTED_TEST_SHAPE = (400, 1400, 1050)


@dataclass(frozen=True)
class Binning:
    """How a size preset samples the specimen: bin factor, an optional crop (z, y, x) of the binned grid and an
    optional native shape for test tomograms (else drawn like the train ones)."""

    factor: int
    crop: tuple[int, int, int] | None = None
    test_shape: tuple[int, int, int] | None = None

    def shape(self, native: tuple[int, int, int]) -> tuple[int, int, int]:
        binned = tuple(max(1, round(n / self.factor)) for n in native)
        return binned if self.crop is None else tuple(min(b, c) for b, c in zip(binned, self.crop))  # type: ignore


@dataclass(frozen=True)
class Imaging:
    """Per-tomogram exposure: mean grey, gain (grey per density unit), noise std and texture, lighting gradient,
    drift along z, the density's band-pass and blur, and the JPEG quality the slices are written at."""

    mean: float
    gain: float
    noise_std: float
    noise_blur: float  # in-plane correlation length of the noise, voxels
    noise_z_corr: float  # AR(1) coefficient between neighbouring slices
    gradient: tuple[float, float]  # grey change across the full height / width
    shot_noise: float = 0.0  # part of the noise whose std follows sqrt(grey / mean)
    z_drift: float = 0.0  # mean grey change from the first slice to the last
    bandpass: float = 0.0  # fraction of the density's in-plane low-pass (sigma `bandpass_sigma`) removed
    bandpass_sigma: float = 1.0  # voxels
    blur: float = 0.0  # in-plane gaussian blur of the density, voxels (0: none)
    jpeg_quality: int = 90


@dataclass
class Scene:
    """A planned tomogram: written grid, spacing (A/voxel), exposure, density shapes and the labelled motors."""

    shape: tuple[int, int, int]
    spacing: float
    imaging: Imaging
    shapes: list[Shape]
    motors: list[tuple[float, float, float]]
    style: str = "clean"


def plan_scene(
    rng: np.random.Generator,
    binning: Binning,
    n_motors: int,
    stats: LabelStats = REAL_LABEL_STATS,
    test: bool = False,
    styles: tuple[str, ...] = tuple(STYLES),
) -> Scene:
    """Everything about one tomogram except its noise. `n_motors` may not all fit; `Scene.motors` lists those placed.
    A `test` tomogram takes `binning.test_shape` when there is one (its spacing is drawn as a train one's). The
    tomogram's style is drawn from `styles`, each equally likely."""
    style = STYLES[styles[int(rng.integers(len(styles)))]]
    native_shape, native_spacing = draw_acquisition(rng, stats)
    if test and binning.test_shape:
        native_shape = binning.test_shape
    planner = _Planner(rng, binning.shape(native_shape), round(native_spacing * binning.factor, 3), stats, style)
    imaging = draw_imaging(rng, binning.factor, planner.spacing, style)
    if n_motors:
        planner.add_motor_cell(n_motors)
    planner.add_other_cells(int(rng.integers(0, 3)) + (0 if n_motors or rng.random() < 0.1 else 1))
    planner.add_contents()
    return Scene(planner.shape, planner.spacing, imaging, planner.shapes, planner.motors, style.name)


def weighted_index(rng: np.random.Generator, counts) -> int:
    """An index drawn with probability proportional to `counts`."""
    counts = np.asarray(counts, dtype=float)
    return int(rng.choice(len(counts), p=counts / counts.sum()))


def draw_acquisition(rng: np.random.Generator, stats: LabelStats) -> tuple[tuple[int, int, int], float]:
    """A real (shape, voxel spacing) pair, weighted by how many training tomograms have it."""
    z, y, x, spacing, _ = stats.acquisitions[weighted_index(rng, [a[4] for a in stats.acquisitions])]
    return (z, y, x), spacing


def draw_imaging(rng: np.random.Generator, bin_factor: int, spacing: float, style: Style = STYLES["clean"]) -> Imaging:
    """Exposure of one tomogram on a grid of `spacing` A; noise averages down on binned grids."""
    ice = rng.uniform(*style.ice)
    gain = rng.uniform(*GAIN) / np.sqrt(ice)
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(*style.gradient)
    return Imaging(
        mean=rng.uniform(*GREY_MEAN),
        gain=gain,
        noise_std=gain * ice * rng.uniform(*style.noise_per_gain) / bin_factor**NOISE_BINNING_EXPONENT,
        noise_blur=max(0.5, rng.uniform(1.2, 2.0) / bin_factor),
        noise_z_corr=rng.uniform(0.3, 0.6),
        gradient=(strength * np.sin(angle), strength * np.cos(angle)),
        shot_noise=rng.uniform(*style.shot_noise),
        z_drift=rng.uniform(*style.z_drift) * rng.choice([-1.0, 1.0]),
        bandpass=rng.uniform(*style.bandpass),
        bandpass_sigma=rng.uniform(*style.bandpass_a) / spacing,
        blur=rng.uniform(*style.blur_a) / spacing,
        jpeg_quality=int(round(rng.uniform(*style.jpeg_quality))),
    )


def draw_motor_count(rng: np.random.Generator, stats: LabelStats = REAL_LABEL_STATS) -> int:
    """Labelled motors in a tomogram that has at least one."""
    return stats.motors_per_tomogram[weighted_index(rng, [c for _, c in stats.motors_per_tomogram])][0]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


class _Planner:
    """Accumulates the shapes of one tomogram; lengths are converted from A to voxels with `a`."""

    def __init__(
        self, rng: np.random.Generator, shape: tuple[int, int, int], spacing: float, stats: LabelStats, style: Style
    ):
        self.rng, self.shape, self.spacing, self.stats, self.style = rng, shape, spacing, stats, style
        self.dims = np.array(shape, dtype=float)
        self.stretch = rng.uniform(*style.wedge_stretch)
        self.cells: list[Cell] = []
        self.shapes: list[Shape] = []
        self.motors: list[tuple[float, float, float]] = []

    def a(self, angstrom: float) -> float:
        return angstrom / self.spacing

    def uniform_a(self, bounds: Range) -> float:
        return self.a(self.rng.uniform(*bounds))

    def draw_cell(self, centre: np.ndarray, axis: np.ndarray) -> Cell:
        radius = self.uniform_a(CELL_RADIUS_A)
        flattening = min(self.rng.uniform(*CELL_FLATTENING), ICE_FILL * self.dims[0] / radius)
        return Cell(
            centre=centre,
            axis=axis,
            half_length=self.uniform_a(CELL_HALF_LENGTH_A),
            radius=radius,
            flattening=flattening,
            periplasm=self.uniform_a(PERIPLASM_A),
            membrane_sigma=self.a(MEMBRANE_SIGMA_A),
            cytoplasm=self.rng.uniform(0.15, 0.35),
            membrane_amplitude=self.rng.uniform(*MEMBRANE_AMPLITUDE),
        )

    def random_axis(self) -> np.ndarray:
        angle = self.rng.uniform(0, np.pi)
        return np.array([np.sin(angle), np.cos(angle)])

    # -- motors -------------------------------------------------------------------------------------------------
    def draw_motor_position(self) -> np.ndarray:
        """A label position following the real per-axis distribution of motor / shape."""
        rel = [(weighted_index(self.rng, hist) + self.rng.random()) / len(hist) for hist in self.stats.position_hist]
        return np.clip(np.round(np.array(rel) * self.dims), 1, self.dims - 2)

    def add_motor_cell(self, n_motors: int) -> None:
        """A cell whose envelope passes through a drawn label position, with the motors on it."""
        rng = self.rng
        label = self.draw_motor_position()
        cell = self.draw_cell(np.zeros(3), self.random_axis())
        # Direction of the envelope point in the cell's scaled frame: d_w along z, d_a along the axis, d_u across.
        depth = cell.radius * cell.flattening
        # Cells sit inside the ice, at heights that mostly put the motor on their flank (the in-plane side view).
        rim = min(0.9 * depth, self.dims[0] / 2)
        target_z = np.clip(label[0] + rng.normal(0, 0.3 * depth), rim, self.dims[0] - rim)
        d_w = float(np.clip((label[0] - target_z) / depth, -0.85, 0.85))
        in_plane = np.sqrt(1 - d_w**2)
        side = rng.choice([-1.0, 1.0])
        if rng.random() < POLAR_MOTOR:
            psi = rng.uniform(-1.2, 1.2)
            d_a, d_u, t = side * in_plane * np.cos(psi), in_plane * np.sin(psi), side * cell.half_length
        else:
            d_a, d_u, t = 0.0, side * in_plane, rng.uniform(-0.8, 0.8) * cell.half_length
        a3, u3 = np.array([0.0, *cell.axis]), np.array([0.0, -cell.axis[1], cell.axis[0]])
        offset = t * a3 + cell.radius * (d_a * a3 + d_u * u3) + np.array([depth * d_w, 0, 0])
        normal = _unit(d_a * a3 + d_u * u3 + np.array([d_w / cell.flattening, 0, 0]))
        envelope = label + normal * self.motor_inset(cell)
        cell = dataclasses.replace(cell, centre=envelope - offset)
        self.cells.append(cell)
        self.shapes.append(cell)
        self.place_motor(cell, label, normal)
        for _ in range(n_motors - 1):
            self.add_neighbour_motor(cell)

    def motor_inset(self, cell: Cell) -> float:
        return cell.periplasm + self.a(MOTOR_MS_RING_A)

    def place_motor(self, cell: Cell, label: np.ndarray, normal: np.ndarray) -> None:
        rng = self.rng
        self.shapes.append(
            Motor(
                centre=label,
                normal=normal,
                spacing=self.spacing,
                scale=rng.uniform(*self.style.motor_scale),
                periplasm_a=cell.periplasm * self.spacing,
                amplitude=rng.uniform(1.4, 1.8),
                stretch=self.stretch,
                core=rng.uniform(*self.style.motor_core),
            )
        )
        self.motors.append(tuple(float(v) for v in label))  # type: ignore[arg-type]
        if rng.random() < 0.85:  # some motors have lost their filament or it leaves the section at once
            self.add_flagellum(label + normal * self.motor_inset(cell), normal)

    def add_flagellum(self, start: np.ndarray, normal: np.ndarray) -> None:
        """A filament leaving the motor along its normal, then bending towards the plane of the ice."""
        rng = self.rng
        bend = normal + rng.normal(0, rng.uniform(*self.style.filament_bend), 3)
        bend[0] *= 0.3
        bend = _unit(bend)
        if bend @ normal < 0.3:
            bend = normal
        knee = start + normal * self.uniform_a((150.0, 600.0))
        end = knee + bend * self.uniform_a(self.style.filament_length_a)
        self.shapes.append(self.filament(np.stack([start, knee, end]), FILAMENT_RADIUS_A, rng.uniform(0.6, 0.9)))

    def filament(self, points: np.ndarray, radius_a: float, amplitude: float) -> Tube:
        return Tube(points, self.a(radius_a), amplitude, edge=max(self.a(10.0), 0.35), stretch=self.stretch)

    def surface_point(self, cell: Cell, near: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project a point onto the cell's outer membrane; returns (point, outward normal)."""
        v = near - cell.centre
        t = np.clip(v[1:] @ cell.axis, -cell.half_length, cell.half_length)
        radial = v - np.array([0.0, *(t * cell.axis)])
        scaled = _unit(radial / np.array([cell.flattening, 1.0, 1.0]))
        point = cell.centre + np.array([0.0, *(t * cell.axis)]) + cell.radius * scaled * np.array([cell.flattening, 1, 1])
        return point, _unit(scaled / np.array([cell.flattening, 1.0, 1.0]))

    def add_neighbour_motor(self, cell: Cell, attempts: int = 30) -> None:
        """Another motor on the same cell, its distance to the last motor drawn from the real neighbour distances."""
        rng = self.rng
        quantiles = np.linspace(0, 1, len(self.stats.neighbour_deciles_a))
        inset = self.motor_inset(cell)
        last = np.array(self.motors[-1])
        for _ in range(attempts):
            step = self.a(float(np.interp(rng.random(), quantiles, self.stats.neighbour_deciles_a)))
            near = last + _unit(rng.normal(size=3)) * step
            envelope, normal = self.surface_point(cell, near)
            label = np.round(envelope - normal * inset)
            inside = np.all(label >= 1) and np.all(label <= self.dims - 2)
            gaps = np.linalg.norm(np.array(self.motors) - label, axis=1) * self.spacing
            if inside and gaps.min() >= self.stats.neighbour_deciles_a[0]:
                self.place_motor(cell, label, normal)
                return

    # -- cells and contents -------------------------------------------------------------------------------------
    def add_other_cells(self, n: int, attempts: int = 20) -> None:
        """Cells without motors, not overlapping the others."""
        for _ in range(n):
            for _ in range(attempts):
                centre = np.array(
                    [
                        self.dims[0] / 2 + self.rng.normal(0, 0.05 * self.dims[0]),
                        *(self.rng.uniform(-0.1, 1.1, 2) * self.dims[1:]),
                    ]
                )
                cell = self.draw_cell(centre, self.random_axis())
                if all(self.cells_apart(cell, other) for other in self.cells):
                    self.cells.append(cell)
                    self.shapes.append(cell)
                    break

    def cells_apart(self, a: Cell, b: Cell) -> bool:
        ta, tb = np.linspace(-1, 1, 15)[:, None], np.linspace(-1, 1, 15)[:, None]
        pa = a.centre[1:] + ta * a.half_length * a.axis
        pb = b.centre[1:] + tb * b.half_length * b.axis
        gap = np.linalg.norm(pa[:, None] - pb[None], axis=-1).min()
        return gap > a.radius + b.radius + self.a(300.0)

    def inside_any_cell(self, points: np.ndarray, margin: float) -> np.ndarray:
        inside = np.zeros(len(points), dtype=bool)
        for cell in self.cells:
            inside |= cell.rho(points) < cell.radius + margin
        return inside

    def random_points(self, n: int, z_range: tuple[float, float] = (0.1, 0.9)) -> np.ndarray:
        rel = self.rng.uniform([z_range[0], 0, 0], [z_range[1], 1, 1], size=(n, 3))
        return rel * self.dims

    def add_contents(self) -> None:
        for cell in self.cells:
            self.add_ribosomes(cell)
            self.add_membrane_complexes(cell)
        self.add_vesicles()
        self.add_ice()
        self.add_gold()
        self.add_loose_filaments()

    def add_ribosomes(self, cell: Cell) -> None:
        """Dense particles filling the cytoplasm (the part of the cell inside the volume)."""
        rng = self.rng
        radius = self.uniform_a(RIBOSOME_RADIUS_A)
        lo, hi = np.maximum(cell.lo, 0), np.minimum(cell.hi, self.dims)
        if np.any(hi <= lo):
            return
        box_volume = float(np.prod(hi - lo))
        per_voxel = rng.uniform(*RIBOSOME_VOLUME_FRACTION) / (4 / 3 * np.pi * radius**3)
        candidates = rng.uniform(lo, hi, size=(int(per_voxel * box_volume) + 8, 3))
        inside = candidates[cell.rho(candidates) < cell.inner_radius - radius]
        n = rng.poisson(per_voxel * box_volume * len(inside) / len(candidates))
        edge = max(self.a(15.0), 0.35)
        for centre, amplitude in zip(inside[:n], rng.uniform(0.3, 0.7, n)):
            self.shapes.append(Ball(centre, radius * rng.uniform(0.85, 1.15), amplitude, edge, self.stretch))

    def add_membrane_complexes(self, cell: Cell) -> None:
        """Motor-sized-or-smaller blobs on the inside of the inner membrane: hard negatives for a detector."""
        rng = self.rng
        edge = max(self.a(15.0), 0.35)
        for _ in range(rng.poisson(8)):
            near = cell.centre + np.array([rng.normal(0, cell.radius * 0.3), *rng.normal(0, cell.half_length, 2)])
            envelope, normal = self.surface_point(cell, near)
            radius = self.uniform_a((80.0, 150.0))
            centre = envelope - normal * (cell.periplasm + radius + self.a(20.0))
            self.shapes.append(Ball(centre, radius, rng.uniform(0.4, 0.8), edge, self.stretch))

    def add_vesicles(self) -> None:
        rng = self.rng
        for centre in self.random_points(rng.poisson(1.5), (0.3, 0.7)):
            radius = self.uniform_a((250.0, 900.0))
            if not self.inside_any_cell(centre[None], radius)[0]:
                self.shapes.append(
                    Vesicle(centre, radius, rng.uniform(*MEMBRANE_AMPLITUDE), self.a(MEMBRANE_SIGMA_A), self.stretch)
                )

    def add_ice(self) -> None:
        """Ice contamination near the top or bottom of the slab: lumpy clusters of large soft dark blobs."""
        rng = self.rng
        for _ in range(rng.poisson(0.8)):
            z = rng.choice([rng.uniform(0.05, 0.3), rng.uniform(0.7, 0.95)])
            centre, size = np.array([z, *rng.random(2)]) * self.dims, self.uniform_a((500.0, 2000.0))
            amplitude = rng.uniform(0.3, 0.9)
            for _ in range(1 + rng.poisson(2.0)):
                lump = centre + rng.normal(0, 0.6 * size, 3) * np.array([0.3, 1, 1])
                radius = size * rng.uniform(0.3, 1.0)
                self.shapes.append(Ball(lump, radius, amplitude * rng.uniform(0.6, 1.0), self.a(100.0) + 0.5, 1.0))

    def add_gold(self) -> None:
        """Gold fiducials, often in small clusters."""
        rng = self.rng
        area_um2 = self.dims[1] * self.dims[2] * self.spacing**2 / UM2
        for seed_point in self.random_points(rng.poisson(rng.uniform(*self.style.gold_per_um2) * area_um2 / 2)):
            for _ in range(1 + rng.poisson(1.0)):
                centre = seed_point + rng.normal(0, self.a(400.0), 3) * np.array([0.3, 1, 1])
                self.shapes.append(Gold(centre, self.uniform_a(GOLD_RADIUS_A), rng.uniform(5.0, 8.0), self.stretch))

    def add_loose_filaments(self) -> None:
        """Detached flagella and thinner pili lying in the ice: filaments without a motor."""
        rng = self.rng
        for radius_a, amplitude, rate in ((FILAMENT_RADIUS_A, (0.6, 0.9), 0.7), (PILUS_RADIUS_A, (0.5, 0.8), 0.5)):
            for start in self.random_points(rng.poisson(rate), (0.3, 0.7)):
                direction = _unit(np.array([rng.normal(0, 0.05), *rng.normal(size=2)]))
                points = [start]
                for _ in range(2):
                    direction = _unit(direction + rng.normal(0, 0.25, 3) * np.array([0.2, 1, 1]))
                    points.append(points[-1] + direction * self.uniform_a((1500.0, 5000.0)))
                self.shapes.append(self.filament(np.stack(points), radius_a, rng.uniform(*amplitude)))
