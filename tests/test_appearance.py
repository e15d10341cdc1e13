"""Image-space augmentation of multi-channel training stacks (`kitlib.model.appearance`), and where the trainer
puts it."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from kitlib.config import KitConfig
from kitlib.model import appearance
from kitlib.model.appearance import StackAppearance, restyle


def _image(seed: int = 0, same_channels: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if same_channels:
        return np.repeat(rng.integers(30, 220, (64, 64, 1), dtype=np.uint8), 5, axis=2)
    return rng.integers(30, 220, (64, 64, 5), dtype=np.uint8)


def _seeded_restyle(img: np.ndarray, seed: int) -> np.ndarray:
    random.seed(seed)
    np.random.seed(seed)
    return restyle(img)


def test_restyle_keeps_shape_and_type_and_repeats_for_a_seed():
    img = _image()
    a, b, c = _seeded_restyle(img, 1), _seeded_restyle(img, 1), _seeded_restyle(img, 2)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, img)


def test_tone_curve_identity_gamma_and_contrast():
    assert np.array_equal(appearance._tone_curve(1.0, 1.0, 0.0), np.arange(256))
    assert appearance._tone_curve(1.4, 1.0, 0.0)[128] < 128 < appearance._tone_curve(0.7, 1.0, 0.0)[128]
    high = appearance._tone_curve(1.0, 1.3, 0.0)
    assert high[64] < 64 and high[192] > 192  # more contrast about mid-grey
    assert np.all(np.diff(appearance._tone_curve(1.4, 0.7, 15.0).astype(int)) >= 0)  # monotone: no grey inverts


def test_one_draw_for_all_channels(monkeypatch):
    """Neighbouring slices of one tomogram get the same contrast and blur (noise and JPEG act per pixel, so off)."""
    monkeypatch.setattr(appearance, "P_NOISE", 0.0)
    monkeypatch.setattr(appearance, "P_JPEG", 0.0)
    monkeypatch.setattr(appearance, "P_BLUR", 1.0)
    out = _seeded_restyle(_image(same_channels=True), 3)
    assert all(np.array_equal(out[..., 0], out[..., c]) for c in range(1, 5))


def test_jpeg_recompression_changes_each_channel_a_little():
    img = _image()
    out = appearance._recompress(img, 40)
    assert out.shape == img.shape
    diff = np.abs(out.astype(int) - img.astype(int)).mean(axis=(0, 1))
    assert np.all(diff > 0) and np.all(diff < 60)


def test_probability_zero_leaves_the_image_alone():
    img = _image()
    assert StackAppearance(0.0)({"img": img})["img"] is img
    random.seed(0)
    assert not np.array_equal(StackAppearance(1.0)({"img": img})["img"], img)


@pytest.mark.parametrize("p", [0.0, 0.7])
def test_trainer_inserts_it_before_formatting_and_again_after_mosaic_closes(tmp_path, p):
    """Real ultralytics dataset and transforms on a toy export; the probability travels on the model."""
    from kitlib.model.build import ZModel
    from kitlib.model.trainer import ZTrainer, train_overrides
    from kitlib.testing import make_toy_export

    data_yaml = make_toy_export(tmp_path / "export", n_train=4, n_val=2, size=64)
    cfg = KitConfig.preset("cpu").override({"model": {"imgsz": 64}, "train": {"appearance": p}}, "test")
    trainer = ZTrainer(overrides=train_overrides(data_yaml, cfg, tmp_path / "run"))
    trainer.model = ZModel("yolov8n.yaml", ch=5, nc=1, verbose=False)
    trainer.model.appearance = cfg.train.appearance

    def inserted(dataset) -> list[int]:
        steps = dataset.transforms.transforms
        return [i for i, t in enumerate(steps) if isinstance(t, StackAppearance)]

    dataset = trainer.build_dataset(str(tmp_path / "export" / "images" / "train"), mode="train", batch=2)
    n = len(dataset.transforms.transforms)
    assert inserted(dataset) == ([n - 2] if p else [])  # just before ultralytics' Format step
    assert inserted(trainer.build_dataset(str(tmp_path / "export" / "images" / "val"), mode="val", batch=2)) == []
    trainer.train_loader = SimpleNamespace(dataset=dataset)
    trainer._close_dataloader_mosaic()  # rebuilds the transforms without mosaic
    assert inserted(dataset) == ([len(dataset.transforms.transforms) - 2] if p else [])
    if p:
        assert dataset[0]["img"].shape[0] == 5  # a sample goes through the whole pipeline, 5 channels kept
