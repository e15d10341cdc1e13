"""Inference over several devices: a worker process per device, tomograms dealt round-robin, one submission.

No GPU here: two CPU workers (`device: cpu,cpu`) stand in for two GPUs; the path is the same (spawned workers, each
loading the models on its own device)."""

from __future__ import annotations

import polars as pl
import pytest

from kitlib.data.layout import CompetitionData
from kitlib.data.synth import synthesize
from kitlib.infer.predict import CANDIDATE_SCHEMA
from kitlib.infer.predictor import Predictor, merge_shards, resolve_devices
from kitlib.presence import PresenceRule
from kitlib.testing import tiny_run

EVERY_CANDIDATE = PresenceRule("threshold", 0.0, 0.0, (0.0, 0.0), 0)


def test_two_workers_write_the_same_submission_as_one(tmp_path):
    data = CompetitionData(synthesize(tmp_path / "comp", 0, 5, size="tiny", seed=5, progress=False).out)
    run = tiny_run(tmp_path / "run")
    outs = {}
    for device in ("cpu", "cpu,cpu"):
        predictor = Predictor.from_run(run, presence=EVERY_CANDIDATE, device=device)
        path, _ = predictor.predict_split(data, "test", tmp_path / f"{device}.csv", progress=False)
        outs[device] = pl.read_csv(path)
    one, two = outs["cpu"], outs["cpu,cpu"]
    assert two["tomo_id"].to_list() == one["tomo_id"].to_list() == data.submission_ids()
    coords = [c for c in one.columns if c != "tomo_id"]
    assert ((one.select(coords) - two.select(coords)).to_numpy().__abs__() < 1e-3).all()


def test_a_failed_worker_costs_only_its_rows():
    good = pl.DataFrame([{**{k: 0 for k in CANDIDATE_SCHEMA}, "tomo_id": "b", "z": 3.0, "y": 4.0, "x": 5.0,
                          "score": 0.9, "error": None}], schema=CANDIDATE_SCHEMA)
    with pytest.warns(UserWarning, match="worker on device 1 failed: RuntimeError: CUDA error"):
        merged = merge_shards(["a", "b", "c"], [("0", ["b"], good), ("1", ["a", "c"], RuntimeError("CUDA error"))])
    assert merged["tomo_id"].to_list() == ["a", "b", "c"]
    assert merged["z"].to_list() == [-1.0, 3.0, -1.0]
    assert merged["error"][0].startswith("worker on device 1 failed") and merged["error"][1] is None


def test_devices_resolve_to_one_worker_each():
    import torch

    assert resolve_devices("cpu") == ["cpu"] and resolve_devices("cpu,cpu") == ["cpu", "cpu"]
    expected = [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]
    assert resolve_devices("auto") == expected
