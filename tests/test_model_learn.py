"""z travels with its box through ultralytics' augmentations, and the z loss learns (CPU, tiny data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kitlib.model.build import build_model
from kitlib.testing import make_toy_export
from ultralytics.cfg import get_cfg  # after kitlib.model: runtime.prepare() ran first
from ultralytics.data import build_yolo_dataset
from ultralytics.data.utils import check_det_dataset


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_learn")
    return check_det_dataset(str(make_toy_export(root, n_train=12, n_val=2, size=96, stack_stride=2, seed=3)))


def dataset(data, mode: str, **hyp):
    cfg = get_cfg(overrides={"task": "pose", "imgsz": 96, **hyp})
    return build_yolo_dataset(cfg, data["train"], 4, data, mode=mode, stride=32)


def test_z_stays_with_its_box_through_augmentation(export):
    ds = dataset(export, "train", mosaic=1.0, degrees=20.0, translate=0.2, scale=0.5, fliplr=0.5, flipud=0.5)
    label_z = {round(float(z), 5) for lb in ds.labels for z in lb["keypoints"][:, 0, 2]}
    assert len(label_z) == 10  # 12 images, 2 without a motor
    kept = lost = multi = 0
    for i in range(36):
        sample = ds[i % len(ds)]
        boxes, kpts = sample["bboxes"].numpy(), sample["keypoints"].numpy()
        assert kpts.shape == (len(boxes), 1, 3)
        multi += len(boxes) > 1
        for (cx, cy, w, h), (kx, ky, z) in zip(boxes, kpts[:, 0]):
            if z == 0:  # the point left the frame: z unknown, ignored by the loss
                lost += 1
                continue
            kept += 1
            assert round(float(z), 5) in label_z  # never altered, only moved with the box
            assert cx - w / 2 - 1e-3 <= kx <= cx + w / 2 + 1e-3 and cy - h / 2 - 1e-3 <= ky <= cy + h / 2 + 1e-3
    assert multi > 0  # mosaic put several boxes in one sample: each point sits in its own box
    assert kept > lost


def test_z_loss_decreases_on_tiny_data(export):
    torch.manual_seed(0)
    ds = dataset(export, "val")  # no augmentation: the same batch every step
    batch = ds.collate_fn([ds[i] for i in range(8)])
    batch["img"] = batch["img"].float() / 255
    model = build_model("n")
    model.args = get_cfg()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    z_losses = []
    for _ in range(15):
        loss, items = model.loss(batch)
        z_losses.append(float(items["z_loss"]))
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    assert z_losses[0] > 0
    assert np.mean(z_losses[-3:]) < 0.7 * z_losses[0], z_losses



def test_fresh_model_assigns_small_boxes(tmp_path):
    """A from-scratch model's first loss already trains the boxes: with ultralytics' flat DFL init (boxes ~120 px on
    P3) the assigner's IoU^6 underflows on 10 px boxes, box_loss is ~1e-6 and training never starts."""
    small = check_det_dataset(str(make_toy_export(tmp_path, n_train=8, n_val=8, size=96, stack_stride=2, box=10)))
    ds = dataset(small, "val")
    batch = ds.collate_fn([ds[i] for i in range(8)])
    batch["img"] = batch["img"].float() / 255
    model = build_model("n")
    model.args = get_cfg()
    _, items = model.loss(batch)
    assert float(items["box_loss"]) > 0.1, items
