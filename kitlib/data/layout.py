"""Where the competition data is: a given folder, or under a Kaggle input root in either mount layout."""

from __future__ import annotations

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
        """Ids a test submission must cover: the sample submission's, in its order, else the test folders."""
        if self.sample_submission.is_file():
            df = pl.read_csv(self.sample_submission, schema_overrides={"tomo_id": pl.String})
            if "tomo_id" not in df.columns:
                raise DataError(f"{self.sample_submission}: no tomo_id column")
            return df["tomo_id"].unique(maintain_order=True).to_list()
        return self.tomo_ids("test")
