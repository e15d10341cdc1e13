"""Reading a tomogram without the kit: the decode floor (fastest decoder, all cores, nothing else) and the public
host baseline's reader (per-slice PIL decode and per-slice percentile normalisation, sequential)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from kitlib.data.tomogram import list_slices

Decoder = Callable[[Path], np.ndarray]


def _pil(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def _torchvision(path: Path) -> np.ndarray:
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    return decode_jpeg(read_file(str(path)), mode=ImageReadMode.GRAY).numpy()[0]


DECODERS: dict[str, Decoder] = {
    "cv2.imread": lambda path: cv2.imread(str(path), cv2.IMREAD_GRAYSCALE),
    "cv2.imdecode": lambda path: cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE),
    "PIL": _pil,
    "torchvision.io.decode_jpeg": _torchvision,
}


def tomogram_shape(folder: Path) -> list[int]:
    """(z, y, x) of a tomogram folder from its slice count and first slice."""
    paths = list_slices(folder)
    return [len(paths), *DECODERS["cv2.imread"](paths[0]).shape]


def decode_seconds(folder: Path, decoder: Decoder, threads: int) -> float:
    """Wall seconds to decode every slice of `folder` into one uint8 volume with `threads` threads."""
    paths = list_slices(folder)
    started = time.perf_counter()
    first = decoder(paths[0])
    volume = np.empty((len(paths), *first.shape), np.uint8)

    def fill(index: int) -> None:
        volume[index] = decoder(paths[index])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(fill, range(len(paths))))
    return time.perf_counter() - started


def decode_floor(folders: Sequence[Path]) -> dict:
    """Every decoder timed on the first tomogram (best of two, all cores), then the fastest one's mean seconds per
    tomogram."""
    threads = os.cpu_count() or 1
    per_decoder = {name: min(decode_seconds(folders[0], fn, threads) for _ in range(2)) for name, fn in DECODERS.items()}
    fastest = min(per_decoder, key=per_decoder.get)
    seconds = [decode_seconds(f, DECODERS[fastest], threads) for f in folders]
    return {"decode_floor_sec": float(np.mean(seconds)), "decode_floor_decoder": fastest, "decode_threads": threads,
            "decoders_sec_first_tomo": per_decoder}


def baseline_slice(path: Path) -> np.ndarray:
    """The host baseline's slice reader: PIL decode, clip to this slice's 2nd-98th percentiles, scale to uint8."""
    image = np.array(Image.open(path))
    p2, p98 = np.percentile(image, 2), np.percentile(image, 98)
    clipped = np.clip(image, p2, p98)
    return np.uint8(255 * (clipped - p2) / max(p98 - p2, 1e-6))


def baseline_reader_sec(folders: Sequence[Path]) -> float:
    """Mean seconds per tomogram to read each one slice by slice the baseline's way, in one thread."""
    return float(np.mean([decode_seconds(f, baseline_slice, threads=1) for f in folders]))
