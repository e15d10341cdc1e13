"""The z-error check: matching and statistics without a model, then the command end to end on tiny data with a tiny
1-epoch model (which only shows that it runs and writes its figures: passing needs the real CPU training budget)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from kitlib.cli import main
from kitlib.config import KitConfig
from kitlib.evaluation.z_error import error_stats, match_detection, motor_z_errors

STRIDE = 2


def test_match_detection_takes_the_most_confident_within_radius():
    points = np.array([
        [10.0, 50.0, 50.0, 0.99],  # most confident, but 20 voxels away
        [11.0, 41.0, 38.0, 0.40],  # within radius (5 voxels)
        [12.0, 40.0, 42.0, 0.60],  # within radius (2 voxels): the match
        [13.0, 40.0, 40.0, 0.10],  # exactly on the motor, least confident
    ])  # fmt: skip
    assert match_detection(points, (40.0, 40.0), radius=5.0) == 2
    assert match_detection(points, (40.0, 40.0), radius=1.0) == 3
    assert match_detection(points, (0.0, 0.0), radius=5.0) is None
    assert match_detection(np.empty((0, 4)), (40.0, 40.0), radius=5.0) is None


def test_error_stats():
    head = np.arange(1, 11) / 10.0  # 0.1 .. 1.0
    errors = np.column_stack([np.zeros(10), head, head * 4])
    stats = error_stats(errors, stride=STRIDE, n_stacks=15)
    assert stats["median_z_head"] == pytest.approx(0.55) and stats["p90_z_head"] == pytest.approx(0.91)
    assert stats["median_baseline"] == pytest.approx(2.2) and stats["p90_baseline"] == pytest.approx(3.64)
    assert (stats["n_matched"], stats["n_stacks"], stats["stride"], stats["z_span"]) == (10, 15, STRIDE, 2 * STRIDE)
    assert stats["threshold"] == 1.0 and stats["pass"] is True
    assert error_stats(errors * [1, 2, 1], STRIDE, 15)["pass"] is False  # median 1.1 >= stride / 2
    empty = error_stats(np.empty((0, 3)), STRIDE, 9)
    assert empty["n_matched"] == 0 and empty["median_z_head"] is None and empty["pass"] is False


class SliceReader:
    """Stand-in for the model: the test volume stores each slice's index as its value, so the centre channel tells
    the stack's centre; it reports the motor with a fixed z error of `miss` slices, a more confident decoy far away
    in (y, x) and a less confident one near the motor."""

    stack_stride = STRIDE

    def __init__(self, motor: tuple[float, float, float], miss: float):
        self.motor, self.miss = motor, miss

    def predict(self, stacks: np.ndarray, conf: float = 0.05, imgsz: int | None = None) -> list[np.ndarray]:
        z, y, x = self.motor
        out = []
        for stack in stacks:
            dz = z + self.miss - float(stack[0, 0, 2])
            out.append(np.array([
                [x + 0.5, y + 0.5, 8, 8, 0.8, dz],
                [x + 30.5, y + 0.5, 8, 8, 0.95, 0.0],
                [x + 2.5, y + 0.5, 8, 8, 0.3, -dz],
            ], np.float32))  # fmt: skip
        return out


def test_motor_z_errors_with_a_stand_in_detector():
    grid = np.broadcast_to(np.arange(40, dtype=np.uint8)[:, None, None], (40, 48, 64)).copy()
    cfg = KitConfig.preset("cpu")
    cfg.infer.batch = 4  # several batches
    motor = (20.3, 10.0, 12.0)
    rows, n_stacks = motor_z_errors(grid, motor, SliceReader(motor, miss=0.5), radius=10.0, cfg=cfg)
    centres = np.arange(20 - 2 * STRIDE, 20 + 2 * STRIDE + 1)
    assert n_stacks == len(rows) == len(centres)
    np.testing.assert_allclose(rows[:, 0], centres - 20.3)
    np.testing.assert_allclose(rows[:, 1], 0.5, atol=1e-5)
    np.testing.assert_allclose(rows[:, 2], np.abs(centres - 20.3))
    edge = (1.0, 10.0, 12.0)  # centres below slice 0 are not cut
    rows, n_stacks = motor_z_errors(grid, edge, SliceReader(edge, miss=0.0), radius=10.0, cfg=cfg)
    assert n_stacks == len(rows) == 1 + 2 * STRIDE + 1
    far = motor_z_errors(grid, motor, SliceReader((20.3, 10.0, 40.0), miss=0.0), radius=10.0, cfg=cfg)[0]
    assert len(far) == 0  # every detection is more than the radius away


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny synthetic competition folder, 2 folds, and one tiny 1-epoch model copied in as both folds' best.pt."""
    from kitlib.data.synth import synthesize
    from kitlib.testing import make_toy_export
    from kitlib.model.trainer import train

    root = tmp_path_factory.mktemp("z_error")
    records = synthesize(root / "data", n_train=4, n_test=0, size="tiny", seed=0, progress=False).train
    assert any(r.motors for r in records)
    ids = sorted(r.tomo_id for r in records)
    pl.DataFrame({"tomo_id": ids, "fold": [i % 2 for i in range(len(ids))]}).write_csv(root / "data" / "folds.csv")
    train_cfg = dict(epochs=1, time_budget_s=None, batch=4, device="cpu", workers=0, patience=100, close_mosaic=0)
    cfg = KitConfig.preset("cpu").override({"train": train_cfg, "model": {"imgsz": 64}, "tune": {"n_folds": 2}})
    export = make_toy_export(root / "export", n_train=4, n_val=2, size=64, stack_stride=STRIDE, box=16)
    best = train(export, cfg, root / "train" / "t")
    for fold in (0, 1):
        (root / "runs" / "tiny" / f"fold{fold}" / "weights").mkdir(parents=True)
        shutil.copy(best, root / "runs" / "tiny" / f"fold{fold}" / "weights" / "best.pt")
    cfg.save(root / "runs" / "tiny" / "config.yaml")
    return root


def test_z_error_command_writes_its_figures(tiny_run, monkeypatch, capsys):
    monkeypatch.chdir(tiny_run)
    assert main(["z-error", "--data", "data", "--run", "tiny"]) == 0
    result = json.loads((tiny_run / "runs" / "tiny" / "z_error.json").read_text())
    keys = {"median_z_head", "p90_z_head", "median_baseline", "p90_baseline", "n_matched", "n_stacks", "stride",
            "z_span", "threshold", "pass", "folds", "n_tomograms", "n_motors", "folds_csv", "weights", "plot"}
    assert keys <= result.keys()
    assert result["stride"] == STRIDE and result["folds"] == [0, 1] and result["folds_csv"].endswith("folds.csv")
    assert result["n_stacks"] > 0 and (tiny_run / "runs" / "tiny" / "z_error.png").is_file()
    assert "pass (z-head median < stride/2 = 1)" in capsys.readouterr().out
