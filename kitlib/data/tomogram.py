"""Read a tomogram folder of `slice_NNNN.jpg` files into a uint8 (z, y, x) array.

Slices are ordered by their number (not lexically) and decoded in parallel threads (OpenCV releases the GIL).
Every problem with the folder raises `DataError` naming the folder or the slice file.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from kitlib.data.errors import DataError

SLICE_PATTERN = re.compile(r"^slice_(\d+)\.(jpe?g|png)$", re.IGNORECASE)
_JPEG_START = b"\xff\xd8"
# A marker that starts a segment or ends the image: 0xFF followed by anything but byte stuffing (00), fill (FF),
# the standalone TEM (01), RSTn (D0-D7) and SOI (D8) markers.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd8\xff]")
_JPEG_EOI = 0xD9


def list_slices(folder: str | Path) -> list[Path]:
    """Slice files of a tomogram folder ordered by slice number; numbering must be contiguous from 0.

    Files that are not slices (e.g. `.DS_Store`, `notes.txt`) are ignored with a warning.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: tomogram folder does not exist")
    numbered: dict[int, Path] = {}
    ignored = []
    for path in folder.iterdir():
        match = SLICE_PATTERN.match(path.name)
        if not match or not path.is_file():
            ignored.append(path.name)
            continue
        index = int(match.group(1))
        if index in numbered:
            raise DataError(f"{path}: slice number {index} also used by {numbered[index].name}")
        numbered[index] = path
    if ignored:
        warnings.warn(f"{folder}: ignoring {len(ignored)} non-slice file(s): {sorted(ignored)[:5]}", stacklevel=2)
    if not numbered:
        raise DataError(f"{folder}: no slice_NNNN.jpg files (empty tomogram folder)")
    indices = sorted(numbered)
    missing = sorted(set(range(indices[-1] + 1)) - set(indices))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DataError(f"{folder}: gaps in slice numbering, missing {len(missing)} slice(s): {shown}")
    return [numbered[i] for i in indices]


def decode_slice(path: Path) -> np.ndarray:
    """Decode one slice to a 2-D uint8 array. Colour is converted to grey and 16-bit scaled to 8-bit, with a warning."""
    image, conversions = _decode(path)
    for conversion in conversions:
        warnings.warn(f"{path}: {conversion}", stacklevel=2)
    return image


def _decode(path: Path) -> tuple[np.ndarray, list[str]]:
    """One slice as a 2-D uint8 array, and the conversions that took (colour to grey, 16-bit to 8-bit)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read slice: {e}") from e
    if not data:
        raise DataError(f"{path}: empty file (0 bytes)")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        if not data.startswith(_JPEG_START):
            raise DataError(f"{path}: not a JPEG file")
        if not _reaches_end_of_image(data):
            raise DataError(f"{path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: corrupt image, cannot decode")
    conversions = []
    if image.ndim == 3:
        conversions.append(f"{image.shape[2]}-channel image, converted to greyscale")
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.dtype != np.uint8:
        conversions.append(f"{image.dtype} image, scaled to uint8")
        image = (image.astype(np.float32) * (255.0 / max(float(np.iinfo(image.dtype).max), 1.0))).astype(np.uint8)
    return image, conversions


def _reaches_end_of_image(data: bytes) -> bool:
    """Whether a JPEG's end-of-image marker comes before its data runs out, found as a decoder finds it: segments
    are skipped by their length (so an embedded thumbnail's marker does not count) and entropy-coded data is scanned
    for the next marker. Bytes after the marker are ignored, as decoders ignore them; a truncated file (which
    OpenCV would decode partially, with only a warning on stderr) has none."""
    pos = len(_JPEG_START)
    while (marker := _JPEG_MARKER.search(data, pos)) is not None:
        if data[marker.start() + 1] == _JPEG_EOI:
            return True
        length_at = marker.start() + 2
        pos = length_at + int.from_bytes(data[length_at : length_at + 2], "big")
    return False


def read_tomogram(folder: str | Path, threads: int = 8) -> np.ndarray:
    """Read a tomogram folder into a uint8 array of shape (z, y, x).

    Slices that needed converting (colour, 16-bit) give one warning per kind of conversion for the whole folder.
    """
    paths = list_slices(folder)
    converted: dict[str, list[str]] = {}  # conversion -> slice file names

    def decode(index: int) -> np.ndarray:
        image, conversions = _decode(paths[index])
        for conversion in conversions:
            converted.setdefault(conversion, []).append(paths[index].name)
        return image

    first = decode(0)
    volume = np.empty((len(paths), *first.shape), dtype=np.uint8)
    volume[0] = first

    def fill(index: int) -> None:
        image = decode(index)
        if image.shape != first.shape:
            raise DataError(f"{paths[index]}: slice is {image.shape[1]}x{image.shape[0]}, "
                            f"expected {first.shape[1]}x{first.shape[0]} like {paths[0].name}")
        volume[index] = image

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for future in [pool.submit(fill, i) for i in range(1, len(paths))]:
            future.result()
    for conversion, names in converted.items():
        warnings.warn(f"{Path(folder)}: {len(names)} slice(s): {conversion} (first: {min(names)})", stacklevel=2)
    return volume


def iter_tomograms(
    folders: Iterable[str | Path],
    threads: int = 8,
    prefetch: bool = True,
    progress: bool = True,
    desc: str = "tomograms",
    read_seconds: dict[Path, float] | None = None,
) -> Iterator[tuple[Path, np.ndarray | DataError]]:
    """Yield `(folder, volume)` for each folder, or `(folder, DataError)` when it cannot be read; never stops early.

    With `prefetch`, the next tomogram is decoded in the background while the caller works on the current one.
    `read_seconds`, when given, receives each folder's reading time (wall seconds, background or not).
    """
    folders = [Path(f) for f in folders]

    def load(folder: Path) -> np.ndarray | DataError:
        started = time.perf_counter()
        try:
            return read_tomogram(folder, threads)
        except DataError as e:
            return e
        finally:
            if read_seconds is not None:
                read_seconds[folder] = time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=1) as loader:
        pending: Future | None = loader.submit(load, folders[0]) if folders and prefetch else None
        for i, folder in enumerate(tqdm(folders, desc=desc, unit="tomo", disable=not progress)):
            result = pending.result() if pending is not None else load(folder)
            has_next = i + 1 < len(folders)
            pending = loader.submit(load, folders[i + 1]) if prefetch and has_next else None
            yield folder, result
