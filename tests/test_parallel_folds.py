"""Folds trained and predicted side by side on the CPU (`train.parallel_folds`): the same models and held-out
candidates as one after another with the same threads, each fold's output in its own log, and a fold that fails named
with its log (real 1-epoch training)."""

from __future__ import annotations

import pytest
import torch

from kitlib import runtime
from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.data.folds import resolve_folds
from kitlib.data.labels import load_labels
from kitlib.data.layout import CompetitionData
from kitlib.data.synth import synthesize
from kitlib.evaluation.local_score import predict_held_out
from kitlib.infer.predictor import Predictor
from kitlib.model import train_folds
from kitlib.model.build import read_checkpoint
from kitlib.run import RunDir

TINY = {
    "preprocess": {"stack_stride": 2, "grid": "size", "resize_to": 64},
    "model": {"imgsz": 64, "width": 0.125},
    "train": {"epochs": 1, "batch": 4, "workers": 0, "parallel_folds": 2},
    "tune": {"n_folds": 2},
}


@pytest.fixture(scope="module")
def comp(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel") / "comp"
    synthesize(root, n_train=6, n_test=0, size="tiny", seed=1, progress=False)
    data = CompetitionData(root)
    records = load_labels(data.labels_csv)
    folds, _ = resolve_folds(root, records, 2, 0, root.parent / "folds.csv")
    return data, records, folds


def weights(checkpoint) -> dict[str, torch.Tensor]:
    return read_checkpoint(checkpoint)["model"].float().state_dict()


def with_half_the_threads(work):
    """`work()` with the thread share each of two side-by-side folds gets (ultralytics reads it at its start)."""
    threads = torch.get_num_threads()
    runtime.prepare(threads=max(1, threads // 2))
    try:
        return work()
    finally:
        runtime.prepare(threads=threads)


@pytest.fixture(scope="module")
def one_by_one(comp, tmp_path_factory):
    """Both folds trained one after another, with the threads one side-by-side fold has."""
    data, records, folds = comp
    cfg = KitConfig.preset("cpu").override({**TINY, "train": {**TINY["train"], "parallel_folds": 1}})
    run = RunDir(tmp_path_factory.mktemp("seq") / "run")
    return with_half_the_threads(lambda: train_folds(data, run, [0, 1], cfg, folds, records))


def test_side_by_side_folds_train_the_models_one_after_another_would(comp, one_by_one, tmp_path, capsys):
    data, records, folds = comp
    cfg = KitConfig.preset("cpu").override(TINY)
    parallel = train_folds(data, RunDir(tmp_path / "side"), [0, 1], cfg, folds, records)
    out = capsys.readouterr().out
    assert "training folds 0, 1 side by side (2 at a time, " in out and "fold 0: done" in out
    for fold in (0, 1):
        log = (tmp_path / "side" / f"fold{fold}" / "train.log").read_text()
        assert "Starting training for 1 epochs" in log  # ultralytics' own output went to the fold's log
    for fold in (0, 1):
        a, b = weights(parallel[fold]), weights(one_by_one[fold])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"fold {fold} differs"


def test_side_by_side_folds_predict_what_one_after_another_would(comp, one_by_one, capsys):
    data, records, folds = comp
    cfg = KitConfig.preset("cpu").override({**TINY, "infer": {"slice_step": 2, "conf": 0.001}})
    jobs = {fold: (Predictor.from_run([one_by_one[fold]], config=cfg, need_rule=False),
                   [t for t, f in folds.items() if f == fold]) for fold in (0, 1)}
    spacings = {r.tomo_id: r.voxel_spacing for r in records}
    parallel = predict_held_out(data, jobs, spacings, parallel=2, progress=False)
    assert "fold 0, fold 1 side by side (2 at a time, " in capsys.readouterr().out
    sequential = with_half_the_threads(lambda: predict_held_out(data, jobs, spacings, parallel=1, progress=False))
    columns = ["tomo_id", "z", "y", "x", "score", "error"]
    for fold in (0, 1):
        assert parallel[fold]["tomo_id"].to_list() == jobs[fold][1]
        assert parallel[fold].select(columns).equals(sequential[fold].select(columns)), f"fold {fold} differs"
    assert any((c["score"] > 0).any() for c in parallel.values())  # something was detected, so the check means something


def test_a_fold_that_fails_is_named_with_its_log(comp, tmp_path):
    data, records, folds = comp
    cfg = KitConfig.preset("cpu").override({**TINY, "model": {**TINY["model"], "weights": str(tmp_path / "no.pt")}})
    with pytest.raises(DataError, match=r"fold \d: training failed: .*no\.pt.*\(its log: .*train\.log\)") as e:
        train_folds(data, RunDir(tmp_path / "run"), [0, 1], cfg, folds, records)
    assert "\n" not in str(e.value)
