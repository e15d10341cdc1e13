"""Where the competition data is: a given folder, or under a Kaggle input root in either mount layout."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from kitlib.config import COMPETITION_SLUG
from kitlib.data.errors import DataError

KAGGLE_ROOT_ENV = "KIT_KAGGLE_ROOT"


def kaggle_root() -> Path:
    """The Kaggle root (`/kaggle` unless `KIT_KAGGLE_ROOT` says otherwise)."""
    return Path(os.environ.get(KAGGLE_ROOT_ENV, "/kaggle"))


def _looks_like_competition(path: Path) -> bool:
    return (path / "train").is_dir() or (path / "test").is_dir()


def find_competition_root(path: str | Path | None = None, slug: str = COMPETITION_SLUG) -> Path:
    """The competition folder: `path` itself, else `<kaggle root>/input/competitions/<slug>` or `<root>/input/<slug>`."""
    if path is not None:
        path = Path(path)
        if not _looks_like_competition(path):
            raise DataError(f"{path}: not a competition folder (no train/ or test/ inside)")
        return path
    root = kaggle_root()
    candidates = [root / "input" / "competitions" / slug, root / "input" / slug]
    for candidate in candidates:
        if _looks_like_competition(candidate):
            return candidate
    raise DataError(
        f"competition data not found: looked in {', '.join(map(str, candidates))} "
        f"(set {KAGGLE_ROOT_ENV} or pass the folder explicitly)"
    )


def find_dataset(slug: str, owner: str | None = None) -> Path:
    """An attached Kaggle dataset: `<root>/input/datasets/<owner>/<slug>` (newer mounts) or `<root>/input/<slug>`."""
    root = kaggle_root() / "input"
    candidates = []
    if owner:
        candidates.append(root / "datasets" / owner / slug)
    elif (root / "datasets").is_dir():
        candidates.extend(sorted((root / "datasets").glob(f"*/{slug}")))
    candidates.append(root / slug)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DataError(f"dataset {slug!r} not attached: looked in {', '.join(map(str, candidates))}")


@dataclass(frozen=True)
class CompetitionData:
    """Paths of one competition folder."""

    root: Path

    @property
    def labels_csv(self) -> Path:
        return self.root / "train_labels.csv"

    @property
    def sample_submission(self) -> Path:
        return self.root / "sample_submission.csv"

    @property
    def test_solution(self) -> Path:
        """Only synthetic datasets have it: the truth for the test split."""
        return self.root / "test_solution.csv"

    def split_dir(self, split: str) -> Path:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        return self.root / split

    def tomo_ids(self, split: str) -> list[str]:
        """Tomogram folders of a split, sorted."""
        folder = self.split_dir(split)
        if not folder.is_dir():
            raise DataError(f"{folder}: split folder does not exist")
        return sorted(p.name for p in folder.iterdir() if p.is_dir())

    def submission_ids(self) -> list[str]:
        """Ids a test submission must cover: the sample submission's, in its order, else the test folders.

        A sample submission that cannot be read as a CSV, has no `tomo_id` column, an empty id or no id at all is a
        DataError naming it."""
        path = self.sample_submission
        if not path.is_file():
            return self.tomo_ids("test")
        try:
            ids = pl.read_csv(path, infer_schema_length=0).get_column("tomo_id")
        except pl.exceptions.ColumnNotFoundError as e:
            raise DataError(f"{path}: no tomo_id column") from e
        except (OSError, pl.exceptions.PolarsError) as e:
            raise DataError(f"{path}: cannot read the sample submission: {str(e).splitlines()[0]}") from e
        empty = ((ids.is_null() | (ids == "")).arg_true() + 2).to_list()  # file lines: the header is line 1
        if empty:
            raise DataError(f"{path}: empty tomo_id on line(s) {empty[:5]}")
        if ids.is_empty():
            raise DataError(f"{path}: no ids (a header only)")
        return ids.unique(maintain_order=True).to_list()

    def fallback_ids(self) -> list[str]:
        """The ids for a fallback submission, when `submission_ids` failed: the sample submission's as
        `read_ids_verbatim` reads them, else (no such file) the test folders, else none."""
        if self.sample_submission.is_file():
            return read_ids_verbatim(self.sample_submission)
        try:
            return self.tomo_ids("test")
        except (OSError, DataError):
            return []


def read_ids_verbatim(path: Path) -> list[str]:
    """The ids of a sample-submission-like CSV, read as tolerantly as can be for a fallback file.

    The `tomo_id` column (else the first) of every row after the header, verbatim: not stripped, not parsed, an
    empty id kept as "" (it is a sample row, so the scorer may expect it); duplicates once, in file order. A UTF-8
    BOM is dropped and bytes that are not UTF-8 are replaced (U+FFFD), so a row still gives its id; reading stops at
    a row the CSV reader cannot parse; a file that cannot be read gives none.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError:
        return []
    rows = csv.reader(io.StringIO(text, newline=""))
    ids: dict[str, None] = {}
    try:
        header = [name.strip() for name in next(rows, [])]
        column = header.index("tomo_id") if "tomo_id" in header else 0
        for row in rows:
            if len(row) > column:
                ids.setdefault(row[column], None)
    except csv.Error:
        pass  # keep the ids before the row that cannot be parsed
    return list(ids)
