"""Bad inputs at the predict level (`Predictor.predict_split` and `python -m kitlib predict`), with an untrained tiny checkpoint.

Whatever is wrong with a tomogram, the warning names the file and the problem and the submission keeps exactly one
row per sample-submission id; a wrong weights file is an error naming it. The data layer's own checks of the same
files are in test_data.py. The time budget is tested in test_budget.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from kitlib.config import KitConfig
from kitlib.data.layout import CompetitionData
from kitlib.data.submission import read_submission
from kitlib.data.synth import synthesize
from kitlib.infer.predict import predict_tomograms
from kitlib.infer.predictor import Predictor
from kitlib.infer.tta import parse_views
from kitlib.presence import PresenceRule
from kitlib.testing import tiny_run

N_TEST = 3
EVERY_CANDIDATE = PresenceRule("threshold", 0.0, 0.0, (0.0, 0.0), 0)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A tiny synthetic competition folder (test tomograms of 32x96x96) and an untrained tiny run."""
    root = tmp_path_factory.mktemp("bad_inputs")
    data = synthesize(root / "comp", 0, N_TEST, size="tiny", seed=3, progress=False).out
    run = tiny_run(root / "run")
    cfg = KitConfig.load(run / "config.yaml")
    weights = run / "fold0" / "weights" / "best.pt"
    detectors = Predictor.from_run(run).detectors
    return {"data": data, "run": run, "cfg": cfg, "weights": weights, "detectors": detectors}


@pytest.fixture
def comp(base, tmp_path) -> Path:
    """A fresh copy of the competition folder to break."""
    return Path(shutil.copytree(base["data"], tmp_path / "comp"))


def sample_ids(comp: Path) -> list[str]:
    return pl.read_csv(comp / "sample_submission.csv")["tomo_id"].to_list()


def slices(comp: Path, tomo_id: str) -> list[Path]:
    return sorted((comp / "test" / tomo_id).glob("slice_*.jpg"))


def predict(base: dict, comp: Path, tmp_path: Path, views=("identity",)):
    """Predictor.predict_split on `comp` with the tiny run; the submission (checked complete, in sample order),
    candidates and warning texts."""
    predictor = Predictor.from_run(base["run"], presence=EVERY_CANDIDATE, tta=views)
    predictor.detectors = base["detectors"]  # the run's, or a stand-in
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, candidates = predictor.predict_split(CompetitionData(comp), "test", tmp_path / "sub.csv",
                                                  progress=False)
    submission = read_submission(out)
    assert submission["tomo_id"].to_list() == sample_ids(comp)
    return submission, candidates, [str(w.message) for w in caught]


def row(frame: pl.DataFrame, tomo_id: str) -> dict:
    return frame.filter(pl.col("tomo_id") == tomo_id).row(0, named=True)


def truncate(path: Path) -> str:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "truncated JPEG"


def empty_file(path: Path) -> str:
    path.write_bytes(b"")
    return "empty file (0 bytes)"


def text_as_slice(path: Path) -> str:
    path.write_text("not an image")
    return "not a JPEG file"


def other_size(path: Path) -> str:
    cv2.imwrite(str(path), np.full((50, 70), 128, np.uint8))
    return "slice is 70x50, expected 96x96"


def gap(path: Path) -> str:
    path.unlink()
    return "gaps in slice numbering"


@pytest.mark.parametrize("damage", [truncate, empty_file, text_as_slice, other_size, gap])
def test_unreadable_slice_gives_no_motor_row_and_names_the_file(base, comp, tmp_path, damage):
    bad = sample_ids(comp)[1]
    target = slices(comp, bad)[5]
    problem = damage(target)
    submission, candidates, messages = predict(base, comp, tmp_path)
    named = target if damage is not gap else target.parent
    assert any(str(named) in m and problem in m and bad in m for m in messages), messages
    assert problem in row(candidates, bad)["error"]
    assert list(row(submission, bad).values())[1:] == [-1.0, -1.0, -1.0]
    others = candidates.filter(pl.col("tomo_id") != bad)
    assert others["error"].is_null().all() and len(others) == N_TEST - 1


