"""The few statistics of the real train_labels.csv that the generator draws from.

They are embedded as `REAL_LABEL_STATS` so the generator runs where the file is absent (a Kaggle kernel);
`label_stats` recomputes them from label records, and a test checks that the two still agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from kitlib.data.labels import TomoRecord

POSITION_BINS = 10


@dataclass(frozen=True)
class LabelStats:
    """Acquisitions, motor counts and motor positions of a label set."""

    acquisitions: tuple[tuple[int, int, int, float, int], ...]  # (z, y, x, voxel spacing, tomograms), most common first
    n_tomograms: int
    n_motor_free: int
    motors_per_tomogram: tuple[tuple[int, int], ...]  # (labelled motors, tomograms) over tomograms with a motor
    position_hist: tuple[tuple[int, ...], ...]  # per axis z, y, x: motor / shape counted in POSITION_BINS bins
    neighbour_deciles_a: tuple[float, ...]  # deciles (0..100 %) of the nearest-motor distance in A, multi-motor tomograms

    @property
    def motor_free_fraction(self) -> float:
        return self.n_motor_free / self.n_tomograms


def label_stats(records: list[TomoRecord]) -> LabelStats:
    """Compute `LabelStats` from label records (as `load_labels` returns them)."""
    acquisitions = Counter((*r.shape, r.voxel_spacing) for r in records)
    with_motor = [r for r in records if r.motors]
    counts = Counter(len(r.motors) for r in with_motor)
    relative = np.array([np.divide(m, r.shape) for r in with_motor for m in r.motors])
    hists = tuple(
        tuple(int(c) for c in np.histogram(relative[:, axis], bins=POSITION_BINS, range=(0.0, 1.0))[0])
        for axis in range(3)
    )
    return LabelStats(
        acquisitions=tuple((*key, n) for key, n in sorted(acquisitions.items(), key=lambda kv: (-kv[1], kv[0]))),
        n_tomograms=len(records),
        n_motor_free=len(records) - len(with_motor),
        motors_per_tomogram=tuple(sorted(counts.items())),
        position_hist=hists,
        neighbour_deciles_a=tuple(
            round(float(q), 1) for q in np.percentile(neighbour_distances_a(with_motor), np.arange(0, 101, 10))
        ),
    )


def neighbour_distances_a(records: list[TomoRecord]) -> np.ndarray:
    """Distance in A from each motor to its nearest other motor, over tomograms with two or more."""
    out = []
    for r in records:
        if len(r.motors) < 2:
            continue
        p = np.asarray(r.motors) * r.voxel_spacing
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        out.extend(d.min(axis=1))
    return np.asarray(out)


# label_stats(load_labels("../shared/reference/byu_train_labels.csv")), checked by tests/test_synth.py.
REAL_LABEL_STATS = LabelStats(
    acquisitions=(
        (300, 960, 928, 13.1, 145), (300, 960, 928, 15.6, 80), (300, 959, 928, 15.6, 70), (300, 960, 928, 16.8, 67),
        (800, 928, 960, 13.1, 59), (500, 924, 956, 19.7, 48), (300, 928, 928, 13.1, 24), (500, 928, 960, 13.1, 21),
        (800, 928, 960, 16.1, 21), (300, 928, 928, 15.6, 19), (500, 1024, 1440, 13.3, 18), (500, 924, 956, 16.1, 16),
        (300, 928, 928, 16.8, 12), (800, 927, 959, 13.1, 10), (800, 928, 928, 19.3, 8), (300, 960, 928, 19.2, 7),
        (500, 960, 928, 16.8, 5), (800, 928, 928, 13.1, 3), (500, 1912, 1847, 6.5, 2), (300, 924, 956, 19.7, 1),
        (300, 928, 928, 13.2, 1), (300, 956, 924, 16.1, 1), (300, 960, 928, 16.1, 1), (400, 960, 928, 15.6, 1),
        (494, 1912, 1847, 6.5, 1), (500, 927, 959, 13.1, 1), (500, 928, 928, 16.8, 1), (500, 928, 928, 19.3, 1),
        (600, 928, 928, 19.3, 1), (600, 928, 960, 16.1, 1), (600, 960, 928, 15.6, 1), (800, 928, 928, 13.2, 1),
    ),
    n_tomograms=648,
    n_motor_free=286,
    motors_per_tomogram=((1, 317), (2, 26), (3, 6), (4, 9), (6, 3), (10, 1)),
    position_hist=(
        (9, 18, 32, 81, 137, 98, 36, 20, 18, 2),
        (6, 34, 46, 64, 63, 76, 66, 53, 37, 6),
        (11, 38, 34, 63, 56, 56, 73, 63, 39, 18),
    ),
    neighbour_deciles_a=(431.6, 484.6, 516.0, 557.5, 628.3, 699.9, 943.4, 2120.3, 2980.7, 5955.2, 11998.3),
)
