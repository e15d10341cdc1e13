"""Group k-fold by tomogram, stratified by has-motor and voxel spacing, kept in one CSV that every tool reads.

Tomograms are ordered by (has motor, voxel spacing to 0.1 Å, seeded hash of tomo_id) and dealt round-robin to the
folds. Any contiguous run of that order lands in the folds with counts differing by at most one: each has-motor ×
spacing stratum, the motor-free set, and the whole. Strata smaller than `n_folds` (rare spacings) need no merging:
they are dealt on from where the previous stratum stopped, so their tomograms still go to different folds, and
neighbouring rare spacings sit side by side in the order, as if merged.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from pathlib import Path

import polars as pl

from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord

log = logging.getLogger(__name__)

FOLD_COLUMNS = ["tomo_id", "fold"]
FOLDS_FILENAME = "folds.csv"
GENERATED_DIR = Path("runs") / "folds"
_SHOWN_IDS = 5


def _shuffle_key(seed: int, tomo_id: str) -> bytes:
    """A seeded pseudo-random key of a tomogram, independent of the order the records come in."""
    return hashlib.blake2b(f"{seed}:{tomo_id}".encode(), digest_size=8).digest()


def make_folds(records: list[TomoRecord], n_folds: int = 5, seed: int = 0) -> pl.DataFrame:
    """tomo_id -> fold (0..n_folds-1), one row per tomogram sorted by tomo_id; deterministic for a seed."""
    ids = [r.tomo_id for r in records]
    repeated = sorted(t for t, n in Counter(ids).items() if n > 1)
    if repeated:
        raise ValueError(f"tomo_ids repeated in the records: {repeated[:_SHOWN_IDS]}")
    if not 2 <= n_folds <= len(records):
        raise ValueError(f"n_folds must be between 2 and the number of tomograms ({len(records)}), got {n_folds}")
    order = sorted(records, key=lambda r: (r.has_motor, round(r.voxel_spacing, 1), _shuffle_key(seed, r.tomo_id)))
    return pl.DataFrame(
        {"tomo_id": [r.tomo_id for r in order], "fold": [i % n_folds for i in range(len(order))]},
        schema={"tomo_id": pl.String, "fold": pl.Int64},
    ).sort("tomo_id")


def write_folds(df: pl.DataFrame, path: str | Path) -> Path:
    """Write the tomo_id, fold columns sorted by tomo_id (atomically: readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.select(FOLD_COLUMNS).sort("tomo_id").write_csv(tmp)
    tmp.replace(path)
    return path


def read_folds(path: str | Path) -> dict[str, int]:
    """tomo_id -> fold from a folds CSV; DataError naming the path on an unreadable or malformed file."""
    path = Path(path)
    try:
        df = pl.read_csv(path, schema_overrides={"tomo_id": pl.String})
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(f"{path}: cannot read folds: {e}") from e
    missing = [c for c in FOLD_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing fold columns {missing}; found {df.columns}")
    if not df.schema["fold"].is_integer():
        raise DataError(f"{path}: fold must hold integers, found {df.schema['fold']}")
    if df["tomo_id"].null_count() or df["fold"].null_count():
        raise DataError(f"{path}: empty tomo_id or fold values")
    if (df["fold"] < 0).any():
        raise DataError(f"{path}: negative fold numbers")
    repeated = df.filter(pl.col("tomo_id").is_duplicated())["tomo_id"].unique().sort().to_list()
    if repeated:
        raise DataError(f"{path}: tomo_ids listed more than once: {repeated[:_SHOWN_IDS]}")
    return dict(zip(df["tomo_id"].to_list(), df["fold"].to_list()))


def _check_matches(folds: dict[str, int], records: list[TomoRecord], n_folds: int, path: Path) -> None:
    """DataError unless `folds` covers exactly the records' tomograms with folds 0..n_folds-1."""
    ids = {r.tomo_id for r in records}
    for what, diff in (("lacks", ids - folds.keys()), ("has unknown", folds.keys() - ids)):
        if diff:
            raise DataError(f"{path}: {what} {len(diff)} tomo_id(s) of the labels, e.g. {sorted(diff)[:_SHOWN_IDS]}")
    found = sorted(set(folds.values()))
    if found != list(range(n_folds)):
        raise DataError(f"{path}: holds folds {found}, expected 0..{n_folds - 1}")


def resolve_folds(
    data_root: Path, records: list[TomoRecord], n_folds: int, seed: int = 0, path: Path | None = None
) -> tuple[dict[str, int], Path]:
    """The fold of each tomogram, and the CSV it comes from.

    The CSV is `path` if given, else `<data_root>/folds.csv` if it exists, else
    `runs/folds/<data_root name>-k<n_folds>-s<seed>.csv` (relative to the working directory). An existing CSV is
    read and must cover exactly the records' tomograms with folds 0..n_folds-1 (DataError otherwise); a missing one
    is made with `make_folds` and written. A generated CSV left by other data under the same folder name (e.g. a
    re-synthesised dataset) is made again, with a warning.
    """
    generated = None
    if path is None:
        in_root = Path(data_root) / FOLDS_FILENAME
        generated = GENERATED_DIR / f"{Path(data_root).resolve().name}-k{n_folds}-s{seed}.csv"
        path = in_root if in_root.exists() else generated
    path = Path(path)
    if not path.exists():
        write_folds(make_folds(records, n_folds, seed), path)
    try:
        folds = read_folds(path)
        _check_matches(folds, records, n_folds, path)
    except DataError as e:
        if path != generated:
            raise
        log.warning("%s -> making the folds again", e)
        write_folds(make_folds(records, n_folds, seed), path)
        folds = read_folds(path)
    return folds, path
