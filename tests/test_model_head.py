"""The 5-channel YOLOv8 z-head model: shapes, z range, head surgery, z encoding, loss (fast, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kitlib.model.build import build_model
from kitlib.model.head import ZHead
from kitlib.preprocess.zcode import ZENC_MIN, decode_zenc, encode_dz
from ultralytics.utils import DEFAULT_CFG  # after kitlib.model: runtime.prepare() ran first


@pytest.fixture(scope="module")
def model():
    return build_model("n", channels=5, nc=1)


def n_anchors(h: int, w: int, strides=(8, 16, 32)) -> int:
    return sum((h // s) * (w // s) for s in strides)


@pytest.mark.parametrize("shape", [(1, 5, 64, 64), (2, 5, 128, 128)])
def test_inference_output_has_z_per_anchor(model, shape):
    model.eval()
    x = torch.rand(*shape)
    with torch.no_grad():
        y, raw = model(x)
    nc = model.model[-1].nc
    assert nc == 1
    assert y.shape == (shape[0], 4 + nc + 1, n_anchors(*shape[2:]))  # xywh, class score, z for every anchor
    z = y[:, -1]
    assert torch.all(z > 0) and torch.all(z < 1)  # sigmoid: zenc range (0, 1)
    assert raw["z"].shape == (shape[0], 1, n_anchors(*shape[2:]))


def test_training_mode_returns_z_in_dict(model):
    model.train()
    out = model(torch.rand(2, 5, 64, 64))
    assert set(out) >= {"boxes", "scores", "feats", "z"}
    assert out["z"].shape == (2, 1, n_anchors(64, 64))
    model.eval()


def test_head_replaced_in_place(model):
    head = model.model[-1]
    assert isinstance(head, ZHead)
    assert head.i == len(model.model) - 1 and head.f == [15, 18, 21]
    assert torch.equal(head.stride, torch.tensor([8.0, 16.0, 32.0]))
    assert model.stride is head.stride or torch.equal(model.stride, head.stride)
    assert model.model[0].conv.in_channels == 5
    assert len(head.cv4) == head.nl and head.cv4[0][-1].out_channels == 1


@pytest.mark.parametrize("scale", ["s"])
def test_other_scales_build(scale):
    m = build_model(scale).eval()
    with torch.no_grad():
        y, _ = m(torch.rand(1, 5, 64, 64))
    assert y.shape[1] == 6


def test_width_overrides_the_scales_channel_multiple():
    narrow, base = build_model("n", width=0.125).eval(), build_model("n").eval()
    assert (narrow.model[0].conv.out_channels, base.model[0].conv.out_channels) == (8, 16)
    assert len(narrow.model) == len(base.model)  # same depth and layout, fewer channels
    with torch.no_grad():
        y, _ = narrow(torch.rand(1, 5, 64, 64))
    assert y.shape == (1, 6, n_anchors(64, 64))
    with pytest.raises(ValueError, match="width"):
        build_model("n", width=0.0)


def test_z_encoding_roundtrip_and_clip():
    z_span = 16
    dz = np.array([-15.0, -3.5, 0.0, 7.25, 16.0])
    assert np.allclose(decode_zenc(encode_dz(dz, z_span), z_span), dz)
    assert encode_dz(-100, z_span) == ZENC_MIN  # never 0: 0 means "unknown"
    assert encode_dz(100, z_span) == 1.0
    with pytest.raises(ValueError):
        encode_dz(1.0, 0)


def _loss_batch(zenc: float) -> dict:
    return {
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.zeros(2, 1),
        "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.3, 0.6, 0.25, 0.25]]),
        "keypoints": torch.tensor([[[0.5, 0.5, zenc]], [[0.3, 0.6, zenc]]]),
    }


def test_loss_has_z_term_and_ignores_unknown_z():
    model = build_model("n")
    model.args = DEFAULT_CFG  # the loss gains (box, cls, dfl)
    model.train()
    x = torch.rand(2, 5, 64, 64)
    loss, items = model.loss(_loss_batch(0.9), model(x))
    assert list(items) == ["box_loss", "cls_loss", "dfl_loss", "z_loss"]
    assert items["z_loss"] > 0
    loss.sum().backward()
    assert model.model[-1].cv4[0][-1].weight.grad is not None
    model.zero_grad()
    _, items0 = model.loss(_loss_batch(0.0), model(x))  # zenc == 0: z unknown, no z loss
    assert items0["z_loss"] == 0
