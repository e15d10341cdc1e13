"""Submissions: `tomo_id,Motor axis 0,Motor axis 1,Motor axis 2`, one row per expected tomogram, -1s for no motor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from kitlib.data.errors import DataError
from kitlib.data.labels import COORD_COLUMNS

SUBMISSION_COLUMNS = ["tomo_id", *COORD_COLUMNS]
NO_MOTOR = (-1.0, -1.0, -1.0)


def submission_frame(
    predictions: Mapping[str, Sequence[float] | None], order: Sequence[str]
) -> pl.DataFrame:
    """A submission with one row per id in `order`; ids missing from `predictions` (or mapped to None) get -1s."""
    rows = []
    for tomo_id in order:
        zyx = predictions.get(tomo_id)
        rows.append([tomo_id, *(NO_MOTOR if zyx is None else (float(v) for v in zyx))])
    return pl.DataFrame(rows, schema={"tomo_id": pl.String, **{c: pl.Float64 for c in COORD_COLUMNS}}, orient="row")


def read_submission(path: str | Path) -> pl.DataFrame:
    """Read a submission CSV (tomo_id as string, coordinates as floats)."""
    path = Path(path)
    try:
        return pl.read_csv(path, schema_overrides={"tomo_id": pl.String})
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(f"{path}: cannot read submission: {e}") from e


def validate_submission(
    submission: pl.DataFrame, expected_ids: Sequence[str], source: str | Path = "submission"
) -> pl.DataFrame:
    """Check columns, numeric coordinates and that every expected tomo_id appears exactly once; return it typed."""
    missing_cols = [c for c in SUBMISSION_COLUMNS if c not in submission.columns]
    if missing_cols:
        raise DataError(f"{source}: missing columns {missing_cols}; expected {SUBMISSION_COLUMNS}")
    try:
        typed = submission.select(
            pl.col("tomo_id").cast(pl.String), *(pl.col(c).cast(pl.Float64, strict=True) for c in COORD_COLUMNS)
        )
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{source}: coordinates must be numeric: {e}") from e
    nulls = typed.filter(
        pl.any_horizontal(pl.col("tomo_id").is_null(), *(pl.col(c).is_null() | pl.col(c).is_nan() for c in COORD_COLUMNS))
    )
    if nulls.height:
        raise DataError(f"{source}: empty or NaN values in rows for {nulls['tomo_id'].to_list()[:5]}")
    duplicated = typed.filter(pl.col("tomo_id").is_duplicated())["tomo_id"].unique().sort().to_list()
    if duplicated:
        raise DataError(f"{source}: tomo_id listed more than once: {duplicated[:5]}")
    got, want = set(typed["tomo_id"]), set(expected_ids)
    if got != want:
        raise DataError(
            f"{source}: tomo_ids differ from the expected set: missing {sorted(want - got)[:5]}, "
            f"unexpected {sorted(got - want)[:5]}"
        )
    return typed


def write_submission(submission: pl.DataFrame, path: str | Path, expected_ids: Sequence[str]) -> Path:
    """Validate, then write atomically (a half-written submission.csv never exists)."""
    path = Path(path)
    typed = validate_submission(submission, expected_ids, source=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    typed.write_csv(tmp)
    tmp.replace(path)
    return path
