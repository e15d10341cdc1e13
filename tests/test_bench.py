"""`python -m bench.run --quick` end to end on two tiny tomograms: every result key is written (timings not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"sec_per_tomo", "decode_floor_sec", "overhead_ratio", "baseline_reader_sec", "peak_rss_mb", "device",
        "cpu_count", "torch", "stages_sec_per_tomo", "pipeline_rss_over_tomo", "n_tomograms", "shape", "git_commit", "model", "runs"}
STAGES = {"read", "wait", "normalize", "model", "fusion", "other"}


def test_quick_bench_writes_every_key(tmp_path):
    out = tmp_path / "results" / "quick"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--size", "tiny", "--n", "2",
                           "--cache", str(tmp_path / "cache"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert KEYS <= set(result), KEYS - set(result)
    assert set(result["stages_sec_per_tomo"]) == STAGES
    assert result["n_tomograms"] == 2 and result["shape"] == [32, 96, 96] and result["device"] == "cpu"
    assert result["runs"][0]["half"] is False and "untrained" in result["model"]["note"]
    assert "| device |" in out.with_suffix(".md").read_text() and "| device |" in proc.stdout
