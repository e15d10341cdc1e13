"""Score a test-split submission when the data knows the answers (synthetic data writes `test_solution.csv`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from kitlib.data.layout import CompetitionData
from kitlib.metric import breakdown, summarize


def score_test_split(data: CompetitionData, submission: Path) -> dict | None:
    """F2 and TP/FP/FN/TN of `submission` against the data's `test_solution.csv`; None when it has none (Kaggle)."""
    if not data.test_solution.is_file():
        return None
    solution = pl.read_csv(data.test_solution, schema_overrides={"tomo_id": pl.String})
    return summarize(breakdown(solution, pl.read_csv(submission, schema_overrides={"tomo_id": pl.String})))


def describe_test_score(test: dict) -> str:
    """One line: the F2 and its counts."""
    return (f"{test['f2']:.4f}  (TP={test['tp']} FP={test['fp']} FN={test['fn']} TN={test['tn']}, "
            f"{test['n_tomograms']} tomograms)")
