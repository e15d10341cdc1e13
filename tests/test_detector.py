"""ZDetector's letterbox and its inverse map, with a stand-in network (no training): a box found in the letterboxed
input must come back at the same place in the original pixels, on slices of any aspect ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kitlib.model.detector import ZDetector

Z_SPAN = 4


class CentroidNet(torch.nn.Module):
    """Stand-in for the network: one anchor, a box on the intensity centroid of the bright blob in the centre channel
    of its (letterboxed) input, pixel i covering [i, i + 1); zenc 0.75 (dz = +z_span / 2)."""

    def __init__(self):
        super().__init__()
        self.model = torch.nn.ModuleList([torch.nn.Identity()])
        self.model[-1].nc = 1
        self.register_buffer("stride", torch.tensor([32.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (x[:, 2].float() - 0.5).clamp(min=0)  # the grey padding (0.45) and the black background weigh nothing
        ys = torch.arange(x.shape[2], dtype=torch.float32)[:, None] + 0.5
        xs = torch.arange(x.shape[3], dtype=torch.float32)[None, :] + 0.5
        mass = w.sum((1, 2))
        cx, cy = (w * xs).sum((1, 2)) / mass, (w * ys).sum((1, 2)) / mass
        const = torch.ones_like(cx)
        return torch.stack([cx, cy, 10 * const, 10 * const, 0.9 * const, 0.75 * const], 1)[..., None]


def blob_stacks(h: int, w: int, centres: list[tuple[float, float]], sigma: float = 4.0) -> np.ndarray:
    """(B, h, w, 5) uint8 stacks, each with a Gaussian blob centred at continuous (x, y)."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    out = np.zeros((len(centres), h, w, 5), np.uint8)
    for b, (cx, cy) in enumerate(centres):
        out[b] = np.rint(255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)))[..., None]
    return out


@pytest.mark.parametrize("h, w, imgsz", [(100, 300, 128), (300, 100, 128), (93, 93, 64), (70, 50, 96)])
def test_boxes_map_back_to_original_pixels(h, w, imgsz):
    meta = {"stack_stride": 2, "z_span": Z_SPAN, "channels": 5, "imgsz": imgsz}
    detector = ZDetector(CentroidNet(), meta)
    centres = [(0.8 * w, 0.8 * h), (0.3 * w + 0.25, 0.6 * h - 0.5), (w / 2, h / 2)]
    results = detector.predict(blob_stacks(h, w, centres), conf=0.1)
    for (cx, cy), res in zip(centres, results):
        assert res.shape == (1, 6)
        np.testing.assert_allclose(res[0, :2], [cx, cy], atol=0.1)
        assert res[0, 4] == pytest.approx(0.9) and res[0, 5] == pytest.approx(Z_SPAN / 2)


def test_cpu_batches_run_in_chunks_in_order(monkeypatch):
    """A batch larger than a CPU chunk goes through in chunks; results come back one per stack, in order."""
    from kitlib.model import detector as detector_module

    assert detector_module.cpu_chunk(640) == 4 and detector_module.cpu_chunk(160) == 64
    monkeypatch.setattr(detector_module, "CPU_CHUNK_PIXELS", 3 * 96 * 96)  # chunks of 3 stacks at 96 px
    h, w = 60, 80
    detector = ZDetector(CentroidNet(), {"stack_stride": 2, "z_span": Z_SPAN, "channels": 5, "imgsz": 96})
    centres = [(10.0 + 6 * i, 12.0 + 4 * i) for i in range(2 * 3 + 1)]
    results = detector.predict(blob_stacks(h, w, centres), conf=0.1)
    assert len(results) == len(centres)
    for (cx, cy), res in zip(centres, results):
        np.testing.assert_allclose(res[0, :2], [cx, cy], atol=0.1)


def test_a_model_trained_on_crops_predicts_at_each_slices_own_size():
    """Crops are full resolution, so whole slices go in padded to the stride, never resized (a motor keeps the pixel
    size it had in training); an explicit imgsz still resizes."""
    seen = []
    net = CentroidNet()
    net.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[2:])))
    detector = ZDetector(net, {"stack_stride": 2, "z_span": Z_SPAN, "channels": 5, "imgsz": 48, "crop": 48})
    assert detector.size_name() == "own size (48 px crops)"
    centres = [(20.5, 70.0), (50.0, 12.25)]
    results = detector.predict(blob_stacks(100, 70, centres), conf=0.1)
    assert seen == [(128, 96)]  # 100 x 70 padded to multiples of 32
    for (cx, cy), res in zip(centres, results):
        np.testing.assert_allclose(res[0, :2], [cx, cy], atol=0.1)
    detector.predict(blob_stacks(100, 70, centres), conf=0.1, imgsz=64)
    assert seen[-1] == (64, 64)
