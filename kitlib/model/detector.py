"""Inference API of a trained kit checkpoint: batched 5-channel stacks in, boxes + conf + dz out.

One forward per batch (per `cpu_chunk` stacks on the CPU): stacks are letterboxed in torch (resize so the longest side
is ``imgsz``, pad to a multiple of the model stride with ultralytics' grey 114), NMS runs with the real class count, and
boxes are mapped back to the original pixels. A model trained on full-resolution crops (`export.crop`) predicts whole
slices at their own size: padded, never resized, so a motor is as many pixels across as in training. ultralytics'
Predictor (one image at a time through its pre-processing) is not used.
"""

from __future__ import annotations

import math
from pathlib import Path

from kitlib import runtime

runtime.prepare()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ultralytics.utils import nms  # noqa: E402

from kitlib.model.build import load_kit_checkpoint  # noqa: E402
from kitlib.preprocess.zcode import decode_zenc  # noqa: E402

PAD_VALUE = 114 / 255.0  # ultralytics' letterbox grey
NMS_IOU = 0.7  # ultralytics' default `iou`
MAX_DET = 300
# On the CPU a batch goes through the model in chunks of about this many input pixels: 4 stacks at 640 px, where that
# is as fast as one big forward with a fraction of its float copies and activations in memory (a batch of 32 would
# take ~2 GB); 64 stacks at 160 px, where small chunks are slower (measured: 8.1 ms per stack at 16, 6.4 at 64).
CPU_CHUNK_PIXELS = 4 * 640 * 640


