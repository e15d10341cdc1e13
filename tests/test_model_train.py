"""Train the z-head model on a tiny synthetic export, offline; reload and predict (CPU, about a minute).

The training runs once per module, in-process, under a socket guard that records (and refuses) every connection
attempt: the kit must never touch the network (ultralytics' fonts, AMP check, telemetry, hub, downloads).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from kitlib.config import KitConfig, TrainConfig
from kitlib.data.errors import DataError
from kitlib.model.detector import ZDetector
from kitlib.testing import make_toy_export
from kitlib.model.trainer import epochs_trained, train, train_overrides

STACK_STRIDE = 2
Z_SPAN = 2 * STACK_STRIDE
IMGSZ = 96


@contextlib.contextmanager
def socket_guard():
    """Refuse and record every outgoing connection or name lookup."""
    attempts: list[tuple[str, str]] = []

    def refuse(name):
        def _refuse(*args, **kwargs):
            attempts.append((name, repr(args[1:3] if name.startswith("connect") else args[:2])))
            raise OSError(f"network access attempted in a test: {name}{args[1:3] if name.startswith('connect') else args[:2]}")

        return _refuse

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse("connect"))
        mp.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
        mp.setattr(socket, "create_connection", refuse("create_connection"))
        mp.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        yield attempts


def tiny_cfg() -> KitConfig:
    """Half yolov8n's channels (width 0.125): faster, and checks that the width reaches the trainer."""
    train = dict(epochs=2, time_budget_s=None, batch=4, nbs=64, device="cpu", workers=0, patience=100, close_mosaic=1,
                 warmup_epochs=3.0, val=True, scale=0.5, flipud=0.0, cls_gain=0.5)
    return KitConfig.preset("cpu").override({"train": train, "model": {"imgsz": IMGSZ, "width": 0.125}}, "test")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_train")
    data = make_toy_export(root / "export", n_train=12, n_val=4, size=96, stack_stride=STACK_STRIDE)
    cfg = tiny_cfg()
    with socket_guard() as attempts:
        t0 = time.perf_counter()
        best = train(data, cfg, root / "runs" / "tiny")
        seconds = time.perf_counter() - t0
    print(f"tiny training (12 images, 2 epochs, imgsz {IMGSZ}, CPU): {seconds:.1f}s")
    return {"root": root, "data": data, "cfg": cfg, "best": best, "attempts": list(attempts)}


def test_socket_guard_records_attempts():
    """The guard does catch an attempt, so an empty record below means none happened."""
    with socket_guard() as attempts:
        with pytest.raises(OSError):
            socket.create_connection(("192.0.2.1", 80), timeout=0.1)
        with pytest.raises(OSError):
            socket.socket().connect(("192.0.2.1", 80))
    assert [name for name, _ in attempts] == ["create_connection", "connect"]


def test_training_makes_no_network_attempt(trained):
    assert trained["attempts"] == []


def test_training_outputs_checkpoint_results_and_kit_meta(trained):
    best = trained["best"]
    run_dir = trained["root"] / "runs" / "tiny"
    assert best == run_dir / "weights" / "best.pt" and best.is_file()
    header = (run_dir / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train/box_loss", "train/z_loss", "val/z_loss", "metrics/mAP50(B)", "metrics/dz_med(slices)"} <= set(header)
    assert (run_dir / "results.png").is_file()
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    meta = ckpt["kit_meta"]
    assert {k: meta[k] for k in ("stack_stride", "z_span", "channels", "imgsz")} == {
        "stack_stride": STACK_STRIDE, "z_span": Z_SPAN, "channels": 5, "imgsz": IMGSZ,
    }
    assert meta["kit_version"]
    assert ckpt["model"].kit_meta == meta  # the model carries it too (last.pt during training has only this)
    assert ckpt["model"].model[0].conv.out_channels == 8  # cfg.model.width 0.125 (yolov8n: 16)
    assert "crop" not in meta and ZDetector.load(best).size_name() == f"{IMGSZ} px"  # whole slices: resized


def test_an_export_of_crops_makes_a_model_that_predicts_at_own_size(trained, tmp_path):
    data = yaml.safe_load(trained["data"].read_text())
    crops = tmp_path / "dataset.yaml"
    crops.write_text(yaml.safe_dump({**data, "crop": IMGSZ}))
    best = train(crops, tiny_cfg().override({"train": {"epochs": 1}}), tmp_path / "run")
    assert torch.load(best, map_location="cpu", weights_only=False)["kit_meta"]["crop"] == IMGSZ
    assert ZDetector.load(best).size_name() == f"own size ({IMGSZ} px crops)"


def _stacks(n: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, h, w, 5), dtype=np.uint8)