def test_empty_folder_and_stray_files(base, comp, tmp_path):
    empty, stray = sample_ids(comp)[:2]
    for path in slices(comp, empty):
        path.unlink()
    (comp / "test" / stray / "notes.txt").write_text("x")
    (comp / "test" / stray / ".DS_Store").write_bytes(b"\0\1")
    _, candidates, messages = predict(base, comp, tmp_path)
    assert any(f"{comp / 'test' / empty}: no slice_NNNN.jpg files" in m for m in messages), messages
    assert any(f"{comp / 'test' / stray}: ignoring 2 non-slice file(s)" in m for m in messages), messages
    assert row(candidates, stray)["error"] is None


def test_rgb_and_16bit_slices_are_converted_once_per_tomogram(base, comp, tmp_path):
    rgb, deep = sample_ids(comp)[:2]
    for path in slices(comp, rgb):
        cv2.imwrite(str(path), cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR))
    for path in slices(comp, deep):
        cv2.imwrite(str(path.with_suffix(".png")), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257)
        path.unlink()
    _, candidates, messages = predict(base, comp, tmp_path)
    assert candidates["error"].is_null().all()
    rgb_msgs = [m for m in messages if "3-channel" in m]
    deep_msgs = [m for m in messages if "uint16" in m]
    assert len(rgb_msgs) == 1 and str(comp / "test" / rgb) in rgb_msgs[0] and "32 slice(s)" in rgb_msgs[0], messages
    assert len(deep_msgs) == 1 and str(comp / "test" / deep) in deep_msgs[0], messages


def test_thin_and_extreme_aspect_tomograms_are_predicted(base, comp, tmp_path):
    thin_one, thin_three, flat = sample_ids(comp)
    for tomo_id, keep in ((thin_one, 1), (thin_three, 3)):
        for path in slices(comp, tomo_id)[keep:]:
            path.unlink()
    folder = comp / "test" / flat
    shutil.rmtree(folder)
    folder.mkdir()
    rng = np.random.default_rng(0)
    for z in range(8):
        cv2.imwrite(str(folder / f"slice_{z:04d}.jpg"), rng.integers(0, 255, (40, 600), np.uint8))
    _, candidates, _ = predict(base, comp, tmp_path)
    assert candidates["error"].is_null().all() and len(candidates) == N_TEST
    for tomo_id, depth, (h, w) in ((thin_one, 1, (96, 96)), (thin_three, 3, (96, 96)), (flat, 8, (40, 600))):
        r = row(candidates, tomo_id)
        if r["z"] >= 0:
            assert 0 <= r["z"] <= depth - 1 and 0 <= r["y"] <= h - 1 and 0 <= r["x"] <= w - 1, r


def test_folders_and_sample_submission_disagree(base, comp, tmp_path):
    ids = sample_ids(comp)
    shutil.copytree(comp / "test" / ids[0], comp / "test" / "tomo_extra")
    shutil.rmtree(comp / "test" / ids[2])
    submission, candidates, messages = predict(base, comp, tmp_path)
    assert any("tomo_extra" in m and "not in the sample submission" in m for m in messages), messages
    assert any(ids[2] in m and "no folder" in m for m in messages), messages
    assert "tomo_extra" not in candidates["tomo_id"].to_list()
    assert list(row(submission, ids[2]).values())[1:] == [-1.0, -1.0, -1.0]