def cpu_chunk(imgsz: int) -> int:
    """Stacks per forward on the CPU at inference size `imgsz`."""
    return max(1, CPU_CHUNK_PIXELS // (int(imgsz) ** 2))


class ZDetector:
    """A loaded z-head model. Build with `ZDetector.load(path)`."""

    def __init__(self, model: torch.nn.Module, meta: dict, device: str = "cpu", half: bool = False, path=None):
        self.path = Path(path) if path is not None else None
        self.device = torch.device(_device_string(device))
        self.half = bool(half) and self.device.type == "cuda"
        self.model = model.to(self.device).eval()
        if self.half:
            self.model.half()
        self.model.to(memory_format=torch.channels_last)  # stacks arrive channels-last: ~10% faster convs on CPU
        self.meta = dict(meta)
        self.stack_stride: int = int(meta["stack_stride"])
        self.z_span = meta["z_span"]
        self.channels: int = int(meta["channels"])
        self.imgsz: int = int(meta["imgsz"])
        self.crop: int | None = meta.get("crop")
        self.nc: int = int(self.model.model[-1].nc)
        self.stride: int = max(int(self.model.stride.max()), 32)
        self.names = dict(getattr(self.model, "names", {0: "motor"}))

    @classmethod
    def load(cls, weights: str | Path, device: str = "cpu", half: bool = False) -> "ZDetector":
        """Load a kit checkpoint (raises `kitlib.data.DataError` naming the file if it is not one)."""
        model, meta, _ = load_kit_checkpoint(weights)
        model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
        return cls(model, meta, device=device, half=half, path=weights)

    def __repr__(self) -> str:
        return (
            f"ZDetector({self.path}, device={self.device}, imgsz={self.size_name()}, channels={self.channels}, "
            f"stack_stride={self.stack_stride}, z_span={self.z_span})"
        )

    def size_name(self) -> str:
        """The default inference size, in words: "160 px" or "own size (160 px crops)"."""
        return f"own size ({self.crop} px crops)" if self.crop else f"{self.imgsz} px"

    def letterbox(
        self, x: torch.Tensor, imgsz: int | None
    ) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
        """(B, C, H, W) float in [0, 1] -> resized + padded batch, (y, x) scales, (pad_top, pad_left).

        `imgsz` None: no resize, only the padding.

        The scales are those of the resize actually done (``nh / H``, ``nw / W``, sizes rounded to whole pixels), not
        the nominal ``imgsz / max(H, W)``: they differ on the shorter side, by up to half a resized pixel at its end.
        """
        h, w = x.shape[2:]
        r = 1.0 if imgsz is None else imgsz / max(h, w)
        nh, nw = max(1, round(h * r)), max(1, round(w * r))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=r < 1)
        ph, pw = math.ceil(nh / self.stride) * self.stride, math.ceil(nw / self.stride) * self.stride
        top, left = (ph - nh) // 2, (pw - nw) // 2
        if (ph, pw) != (nh, nw):
            x = F.pad(x, (left, pw - nw - left, top, ph - nh - top), value=PAD_VALUE)
        return x, (nh / h, nw / w), (top, left)

    @torch.inference_mode()
    def predict(self, stacks: np.ndarray, conf: float = 0.05, imgsz: int | None = None) -> list[np.ndarray]:
        """Detect motors in a batch of stacks.

        Args:
            stacks: (B, H, W, C) or (H, W, C) uint8 (C = the model's channels).
            conf: minimum confidence kept.
            imgsz: inference size (longest side); default: the training imgsz, or each stack's own size for a model
                trained on crops.

        Returns:
            per image an (N, 6) float32 array ``[x, y, w, h, conf, dz]``: box centre and size in the original
            pixels, dz = predicted motor z minus the stack's centre slice, in slices.
        """
        arr = np.asarray(stacks)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != self.channels:
            raise ValueError(f"stacks must be (B, H, W, {self.channels}) or (H, W, {self.channels}), got {arr.shape}")
        if arr.shape[0] == 0:
            return []
        batch = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
        imgsz = int(imgsz) if imgsz else None if self.crop else self.imgsz
        chunk = len(batch) if self.device.type == "cuda" else cpu_chunk(imgsz or max(batch.shape[2:]))
        results = []
        for part in batch.split(chunk):
            results += self._detect(part, conf, imgsz)
        return results

    def _detect(self, x: torch.Tensor, conf: float, imgsz: int | None) -> list[np.ndarray]:
        """`predict` of (B, C, H, W) host stacks in one forward."""
        h, w = x.shape[2:]
        x = x.to(self.device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        x, (ry, rx), (top, left) = self.letterbox(x, imgsz)
        if self.half:
            x = x.half()
        out = self.model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        dets = nms.non_max_suppression(
            out.float(), conf, NMS_IOU, nc=self.nc, max_det=MAX_DET, max_time_img=1.0
        )  # rows: x1 y1 x2 y2 conf cls zenc
        results = []
        for d in dets:
            d = d.cpu().numpy()
            res = np.zeros((len(d), 6), dtype=np.float32)
            if len(d):
                x1 = np.clip((d[:, 0] - left) / rx, 0, w)
                x2 = np.clip((d[:, 2] - left) / rx, 0, w)
                y1 = np.clip((d[:, 1] - top) / ry, 0, h)
                y2 = np.clip((d[:, 3] - top) / ry, 0, h)
                res[:, 0], res[:, 1] = (x1 + x2) / 2, (y1 + y2) / 2
                res[:, 2], res[:, 3] = x2 - x1, y2 - y1
                res[:, 4] = d[:, 4]
                res[:, 5] = decode_zenc(d[:, 6], float(self.z_span))
            results.append(res)
        return results


def _device_string(device: str | int) -> str:
    """'0' / 0 / 'cuda:0' / 'cpu' -> a torch device string (the kit's config uses ultralytics-style '0')."""
    d = str(device).strip().lower()
    if d in {"", "cpu", "mps"}:
        return d or "cpu"
    if d.isdigit():
        return f"cuda:{d}"
    if d.startswith("cuda"):
        return d
    raise ValueError(f"unknown device {device!r}: use 'cpu', a GPU index like '0', or 'cuda:0'")
