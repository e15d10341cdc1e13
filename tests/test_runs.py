"""The paths a competitor takes after the demo, through the CLI on tiny synthetic data with real (1-epoch) training:
local-score then predict on the same run, a rerun that refuses and loses nothing, resume, folds trained elsewhere
imported and scored without a leak, a run predicting at its own training size under any preset."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from kitlib.cli import main
from kitlib.data.submission import read_submission
from kitlib.data.synth import synthesize
from kitlib.infer.predictor import Predictor
from kitlib.model.build import read_checkpoint
from kitlib.preprocess import grid_policy
from kitlib.run import RunDir
from kitlib.verify.verifier import Verifier
from kitlib.version import describe_machine

IMGSZ = 64
# a partial config: merged onto the cpu preset
TINY = {
    "preprocess": {"stack_stride": 2, "grid": "size", "resize_to": IMGSZ},
    "model": {"imgsz": IMGSZ, "width": 0.125},
    "train": {"epochs": 1, "time_budget_s": None, "batch": 4, "workers": 0},
    "infer": {"tta": ["identity"], "batch": 16, "conf": 0.01},
    "verify": {"steps": 10},
    "tune": {"n_folds": 2, "bootstrap": 20},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A working folder with tiny competition data, the tiny config and one run `x` made by local-score."""
    root = tmp_path_factory.mktemp("runs")
    synthesize(root / "comp", n_train=6, n_test=3, size="tiny", seed=1, progress=False)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["local-score", "--data", "comp", "--run", "x", "--preset", "cpu", "--config", "tiny.yaml"]) == 0
    return root


@pytest.fixture
def at(work, monkeypatch) -> Path:
    monkeypatch.chdir(work)
    return work


def mtimes(run: RunDir) -> dict[str, int]:
    files = [run.config, run.presence, run.score, *run.fold_checkpoints().values()]
    return {str(f): f.stat().st_mtime_ns for f in files}


def test_local_score_writes_the_run_layout(at):
    run = RunDir(at / "runs" / "x")
    assert sorted(run.fold_checkpoints()) == [0, 1]
    for path in (run.config, run.presence, run.folds_csv, run.oof, run.score, run.plot("f2_curve")):
        assert path.is_file(), path
    score = json.loads(run.score.read_text())
    assert score["weights"] == [str(run.fold_checkpoint(0)), str(run.fold_checkpoint(1))]
    assert run.load_config().model.imgsz == IMGSZ  # the partial YAML merged onto the preset
    machine = score["machine"]
    assert machine["cpu_kernels"] == torch.backends.cpu.get_cpu_capability() and machine["torch"] == torch.__version__
    assert machine["cores"] == os.cpu_count() and machine["cpu"]
    assert describe_machine(machine).startswith(f"{machine['cpu']}, {os.cpu_count()} cores, {machine['cpu_kernels']} ")


def test_local_score_trains_the_verifier_on_the_held_out_candidates_and_predict_uses_it(at):
    """The cpu preset's verifier: two networks per fold in verifier.pt, trained on the stored candidates of the other
    fold; the out-of-fold rows carry its probability, score.json the detector's own F2; predict rescores with it
    unless told not to."""
    run = RunDir(at / "runs" / "x")
    assert sorted(Verifier.load(run.verifier).nets) == [0, 1]
    assert sorted(p.stem for p in run.verify_patches.glob("*.npz")) == sorted(pl.read_csv(run.folds_csv)["tomo_id"])
    oof = pl.read_csv(run.oof)
    scored = oof.filter(pl.col("verify_score").is_not_null())
    assert len(scored) and (scored["score"] - scored["detector_score"] * scored["verify_score"]).abs().max() < 1e-9
    assert 0 <= json.loads(run.score.read_text())["f2_detector_only"] <= 1
    assert Predictor.from_run("x").verifier is not None
    assert "verifier of 4 network(s)" in Predictor.from_run("x").describe()
    assert Predictor.from_run("x", overrides={"verify": {"enabled": False}}).verifier is None


def test_the_folds_share_one_store_of_stacks(at):
    """Each tomogram is read and stored once: every fold's export is hard links into the run's export/stacks."""
    run = RunDir(at / "runs" / "x")
    stored = {p.name: p.stat().st_ino for p in (run.export_stacks / "images").iterdir()}
    for fold in (0, 1):
        linked = list((run.export_dir(fold) / "images").glob("*/*.tif"))
        assert linked and all(stored[p.name] == p.stat().st_ino for p in linked)
        assert not (run.export_dir(fold) / "stacks").exists()


def test_predict_right_after_local_score_on_the_same_run(at, capsys):
    assert main(["predict", "--data", "comp", "--run", "x"]) == 0
    submission = read_submission(at / "runs" / "x" / "submission.csv")
    sample = pl.read_csv(at / "comp" / "sample_submission.csv")["tomo_id"].to_list()
    assert submission["tomo_id"].to_list() == sample
    out = capsys.readouterr().out
    assert "2 model(s)" in out
    assert "test_solution.csv: 0." in out or "test_solution.csv: 1." in out  # synthetic data knows the answers


def test_a_run_predicts_at_its_training_size_under_any_preset(at):
    for preset in (None, "cpu", "default"):
        predictor = Predictor.from_run("x", preset=preset, device="cpu")
        assert predictor.cfg.infer.imgsz is None and {d.imgsz for d in predictor.detectors} == {IMGSZ}, preset
    assert f", {IMGSZ} px, " in Predictor.from_run("x", preset="default", device="cpu").describe()


