"""3-channel YOLOv8 weights adapted to the 5-channel z-head model; checkpoint errors (fast, CPU)."""

from __future__ import annotations

import re

import pytest
import torch
from timm.models import adapt_input_conv

from kitlib.data.errors import DataError
from kitlib.model.build import FIRST_CONV, build_model, load_3ch_weights
from kitlib.model.detector import ZDetector
from ultralytics.nn.tasks import DetectionModel  # after kitlib.model: runtime.prepare() ran first


@pytest.fixture(scope="module")
def yolo3_pt(tmp_path_factory):
    """A local 3-channel, 80-class YOLOv8n checkpoint in ultralytics' format (what `yolov8n.pt` looks like)."""
    torch.manual_seed(0)
    src = DetectionModel("yolov8n.yaml", ch=3, nc=80, verbose=False)
    for p in src.parameters():  # distinct values so copies are recognisable
        p.data.normal_()
    path = tmp_path_factory.mktemp("w3") / "yolov8n-local.pt"
    torch.save({"model": src.half(), "ema": None, "train_args": {}, "epoch": -1, "version": "8.4.190"}, path)
    return path, {k: v.float() for k, v in src.state_dict().items()}


def test_first_conv_is_timm_adaptation_and_rest_is_copied(yolo3_pt):
    path, src = yolo3_pt
    model = build_model("n", channels=5, nc=1)
    counts = load_3ch_weights(model, path, verbose=False)
    sd = model.state_dict()

    expected = adapt_input_conv(5, src[FIRST_CONV].clone())
    assert sd[FIRST_CONV].shape == (16, 5, 3, 3)
    assert torch.allclose(sd[FIRST_CONV], expected)

    for key in ("model.2.cv1.conv.weight", "model.9.cv2.bn.running_var", "model.22.cv2.0.2.weight", "model.22.dfl.conv.weight"):
        assert torch.equal(sd[key], src[key]), key
    # the class branch's hidden layers transfer too (ultralytics rebuilds them at the source's width)
    assert torch.equal(sd["model.22.cv3.0.0.conv.weight"], src["model.22.cv3.0.0.conv.weight"])
    # the last class conv (80 -> 1 classes) and the z branch cannot come from a 3-channel detector
    assert "model.22.cv3.0.2.weight" in counts["skipped"]
    assert any(k.startswith("model.22.cv4.") for k in counts["skipped"])
    assert all(re.match(r"model\.22\.(cv4\.|cv3\.\d\.2\.)", k) for k in counts["skipped"]), counts["skipped"]
    assert counts["loaded"] + len(counts["skipped"]) == counts["total"]

    model.eval()
    with torch.no_grad():
        y, _ = model(torch.rand(1, 5, 64, 64))
    assert y.shape[1] == 6


def test_missing_and_corrupt_weights_name_the_file(tmp_path):
    model = build_model("n")
    missing = tmp_path / "nope.pt"
    with pytest.raises(DataError, match="nope.pt"):
        load_3ch_weights(model, missing)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        load_3ch_weights(model, junk)


def test_detector_rejects_non_kit_checkpoints(tmp_path, yolo3_pt):
    path, _ = yolo3_pt
    with pytest.raises(DataError, match="not a kit z-head checkpoint"):
        ZDetector.load(path)
    with pytest.raises(DataError, match="missing.pt"):
        ZDetector.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(DataError, match="junk.pt"):
        ZDetector.load(junk)
