"""`python -m bench.rehearse --quick` end to end on tiny tomograms: every required key is written (figures not
checked: speed is measured in bench/, never asserted); the projection's job follows the real label statistics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.rehearse import job_stacks, real_records
from kitlib.config import KitConfig
from kitlib.data.synth.stats import REAL_LABEL_STATS, label_stats

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"export_sec_per_tomo", "export_bytes_per_tomo", "train_sec_per_stack", "infer_sec_per_tomo", "peak_rss_mb",
        "synth_sec_per_tomo", "disk_bytes", "stages", "projection", "git_commit", "config"}
PROJECTION = {"train_disk_gb_all_folds", "train_hours_per_fold_t4", "infer_hours_t4x2", "infer_hours_p100",
              "assumptions", "plan_t4x2", "plan_p100", "store_options_gb", "basis"}


def test_quick_rehearsal_writes_every_key(tmp_path):
    out = tmp_path / "results" / "rehearse"
    proc = subprocess.run([sys.executable, "-m", "bench.rehearse", "--quick", "--cache", str(tmp_path / "cache"),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert KEYS <= set(result), KEYS - set(result)
    p = result["projection"]
    assert PROJECTION <= set(p), PROJECTION - set(p)
    assert "PROJECTION" in p["basis"] and len(p["assumptions"]) >= 5
    assert result["quick"] is True and result["device"] == "cpu" and result["config"]["half"] is False
    assert set(result["stages"]) == {"synth", "export", "train", "predict"}
    assert result["stages"]["train"]["train_stacks"] > 0 and result["stages"]["predict"]["n_tomograms"] == 2
    assert p["plan_t4x2"]["n_views"] >= 1 and p["epochs"] == KitConfig.preset("default").train.epochs
    assert "Projection to the full job" in out.with_suffix(".md").read_text()


def test_projected_job_has_the_real_label_files_counts():
    """The records the projection plans follow the label file's acquisitions and motor counts; the stacks store
    holds every planned stack, more than one fold's negative-capped splits."""
    records = real_records()
    stats = label_stats(records)
    assert stats.acquisitions == REAL_LABEL_STATS.acquisitions
    assert stats.motors_per_tomogram == REAL_LABEL_STATS.motors_per_tomogram
    assert stats.n_motor_free == REAL_LABEL_STATS.n_motor_free
    cfg = KitConfig.preset("default")
    stacks = job_stacks(cfg, records)
    motors = sum(k * n for k, n in REAL_LABEL_STATS.motors_per_tomogram)
    assert stacks["stored"] <= motors * cfg.export.positives_per_motor + len(records) * cfg.export.negatives_per_tomo
    assert stacks["stored"] >= stacks["fold_train"] + stacks["fold_val"] > 0.9 * stacks["stored"]
