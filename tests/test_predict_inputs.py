"""Everything that is not a tomogram is checked before the first tomogram (checkpoints, labels, output path), and a
split where every tomogram fails says so once and exits non-zero. Untrained tiny checkpoints; real files."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest

from kitlib.cli import main
from kitlib.data.errors import DataError
from kitlib.data.labels import load_labels
from kitlib.data.submission import read_submission
from kitlib.data.synth import synthesize
from kitlib.infer.predictor import Predictor
from kitlib.testing import tiny_run, untrained_checkpoint


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict_inputs")
    synthesize(root / "comp", 3, 2, size="tiny", seed=4, progress=False)
    tiny_run(root / "runs" / "t")
    return root


@pytest.fixture
def at(work, monkeypatch, tmp_path) -> Path:
    """A fresh copy of the work folder to break, as the working directory."""
    copy = Path(shutil.copytree(work, tmp_path / "w"))
    monkeypatch.chdir(copy)
    return copy


@pytest.mark.parametrize("checkpoint, problem", [
    (dict(channels=3), "a 3-channel model; the kit's stacks have preprocess.channels = 5"),
    (dict(stack_stride=3), "the checkpoints disagree on the stack stride"),
])
def test_checkpoints_that_do_not_fit_the_run_are_refused_before_any_tomogram(at, capsys, checkpoint, problem):
    extra = untrained_checkpoint(at / "runs" / "t" / "fold1" / "weights" / "best.pt", **checkpoint)
    assert main(["predict", "--data", "comp", "--run", "t"]) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1, err
    assert str(extra) in err or "runs/t" in err
    assert not (at / "runs" / "t" / "submission.csv").exists()


def test_a_two_class_head_is_refused(at):
    import torch

    from kitlib.model.build import build_model, make_kit_meta

    path = at / "two.pt"
    model = build_model("n", nc=2)
    model.kit_meta = make_kit_meta(2, 4, 5, 96)
    torch.save({"model": model, "kit_meta": model.kit_meta}, path)
    with pytest.raises(DataError, match=f"{path}: a 2-class detector"):
        Predictor.from_run([path], config=at / "runs" / "t" / "config.yaml", presence=at / "runs" / "t" / "presence.json")


@pytest.mark.parametrize("damage", ["other columns", "empty spacing"])
def test_labels_that_cannot_give_a_test_spacing_do_not_stop_predict(at, damage):
    """train_labels.csv is read only for the assumed test spacing: the config's is used instead."""
    path = at / "comp" / "train_labels.csv"
    if damage == "other columns":
        path.write_text("tomo_id,something\nx,1\n")
    else:
        pl.read_csv(path).with_columns(pl.lit(None, pl.Float64).alias("Voxel spacing")).write_csv(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", "--data", "comp", "--run", "t"]) == 0
    assert len(read_submission(at / "runs" / "t" / "submission.csv")) == 2


@pytest.mark.parametrize("value, problem", [
    ("0", "Voxel spacing must be positive, got 0"),
    ("", "is not a number"),
    ("abc", "Voxel spacing 'abc' is not a number"),
])
def test_a_bad_training_spacing_is_an_error_naming_file_and_line(tmp_path, value, problem):
    path = tmp_path / "train_labels.csv"
    synthesize(tmp_path / "c", 2, 0, size="tiny", seed=0, progress=False)
    df = pl.read_csv(tmp_path / "c" / "train_labels.csv", infer_schema_length=0)
    df.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(value)).otherwise(pl.col("Voxel spacing"))
                    .alias("Voxel spacing")).write_csv(path)
    with pytest.raises(DataError) as e:
        load_labels(path)
    assert str(e.value).startswith(f"{path}: line 3 (") and problem in str(e.value), e.value


def test_an_output_path_below_a_file_is_refused_before_any_tomogram(at, capsys):
    (at / "afile").write_text("x")
    assert main(["predict", "--data", "comp", "--run", "t", "--out", "afile/sub.csv"]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err


def test_every_tomogram_failing_is_said_once_and_exits_nonzero(at, capsys):
    for folder in (at / "comp" / "test").iterdir():
        for jpg in folder.glob("*.jpg"):
            jpg.write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="EVERY tomogram failed"):
        assert main(["predict", "--data", "comp", "--run", "t"]) == 1
    assert "error: every tomogram failed" in capsys.readouterr().err
    submission = read_submission(at / "runs" / "t" / "submission.csv")  # still complete, all -1
    assert len(submission) == 2 and (submission["Motor axis 0"] == -1).all()