def test_a_run_predicts_on_its_training_grid_under_any_preset(at):
    """The checkpoints record the grid policy they were trained on; prediction applies it whatever the preset, and an
    explicit --set of a grid key wins, with a warning."""
    trained = {"grid": "size", "target_spacing": 64.0, "resize_to": IMGSZ, "z_average": 3}  # the cpu preset's
    run = RunDir(at / "runs" / "x")
    assert all(read_checkpoint(c)["kit_meta"]["grid"] == trained for c in run.fold_checkpoints().values())
    for preset in (None, "cpu", "default"):
        assert grid_policy(Predictor.from_run("x", preset=preset, device="cpu").cfg.preprocess) == trained, preset
    assert f"resized to {IMGSZ} px" in Predictor.from_run("x", preset="default", device="cpu").describe()
    with pytest.warns(UserWarning, match="not the .* the models were trained on"):
        asked = Predictor.from_run("x", overrides={"preprocess": {"grid": "native"}}, device="cpu")
    assert asked.cfg.preprocess.grid == "native"


def test_rerunning_an_existing_run_name_refuses_and_loses_nothing(at, capsys):
    run = RunDir(at / "runs" / "x")
    before = mtimes(run)
    assert main(["local-score", "--data", "comp", "--run", "x", "--preset", "cpu", "--config", "tiny.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a run of that name exists" in err and "--resume" in err and "--exist-ok" in err
    assert mtimes(run) == before


def test_resume_keeps_finished_folds(at, capsys):
    run = RunDir(at / "runs" / "x")
    checkpoints = {f: p.stat().st_mtime_ns for f, p in run.fold_checkpoints().items()}
    assert main(["local-score", "--data", "comp", "--run", "x", "--resume"]) == 0
    assert "finished checkpoint" in capsys.readouterr().out
    assert {f: p.stat().st_mtime_ns for f, p in run.fold_checkpoints().items()} == checkpoints


def test_train_resume_uses_the_runs_own_config_whatever_preset_is_given(at, capsys):
    """No --preset / --config: the run's saved config (a GPU preset would fail on this machine; cpu would change the
    batch size)."""
    assert main(["train", "--data", "comp", "--fold", "0", "--run", "x", "--resume"]) == 0
    assert "fold 0: finished checkpoint" in capsys.readouterr().out
    assert RunDir(at / "runs" / "x").load_config().train.batch == TINY["train"]["batch"]


def kernel_outputs(at: Path, name: str, swap: bool = False) -> Path:
    """What `make kernel-output KERNEL=train` leaves for each fold, made from run x: fold<k>.pt, config.yaml,
    folds.csv (`swap`: fold 0's file holds fold 1's model and the other way round)."""
    run = RunDir(at / "runs" / "x")
    out = at / name
    for fold in (0, 1):
        folder = out / f"fold{fold}"
        folder.mkdir(parents=True)
        shutil.copy2(run.fold_checkpoint(1 - fold if swap else fold), folder / f"fold{fold}.pt")
        shutil.copy2(run.config, folder / "config.yaml")
        shutil.copy2(run.folds_csv, folder / "folds.csv")
    return out


def test_imported_folds_score_as_the_run_that_trained_them(at):
    out = kernel_outputs(at, "kernel_outputs")
    assert main(["local-score", "--data", "comp", "--run", "imported", "--from-folds", str(out / "fold0"),
                 str(out / "fold1")]) == 0
    mine, theirs = (pl.read_csv(at / "runs" / r / "oof.csv").sort("tomo_id") for r in ("x", "imported"))
    assert mine.select("tomo_id", "fold", "score").equals(theirs.select("tomo_id", "fold", "score"))
    assert json.loads((at / "runs" / "imported" / "score.json").read_text())["per_fold_epochs"] == {"0": None, "1": None}


def test_a_fold_model_that_trained_on_its_held_out_fold_is_refused(at, capsys):
    """Swapped checkpoints each 'know' the tomograms they would score: scoring them would leak."""
    out = kernel_outputs(at, "swapped", swap=True)
    assert main(["local-score", "--data", "comp", "--run", "leaky", "--from-folds", str(out)]) == 2
    assert "trained with other folds" in capsys.readouterr().err
    assert not (at / "runs" / "leaky" / "score.json").exists()


def test_predict_without_a_run_lists_the_runs(at, capsys):
    assert main(["predict", "--data", "comp"]) == 2
    assert "runs: " in capsys.readouterr().err


def test_a_bad_fold_number_is_one_line(at, capsys):
    assert main(["train", "--data", "comp", "--fold", "7", "--run", "f7", "--preset", "cpu",
                 "--config", "tiny.yaml"]) == 2
    assert "--fold 7: no such fold (the folds are [0, 1])" in capsys.readouterr().err


def test_the_gpu_preset_on_a_cpu_machine_fails_before_any_export(at, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["local-score", "--data", "comp", "--run", "gpu", "--preset", "default"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (at / "runs" / "gpu" / "export").exists()


def test_synth_and_dry_run_never_delete_what_they_did_not_write(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "preview").mkdir(parents=True)
    (mine / "preview" / "my_notes.png").write_bytes(b"x")
    assert main(["synth", "--out", str(mine), "--size", "tiny", "--n-train", "1", "--n-test", "1"]) == 2
    assert main(["dry-run", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "not written by synth" in err and "not an earlier dry run's workspace" in err
    assert (mine / "preview" / "my_notes.png").is_file()