def test_time_budget_ends_training_and_a_rerun_starts_a_fresh_log(trained):
    """500 nominal epochs in a 3 s budget: ultralytics re-estimates the count and stops; trained twice under one
    name, results.csv holds the second run only (ultralytics alone would append to the first)."""
    cfg = tiny_cfg().override({"train": {"epochs": 500, "time_budget_s": 3.0}})
    for _ in range(2):
        best = train(trained["data"], cfg, trained["root"] / "runs" / "timed")
    epochs = epochs_trained(best)
    rows = (best.parent.parent / "results.csv").read_text().splitlines()[1:]
    assert 1 <= epochs < 500
    assert [int(float(r.split(",")[0])) for r in rows] == list(range(1, epochs + 1))
    assert torch.load(best, map_location="cpu", weights_only=False)["kit_meta"]["imgsz"] == IMGSZ


def test_predict_offline_in_process(trained):
    with socket_guard() as attempts:
        det = ZDetector.load(trained["best"])
        single = det.predict(_stacks(1, 96, 96)[0], conf=0.0)
        batch = det.predict(_stacks(2, 80, 120), conf=0.0)
    assert attempts == []
    assert (det.stack_stride, det.z_span, det.channels, det.imgsz) == (STACK_STRIDE, Z_SPAN, 5, IMGSZ)
    assert len(single) == 1 and len(batch) == 2
    for res, (h, w) in [(single[0], (96, 96)), (batch[0], (80, 120)), (batch[1], (80, 120))]:
        assert res.dtype == np.float32 and res.ndim == 2 and res.shape[1] == 6
        assert len(res) > 0  # conf=0 keeps the top detections even for an untrained model
        x, y, bw, bh, conf, dz = res.T
        assert np.all((x >= 0) & (x <= w) & (y >= 0) & (y <= h) & (bw >= 0) & (bh >= 0))
        assert np.all((x - bw / 2 >= -1e-3) & (x + bw / 2 <= w + 1e-3) & (y + bh / 2 <= h + 1e-3))
        assert np.all((conf >= 0) & (conf <= 1))
        assert np.all(np.abs(dz) <= Z_SPAN)
        assert np.all(np.diff(conf) <= 1e-6)  # most confident first


def test_predict_rejects_wrong_channel_count(trained):
    det = ZDetector.load(trained["best"])
    with pytest.raises(ValueError, match="5"):
        det.predict(np.zeros((64, 64, 3), dtype=np.uint8))


def test_checkpoint_reloads_in_a_fresh_process(trained, tmp_path):
    code = f"""
import json, numpy as np
from kitlib.model import ZDetector
det = ZDetector.load({str(trained['best'])!r})
out = det.predict(np.random.default_rng(1).integers(0, 255, (96, 96, 5), dtype=np.uint8), conf=0.0)
print(json.dumps({{"n": len(out), "shape": list(out[0].shape), "stride": det.stack_stride, "z_span": det.z_span}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n"] == 1 and result["shape"][1] == 6 and result["shape"][0] > 0
    assert (result["stride"], result["z_span"]) == (STACK_STRIDE, Z_SPAN)


def test_resume_without_checkpoint_is_a_clear_error(trained):
    with pytest.raises(DataError, match="no checkpoint to resume"):
        train(trained["data"], trained["cfg"], trained["root"] / "runs" / "never-ran", resume=True)


def test_export_without_z_keys_is_rejected(trained, tmp_path):
    data = yaml.safe_load(trained["data"].read_text())
    del data["z_span"]
    bad = tmp_path / "dataset.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match="z_span"):
        train(bad, trained["cfg"], tmp_path / "bad")


def test_augmentation_and_optimizer_settings_reach_the_ultralytics_trainer(tmp_path):
    cfg = KitConfig(train=TrainConfig(scale=0.2, translate=0.05, fliplr=0.3, flipud=0.5, mosaic=0.7, optimizer="AdamW",
                                      lr0=0.004, cls_gain=1.5, time_budget_s=420.0))
    args = train_overrides(tmp_path / "dataset.yaml", cfg, tmp_path / "run")
    keys = ("scale", "translate", "fliplr", "flipud", "mosaic", "optimizer", "lr0", "cls", "time")
    assert {k: args[k] for k in keys} == {
        "scale": 0.2, "translate": 0.05, "fliplr": 0.3, "flipud": 0.5, "mosaic": 0.7, "optimizer": "AdamW", "lr0": 0.004,
        "cls": 1.5, "time": 420.0 / 3600}
    assert train_overrides(tmp_path / "dataset.yaml", KitConfig(), tmp_path / "run")["time"] is None  # fixed epochs


def test_training_length_in_words():
    assert KitConfig.preset("cpu").train.length() == "38 epochs"
    assert KitConfig(train=TrainConfig(time_budget_s=420.0)).train.length() == "7 min (epochs fitted to the time)"
