"""`train_labels.csv`: exact columns, one `TomoRecord` per tomogram."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from kitlib.data.errors import DataError

LABEL_COLUMNS = [
    "row_id",
    "tomo_id",
    "Motor axis 0",
    "Motor axis 1",
    "Motor axis 2",
    "Array shape (axis 0)",
    "Array shape (axis 1)",
    "Array shape (axis 2)",
    "Voxel spacing",
    "Number of motors",
]
COORD_COLUMNS = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]
SHAPE_COLUMNS = ["Array shape (axis 0)", "Array shape (axis 1)", "Array shape (axis 2)"]


@dataclass
class TomoRecord:
    """One tomogram's labels. `motors` lists (z, y, x) voxels; empty when the tomogram has none.

    Tomograms of an extra training source (`kitlib.data.sources`) also carry where their slices are (`folder`), the
    source's name and its trust: `z_window` (positive stacks within +-z_window slices of a motor; None: the export's)
    and `negatives` (whether its motor-free slices may serve as negatives).
    """

    tomo_id: str
    shape: tuple[int, int, int]
    voxel_spacing: float
    motors: list[tuple[float, float, float]] = field(default_factory=list)
    n_motors_stated: int = 0
    folder: Path | None = None  # None: the competition's train split
    source: str = ""  # "": the competition's own data
    z_window: int | None = None
    negatives: bool = True

    @property
    def has_motor(self) -> bool:
        return bool(self.motors)


def read_labels_frame(path: str | Path) -> pl.DataFrame:
    """Read train_labels.csv as a polars frame, checking that the competition's columns are all there."""
    path = Path(path)
    try:
        df = pl.read_csv(path)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(f"{path}: cannot read labels: {e}") from e
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing label columns {missing}; found {df.columns}")
    return df


def load_labels(path: str | Path) -> list[TomoRecord]:
    """One `TomoRecord` per tomogram, in first-appearance order. A row with any -1 coordinate means no motor."""
    df = read_labels_frame(path)
    records: dict[str, TomoRecord] = {}
    for line, row in enumerate(df.iter_rows(named=True), start=2):  # line 1 is the header
        tomo_id = str(row["tomo_id"])
        where = f"{path}: line {line} ({tomo_id})"
        rec = records.get(tomo_id)
        if rec is None:
            rec = records[tomo_id] = TomoRecord(
                tomo_id=tomo_id,
                shape=tuple(_number(row, c, int, where, positive=True) for c in SHAPE_COLUMNS),  # type: ignore[arg-type]
                voxel_spacing=_number(row, "Voxel spacing", float, where, positive=True),
                n_motors_stated=_number(row, "Number of motors", int, where),
            )
        coords = tuple(_number(row, c, float, where) for c in COORD_COLUMNS)
        if all(c >= 0 for c in coords):
            rec.motors.append(coords)  # type: ignore[arg-type]
    return list(records.values())


def _number(row: dict, column: str, kind: type, where: str, positive: bool = False):
    """`row[column]` as `kind`, or a DataError naming the file, line and column."""
    value = row[column]
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {column} {value!r} is not a number") from None
    if positive and not number > 0:
        raise DataError(f"{where}: {column} must be positive, got {value!r}")
    return number


def records_to_frame(records: list[TomoRecord]) -> pl.DataFrame:
    """Inverse of `load_labels`: the competition's train_labels.csv layout (one row per motor, -1 row when none)."""
    rows = []
    for rec in records:
        for z, y, x in rec.motors or [(-1.0, -1.0, -1.0)]:
            rows.append([rec.tomo_id, z, y, x, *rec.shape, rec.voxel_spacing, rec.n_motors_stated])
    df = pl.DataFrame(rows, schema=LABEL_COLUMNS[1:], orient="row")
    return df.with_row_index("row_id").with_columns(pl.col("row_id").cast(pl.Int64))


def solution_frame(records: list[TomoRecord]) -> pl.DataFrame:
    """The metric's solution frame: tomo_id, Motor axis 0-2, Voxel spacing; one row per motor (-1 row when none)."""
    return records_to_frame(records).select(["tomo_id", *COORD_COLUMNS, "Voxel spacing"])
