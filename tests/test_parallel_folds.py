"""Folds trained side by side on the CPU (`train.parallel_folds`): the same models as one after another with the same
threads, each fold's output in its own log, and a fold that fails named with its log (real 1-epoch training)."""

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


def test_side_by_side_folds_train_the_models_one_after_another_would(comp, tmp_path, capsys):
    data, records, folds = comp
    cfg = KitConfig.preset("cpu").override(TINY)
    parallel = train_folds(data, RunDir(tmp_path / "side"), [0, 1], cfg, folds, records)
    out = capsys.readouterr().out
    assert "training folds 0, 1 side by side (2 at a time, " in out and "fold 0: done" in out
    for fold in (0, 1):
        log = (tmp_path / "side" / f"fold{fold}" / "train.log").read_text()
        assert "Starting training for 1 epochs" in log  # ultralytics' own output went to the fold's log

    threads = torch.get_num_threads()
    runtime.prepare(threads=max(1, threads // 2))  # the share each side-by-side fold had (ultralytics reads it here)
    try:
        one_by_one = train_folds(data, RunDir(tmp_path / "seq"), [0, 1], cfg.override({"train": {"parallel_folds": 1}}),
                                 folds, records)
    finally:
        runtime.prepare(threads=threads)
    for fold in (0, 1):
        a, b = weights(parallel[fold]), weights(one_by_one[fold])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"fold {fold} differs"


def test_a_fold_that_fails_is_named_with_its_log(comp, tmp_path):
    data, records, folds = comp
    cfg = KitConfig.preset("cpu").override({**TINY, "model": {**TINY["model"], "weights": str(tmp_path / "no.pt")}})
    with pytest.raises(DataError, match=r"fold \d: training failed: .*no\.pt.*\(its log: .*train\.log\)") as e:
        train_folds(data, RunDir(tmp_path / "run"), [0, 1], cfg, folds, records)
    assert "\n" not in str(e.value)
