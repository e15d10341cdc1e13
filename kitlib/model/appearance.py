"""Image-space augmentation for multi-channel stacks, which ultralytics skips beyond 3 channels (HSV, Albumentations).

Tomograms differ in contrast, noise, resolution and compression; the geometric augmentations (mosaic, affine, flips)
do not touch any of that. `StackAppearance` redraws it per training image: one draw applies to all channels, since
they are neighbouring slices of one tomogram. It runs after mosaic and affine, on uint8 (H, W, C) images.
"""

from __future__ import annotations

import functools
import random

import cv2
import numpy as np

GAMMA = (0.7, 1.4)  # grey -> 255 * (grey / 255) ** gamma
CONTRAST = (0.7, 1.3)  # gain about mid-grey (128)
BRIGHTNESS = 15.0  # +- grey levels
BLUR_SIGMA = (0.3, 1.0)  # px, applied with probability P_BLUR
NOISE_STD = (2.0, 12.0)  # grey levels, applied with probability P_NOISE
JPEG_QUALITY = (40, 90)  # re-compression of each channel, with probability P_JPEG
P_BLUR, P_NOISE, P_JPEG = 0.3, 0.5, 0.3


class StackAppearance:
    """With probability `p`, redraw one image's contrast, gamma and brightness, then maybe blur, noise, JPEG.

    Randomness comes from Python's and NumPy's global generators, like ultralytics' own transforms, which its
    dataloader seeds per worker: a run is repeatable for a seed and worker count.
    """

    def __init__(self, p: float):
        self.p = float(p)

    def __call__(self, labels: dict) -> dict:
        if self.p > 0 and random.random() < self.p:
            labels["img"] = restyle(labels["img"])
        return labels

    def __repr__(self) -> str:
        return f"StackAppearance(p={self.p})"


def restyle(img: np.ndarray) -> np.ndarray:
    """One random appearance for a uint8 (H, W, C) image, the same for every channel."""
    out = _tone_curve(random.uniform(*GAMMA), random.uniform(*CONTRAST), random.uniform(-BRIGHTNESS, BRIGHTNESS))[img]
    if random.random() < P_BLUR:
        out = cv2.GaussianBlur(out, (0, 0), random.uniform(*BLUR_SIGMA)).reshape(img.shape)
    if random.random() < P_NOISE:
        noise = _noise(out.size, random.uniform(*NOISE_STD), random.randrange(_NOISE_BANK_SIZE))
        out = np.clip(out + noise.reshape(out.shape), 0, 255).astype(np.uint8)
    if random.random() < P_JPEG:
        out = _recompress(out, random.randint(*JPEG_QUALITY))
    return out


def _tone_curve(gamma: float, contrast: float, brightness: float) -> np.ndarray:
    """Lookup table: gamma, then gain about mid-grey, then a shift."""
    v = 255.0 * (np.arange(256) / 255.0) ** gamma
    return np.clip((v - 128.0) * contrast + 128.0 + brightness, 0, 255).round().astype(np.uint8)


_NOISE_BANK_SIZE = 1 << 20


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(_NOISE_BANK_SIZE, np.float32)


def _noise(n: int, std: float, start: int) -> np.ndarray:
    """`n` gaussian values of `std` read from a fixed bank at `start` (drawing fresh ones costs ~10x the rest of
    `restyle`)."""
    idx = (start + np.arange(n)) % _NOISE_BANK_SIZE if start + n > _NOISE_BANK_SIZE else slice(start, start + n)
    return _noise_bank()[idx] * np.float32(std)


def _recompress(img: np.ndarray, quality: int) -> np.ndarray:
    """Each channel through a JPEG encode/decode at `quality`."""
    planes = img.reshape(*img.shape[:2], -1)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    out = np.stack([cv2.imdecode(cv2.imencode(".jpg", np.ascontiguousarray(planes[..., c]), params)[1],
                                 cv2.IMREAD_GRAYSCALE) for c in range(planes.shape[-1])], axis=-1)
    return out.reshape(img.shape)
