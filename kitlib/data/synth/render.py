"""Render a planned scene slab by slab into 8-bit slices: density (band-passed and blurred as the style says),
exposure with drift along z, correlated and optionally dose-dependent noise."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from kitlib.data.synth.scene import Imaging, Scene
from kitlib.data.synth.shapes import Shape

SLAB_VOXELS = 16_000_000  # float32 slab of ~64 MB; peak memory stays a small multiple of it


def slab_depth(shape: tuple[int, int, int]) -> int:
    return int(np.clip(SLAB_VOXELS // (shape[1] * shape[2]), 1, shape[0]))


def render_slabs(scene: Scene, noise_rng: np.random.Generator) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first slice index, uint8 slab (S, H, W)) from top to bottom."""
    depth, (n_z, height, width) = slab_depth(scene.shape), scene.shape
    noise = NoiseStream(noise_rng, height, width, scene.imaging)
    lighting = lighting_field(scene.imaging, height, width)
    z_lo = np.array([s.lo[0] for s in scene.shapes])
    z_hi = np.array([s.hi[0] for s in scene.shapes])
    drift = scene.imaging.z_drift * (np.arange(n_z, dtype=np.float32) / max(n_z - 1, 1) - 0.5)
    for z0 in range(0, n_z, depth):
        z1 = min(z0 + depth, n_z)
        density = np.zeros((z1 - z0, height, width), dtype=np.float32)
        for i in np.flatnonzero((z_hi >= z0) & (z_lo <= z1 - 1)):
            add_shape(density, z0, scene.shapes[i])
        filter_density(density, scene.imaging)
        yield z0, expose(density, lighting + drift[z0:z1, None, None], noise.next(z1 - z0), scene.imaging)


def add_shape(slab: np.ndarray, z0: int, shape: Shape) -> None:
    """Add a shape's density inside its box, clipped to the slab starting at slice z0."""
    box_lo, box_hi = shape.box(z0, z0 + slab.shape[0] - 1)
    lo = np.maximum(np.ceil(box_lo).astype(int), (z0, 0, 0))
    hi = np.minimum(np.floor(box_hi).astype(int) + 1, (z0 + slab.shape[0], *slab.shape[1:]))
    if np.any(hi <= lo):
        return
    z, y, x = (np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi))
    region = slab[lo[0] - z0 : hi[0] - z0, lo[1] : hi[1], lo[2] : hi[2]]
    region += shape.density(z[:, None, None], y[None, :, None], x[None, None, :])


def filter_density(density: np.ndarray, imaging: Imaging) -> None:
    """In place, slice by slice: blur by the resolution loss, then remove part of the low frequencies (a CTF-like
    band-pass: large dense regions fade, edges keep their contrast)."""
    for layer in density:
        if imaging.blur > 0.3:
            layer[:] = cv2.GaussianBlur(layer, (0, 0), imaging.blur, borderType=cv2.BORDER_REFLECT)
        if imaging.bandpass > 0:
            layer -= imaging.bandpass * _low_pass(layer, imaging.bandpass_sigma)


def _low_pass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass; a wide one is computed on a shrunken copy (same result to within a grey level, far
    cheaper at real size)."""
    shrink = max(1, int(sigma / 3))
    if shrink == 1:
        return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    h, w = image.shape
    small = cv2.resize(image, (max(1, w // shrink), max(1, h // shrink)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / shrink, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def lighting_field(imaging: Imaging, height: int, width: int) -> np.ndarray:
    """Mean grey with a gentle linear gradient (uneven ice thickness / illumination)."""
    gy, gx = imaging.gradient
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    return (imaging.mean + gy * y + gx * x).astype(np.float32)


def expose(density: np.ndarray, lighting: np.ndarray, noise: np.ndarray, imaging: Imaging) -> np.ndarray:
    """Dense is dark: grey = lighting - gain * density + noise, rounded and clipped to uint8. With shot noise, part
    of the noise std follows sqrt(signal / mean) (fewer electrons through dense material, relatively noisier)."""
    signal = lighting - imaging.gain * density
    grey = noise
    grey *= imaging.noise_std
    if imaging.shot_noise > 0:
        grey *= (1 - imaging.shot_noise) + imaging.shot_noise * np.sqrt(np.maximum(signal, 1.0) / imaging.mean)
    grey += signal
    grey += 0.5
    return np.clip(grey, 0, 255, out=grey).astype(np.uint8)


class NoiseStream:
    """Unit-variance noise, streamed slice by slice: white noise blurred in-plane (plus a white part), then AR(1)
    along z, so neighbouring slices are correlated as in a reconstruction."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, imaging: Imaging, white_part: float = 0.3):
        self.rng, self.height, self.width = rng, height, width
        self.z_corr = imaging.noise_z_corr
        half = int(np.ceil(3 * imaging.noise_blur))
        kernel = cv2.getGaussianKernel(2 * half + 1, imaging.noise_blur, cv2.CV_64F)
        # a * white + c * blur(white) must have unit variance: blur(white) has std sum(kernel**2) and covariance
        # kernel[half]**2 with white.
        blurred_std, shared = float(np.sum(kernel**2)), float(kernel[half, 0] ** 2)
        c = np.sqrt(1 - white_part**2) / blurred_std
        norm = np.sqrt(white_part**2 + 2 * white_part * c * shared + (c * blurred_std) ** 2)
        self.white = white_part / norm
        self.kernel_x = kernel.astype(np.float32)
        self.kernel_y = (kernel * (c / norm)).astype(np.float32)
        self.state: np.ndarray | None = None

    def next(self, depth: int) -> np.ndarray:
        out = self.rng.standard_normal((depth, self.height, self.width), dtype=np.float32)
        previous = self.state
        for layer in out:
            smooth = cv2.sepFilter2D(layer, -1, self.kernel_x, self.kernel_y, borderType=cv2.BORDER_REFLECT)
            layer *= self.white
            layer += smooth
            if previous is not None:
                layer *= np.sqrt(1 - self.z_corr**2)
                layer += self.z_corr * previous
            previous = layer
        self.state = out[-1].copy()  # the caller may overwrite `out`
        return out