@pytest.fixture(scope="module")
def three_channel_pt(tmp_path_factory) -> Path:
    """An ultralytics 3-channel YOLOv8n checkpoint: valid, but not a kit z-head checkpoint."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    path = tmp_path_factory.mktemp("w3") / "yolov8n.pt"
    torch.save({"model": DetectionModel("yolov8n.yaml", ch=3, nc=80, verbose=False), "ema": None}, path)
    return path


def test_wrong_weights_are_an_error_naming_the_file(base, three_channel_pt, tmp_path):
    from kitlib.data.errors import DataError

    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    for path, problem in ((junk, "cannot read checkpoint"), (three_channel_pt, "not a kit z-head checkpoint"),
                          (tmp_path / "absent.pt", "checkpoint not found")):
        with pytest.raises(DataError, match=f"{path}: {problem}"):
            Predictor.from_run([base["weights"], path], config=base["cfg"], presence=EVERY_CANDIDATE)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kitlib", "predict", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_predict_end_to_end_on_a_broken_split(base, comp, tmp_path):
    ids = sample_ids(comp)
    truncate(slices(comp, ids[0])[3])
    (comp / "test" / ids[1] / "notes.txt").write_text("x")
    shutil.rmtree(comp / "test" / ids[2])
    shutil.copytree(comp / "test" / ids[1], comp / "test" / "tomo_extra")
    out = tmp_path / "sub.csv"
    proc = cli("--data", str(comp), "--config", str(base["run"] / "config.yaml"), "--weights", str(base["weights"]),
               "--presence", str(base["run"] / "presence.json"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for text in (f"{slices(comp, ids[0])[3]}: truncated JPEG", "ignoring 1 non-slice file(s)", "no folder for",
                 "not in the sample submission"):
        assert text in proc.stderr, proc.stderr
    submission = read_submission(out)
    assert submission["tomo_id"].to_list() == ids
    assert list(row(submission, ids[0]).values())[1:] == [-1.0, -1.0, -1.0]


def test_cli_predict_with_junk_weights_fails_clearly(base, comp, tmp_path):
    junk = tmp_path / "fold0.pt"
    junk.write_bytes(b"\x89PNG random bytes")
    shutil.copy(base["run"] / "presence.json", tmp_path / "presence.json")
    out = tmp_path / "sub.csv"
    proc = cli("--data", str(comp), "--config", str(base["run"] / "config.yaml"), "--weights", str(junk),
               "--out", str(out))
    assert proc.returncode == 2 and f"error: {junk}: cannot read checkpoint" in proc.stderr, proc.stderr
    assert not out.exists()


def test_stage_timings_are_recorded(base, comp):
    cfg = base["cfg"]
    ids = sample_ids(comp)
    candidates = predict_tomograms(CompetitionData(comp), "test", ids, base["detectors"], cfg,
                                   parse_views(["identity"]), progress=False)
    for name in ("read_s", "wait_s", "normalize_s", "model_s", "fusion_s"):
        assert (candidates[name] >= 0).all() and candidates[name].is_not_null().all(), name
    assert (candidates["read_s"] > 0).all() and (candidates["model_s"] > 0).all()



class FailsOnce:
    """Stand-in for a detector that fails at run time (say, CUDA out of memory) once: on the first tomogram."""

    def __init__(self, detector):
        self.detector, self.stack_stride, self.failed = detector, detector.stack_stride, False

    def predict(self, stacks, conf, imgsz):
        if not self.failed:
            self.failed = True
            raise RuntimeError("CUDA out of memory (stand-in)")
        return self.detector.predict(stacks, conf, imgsz)


def test_a_model_failure_on_one_tomogram_costs_only_that_row(base, comp, tmp_path):
    victim, *others = sample_ids(comp)
    submission, candidates, messages = predict({**base, "detectors": [FailsOnce(base["detectors"][0])]}, comp, tmp_path)
    assert row(candidates, victim)["error"].endswith("RuntimeError: CUDA out of memory (stand-in)")
    assert row(submission, victim)["Motor axis 0"] == -1
    assert candidates.filter(pl.col("tomo_id").is_in(others))["error"].is_null().all()
    assert any(victim in m and "prediction failed" in m for m in messages), messages
