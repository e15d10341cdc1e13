"""`labels_override.csv`: a reviewer's corrections to the labels (written by `make review`'s page), applied on top of
`train_labels.csv` (and of extra sources' labels) wherever labels are read for training or scoring.

One row per decision, coordinates in voxels of the tomogram's own grid (as in train_labels.csv):

- ``add``: a motor at (z, y, x) that the labels miss;
- ``remove``: the labelled motor at (label_z, label_y, label_x) is not a motor;
- ``move``: the labelled motor at (label_z, label_y, label_x) is really at (z, y, x);
- ``none``: no motor at the candidate (z, y, x); the labels already say so, nothing changes (kept as the record).

A tomogram that a reviewer touched is taken to list all its motors afterwards (its stated motor count becomes the
listed one), so its motor-free slices may serve as negatives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord

OVERRIDE_COLUMNS = ["tomo_id", "action", "z", "y", "x", "label_z", "label_y", "label_x"]
ACTIONS = ("add", "remove", "move", "none")
_NEEDS = {"add": ("z",), "remove": ("label_z",), "move": ("z", "label_z"), "none": ()}
_MATCH_VOXELS = 2.0  # a remove / move names a labelled motor within this many voxels of it


@dataclass(frozen=True)
class Override:
    """One reviewer decision; `at` is the new motor (add, move), `label` the labelled one it concerns (remove, move)."""

    tomo_id: str
    action: str
    at: tuple[float, float, float] | None
    label: tuple[float, float, float] | None
    line: int


def read_overrides(path: str | Path) -> list[Override]:
    """The rows of a labels-override CSV, checked; a DataError names the file and line of the first bad one."""
    path = Path(path)
    try:
        df = pl.read_csv(path, infer_schema_length=0)  # all text: empty cells stay distinguishable
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(f"{path}: cannot read the labels override: {e}") from e
    missing = [c for c in OVERRIDE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing} (expected {','.join(OVERRIDE_COLUMNS)}, "
                        f"as `make review`'s page exports)")
    rows = []
    for line, row in enumerate(df.iter_rows(named=True), start=2):
        where = f"{path}: line {line}"
        action = (row["action"] or "").strip()
        if action not in ACTIONS:
            raise DataError(f"{where}: action {action!r} must be one of {', '.join(ACTIONS)}")
        if not (row["tomo_id"] or "").strip():
            raise DataError(f"{where}: empty tomo_id")
        at, label = _point(row, ("z", "y", "x"), where), _point(row, ("label_z", "label_y", "label_x"), where)
        for first in _NEEDS[action]:
            if (at if first == "z" else label) is None:
                raise DataError(f"{where}: a {action!r} row needs {first} and the two coordinates after it")
        rows.append(Override(row["tomo_id"].strip(), action, at, label, line))
    return rows


def apply_overrides(records: list[TomoRecord], overrides: list[Override], path: str | Path = "override") -> list[TomoRecord]:
    """New records with the decisions applied (the inputs are unchanged). A row naming an unknown tomogram, or a
    labelled motor the tomogram does not have, is a DataError naming the file and line."""
    by_id = {r.tomo_id: dataclasses.replace(r, motors=list(r.motors)) for r in records}
    for o in overrides:
        rec = by_id.get(o.tomo_id)
        where = f"{path}: line {o.line} ({o.tomo_id})"
        if rec is None:
            raise DataError(f"{where}: no such tomogram in the labels")
        if o.action == "none":
            continue
        if o.label is not None and o.action in ("remove", "move"):
            rec.motors.pop(_nearest(rec.motors, o.label, where))
        if o.at is not None and o.action in ("add", "move"):
            rec.motors.append(o.at)
        rec.n_motors_stated = len(rec.motors)
    return [by_id[r.tomo_id] for r in records]


def file_sha256(path: str | Path) -> str:
    """The file's content hash, recorded in score.json so a score names the corrections it used."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _nearest(motors: list[tuple[float, float, float]], point: tuple[float, float, float], where: str) -> int:
    """Index of the labelled motor at `point` (within `_MATCH_VOXELS`), or a DataError."""
    dists = [math.dist(m, point) for m in motors]
    if not dists or min(dists) > _MATCH_VOXELS:
        listed = ", ".join(f"({m[0]:g}, {m[1]:g}, {m[2]:g})" for m in motors) or "none"
        raise DataError(f"{where}: no labelled motor at {point} (labelled: {listed})")
    return dists.index(min(dists))


def _point(row: dict, columns: tuple[str, str, str], where: str) -> tuple[float, float, float] | None:
    """The three coordinates as floats, None when all are empty; a DataError when only some are or one is not a
    non-negative number."""
    cells = [(row[c] or "").strip() for c in columns]
    if not any(cells):
        return None
    try:
        values = tuple(float(c) for c in cells)
    except ValueError:
        raise DataError(f"{where}: {'/'.join(columns)} must be numbers, got {cells}") from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise DataError(f"{where}: {'/'.join(columns)} must be voxel indices >= 0, got {cells}")
    return values  # type: ignore[return-value]
