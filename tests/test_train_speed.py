"""`make train-speed`'s report and its one-line error when there is no export to time (no training here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.train_speed import SETTINGS, markdown

ROOT = Path(__file__).resolve().parent.parent


def test_report_has_a_row_per_setting_with_its_figures():
    runs = {name: {"s_per_epoch": 9.3 + i, "wall_s": 43.0 + i,
                   "last_losses": {"box_loss": 1.0, "cls_loss": 2.0, "dfl_loss": 3.0, "z_loss": 4.0 + i}}
            for i, name in enumerate(SETTINGS)}
    text = markdown({"epochs": 4, "export": "x/dataset.yaml", "git_commit": "abc1234", "runs": runs})
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0].strip("| ") for r in rows] == list(SETTINGS)
    assert "| 10.3 | 44.0 | 1.0000, 2.0000, 3.0000, 5.0000 |" in rows[1]
    assert "abc1234" in text and "4 epochs" in text


def test_a_missing_export_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nope" / "dataset.yaml"
    done = subprocess.run([sys.executable, "-m", "bench.train_speed", "--export", str(missing)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode != 0
    expected = f"{missing}: no fold export: run `make demo` first, or pass --export DIR/dataset.yaml"
    assert done.stderr.strip().splitlines()[-1] == expected
