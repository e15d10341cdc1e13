"""Bench tomograms: synthetic competition-format JPEG tomograms, written once into a cache folder and reused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kitlib.data.layout import CompetitionData

# `real`-size test tomograms are 400x1400x1050, the reported mean test shape (`REPORTED_TEST_SHAPE`).
SEED = 91


def bench_data(cache: Path, size: str, n: int) -> tuple[CompetitionData, list[str]]:
    """The cached dataset of `n` test tomograms at `size` (synthesised on first use) and its tomogram ids.

    Synthesis runs in a child process, so its memory never counts in the bench's peak RSS.
    """
    root = cache / f"{size}-n{n}-seed{SEED}"
    data = CompetitionData(root)
    if not data.sample_submission.is_file():  # written last: its absence means "not (completely) generated"
        command = [sys.executable, "-m", "kitlib", "synth", "--out", str(root), "--size", size,
                   "--n-train", "0", "--n-test", str(n), "--seed", str(SEED)]
        subprocess.run(command, check=True)
    return data, data.submission_ids()
