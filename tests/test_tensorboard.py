"""`train.tensorboard` (TENSORBOARD=1): ultralytics' TensorBoard callback writes the losses, the kit's z loss among
them, into the training's folder; off, nothing is written; asked for without the package, a one-line error comes
before any export.

Real: a tiny training (toy export, one epoch, CPU), ultralytics' own callback and SummaryWriter, tensorboard's
EventAccumulator reading the events back. One switch: ultralytics' callback module disables itself when it sees
pytest (`TESTS_RUNNING`), so the fixture imports it again with that flag off, as it is outside tests.
"""

from __future__ import annotations

import importlib
import math
import sys

import pytest

from kitlib.cli import main
from kitlib.config import KitConfig
from kitlib.model.trainer import train
from kitlib.testing import make_toy_export

LOSSES = {"train/box_loss", "train/cls_loss", "train/dfl_loss", "train/z_loss"}


def tiny_cfg(tensorboard: bool) -> KitConfig:
    train_cfg = dict(epochs=1, time_budget_s=None, batch=4, nbs=4, device="cpu", workers=0, warmup_epochs=0.0,
                     close_mosaic=0, val=False, tensorboard=tensorboard)
    return KitConfig.preset("cpu").override({"train": train_cfg, "model": {"imgsz": 64, "width": 0.125}}, "test")


@pytest.fixture
def callback_outside_pytest(monkeypatch):
    import ultralytics.utils as uu
    from ultralytics.utils.callbacks import tensorboard

    monkeypatch.setattr(uu, "TESTS_RUNNING", False)
    importlib.reload(tensorboard)
    assert tensorboard.callbacks, "ultralytics' TensorBoard callback did not load (torch.utils.tensorboard?)"
    yield
    monkeypatch.undo()
    importlib.reload(tensorboard)  # as the other tests knew it


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return make_toy_export(tmp_path_factory.mktemp("tb") / "export", n_train=4, n_val=2, size=64, negatives=1)


def events(folder):
    return sorted(folder.rglob("events.out.tfevents.*"))


def test_on_the_z_loss_is_logged_beside_box_cls_dfl(export, tmp_path, callback_outside_pytest):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fold = tmp_path / "runs" / "tb" / "fold0"
    train(export, tiny_cfg(tensorboard=True), fold)
    assert [p.parent for p in events(tmp_path)] == [fold]  # in the fold's own folder, beside results.csv
    logged = EventAccumulator(str(fold))
    logged.Reload()
    scalars = set(logged.Tags()["scalars"])
    assert LOSSES <= scalars, scalars
    assert {"val/z_loss", "metrics/dz_med(slices)"} <= scalars  # the validator's, after the last epoch
    (z,) = logged.Scalars("train/z_loss")
    assert z.step == 1 and math.isfinite(z.value)


def test_off_writes_no_events(export, tmp_path, callback_outside_pytest):
    fold = tmp_path / "runs" / "plain" / "fold0"
    train(export, tiny_cfg(tensorboard=False), fold)
    assert (fold / "results.csv").is_file() and events(tmp_path) == []


def test_without_the_package_one_line_says_how_to_install_it_before_any_export(tmp_path, monkeypatch, capsys):
    from kitlib.data.synth import synthesize

    synthesize(tmp_path / "data", n_train=4, n_test=1, size="tiny", progress=False)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: find_spec and import see nothing
    run = tmp_path / "runs" / "tb"
    rc = main(["local-score", "--data", str(tmp_path / "data"), "--run", str(run), "--preset", "cpu",
               "--set", "train.tensorboard=true"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("error: train.tensorboard: the tensorboard package is not installed: "
                               "pip install 'kitlib[tensorboard]'")
    assert not (run / "export").exists() and not list(run.glob("fold[0-9]*"))
