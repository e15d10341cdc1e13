"""Write a synthetic dataset in the competition's exact layout."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw
from tqdm import tqdm

from kitlib.config import HIT_RADIUS_A
from kitlib.data.errors import DataError
from kitlib.data.labels import COORD_COLUMNS, TomoRecord, records_to_frame, solution_frame
from kitlib.data.synth.render import render_slabs
from kitlib.data.synth.scene import REPORTED_TEST_SHAPE, Binning, draw_motor_count, plan_scene
from kitlib.data.synth.stats import REAL_LABEL_STATS
from kitlib.data.synth.style import check_styles

SIZES = {
    "tiny": Binning(8, crop=(32, 96, 96)),  # unit tests
    "small": Binning(4),  # the CPU demo
    "fine": Binning(2),  # twice as fine as the demo's (26-39 A mostly): a spacing shift for the spacing comparison
    "real": Binning(1, test_shape=REPORTED_TEST_SHAPE),  # train: the label file's shapes and spacings
}
GENERATOR = 2  # bumped when the same arguments would write different tomograms (a rerun then replaces the data)
MARKER = ".synth.json"  # marks a folder this module wrote (with its arguments), so a rerun may replace it
STYLE_FILE = ".synth-styles.csv"  # tomo_id, split, style: which appearance family each tomogram was drawn from
SPLITS = ("train", "test")
PROCESSES_FROM = 16  # tomograms: from this many on, a process per core writes them (a process costs ~1 s to start)


@dataclass
class SynthResult:
    """What `synthesize` wrote: the competition root, the labels of both splits and the files."""

    out: Path
    train: list[TomoRecord]
    test: list[TomoRecord]
    styles: dict[str, str] = field(default_factory=dict)  # tomo_id -> style name
    csvs: dict[str, Path] = field(default_factory=dict)  # train_labels, sample_submission, test_solution
    previews: list[Path] = field(default_factory=list)

    def tomo_dir(self, split: str, tomo_id: str) -> Path:
        return self.out / split / tomo_id


def synthesize(
    out: str | Path,
    n_train: int,
    n_test: int,
    size: str = "small",
    seed: int = 0,
    styles: tuple[str, ...] | None = None,
    preview: bool = False,
    progress: bool = True,
) -> SynthResult:
    """Write `n_train` + `n_test` synthetic tomograms with labels, sample submission and test solution under `out`.

    The same arguments give byte-identical files. Test tomograms hold 0 or 1 motor; train ones may hold several.
    Shapes and spacings are drawn from the real label file's (`REAL_LABEL_STATS`), binned by `size`: `tiny` (unit
    tests), `small` (bin 4, the demo), `fine` (bin 2) or `real` (the native grid, 6.5-19.7 A; test tomograms at the
    reported test mean `REPORTED_TEST_SHAPE`). Each tomogram's appearance is drawn from one of `styles` (default:
    every style in `STYLES`), recorded in `.synth-styles.csv`. A test spacing is written only into
    test_solution.csv (for scoring), as on Kaggle.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: choose one of {sorted(SIZES)}")
    if n_train < 0 or n_test < 0:
        raise ValueError("n_train and n_test must be >= 0")
    styles = check_styles(styles)
    out = Path(out)
    prepare_output(out, synth_params(n_train, n_test, size, seed, styles))
    ids = draw_tomo_ids(seed, n_train + n_test)
    jobs = [("train", i, tid) for i, tid in enumerate(ids[:n_train])]
    jobs += [("test", i, tid) for i, tid in enumerate(ids[n_train:])]
    counts = {"train": motor_counts(seed, "train", n_train), "test": motor_counts(seed, "test", n_test)}
    result = SynthResult(out=out, train=[], test=[])
    args = [(out / split / tomo_id, size, seed, split, index, counts[split][index], styles)
            for split, index, tomo_id in jobs]
    workers = min(os.cpu_count() or 1, 4) if len(jobs) >= PROCESSES_FROM else 1
    bar = tqdm(total=len(jobs), desc="synth", unit="tomo", disable=not progress)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 \
            else contextlib.nullcontext() as pool:
        written = pool.map(_write_job, args) if pool else map(_write_job, args)
        for (split, _, tomo_id), (record, style) in zip(jobs, written):  # in job order, whichever finished first
            getattr(result, split).append(record)
            result.styles[tomo_id] = style
            bar.update()
    bar.close()
    result.csvs = write_csvs(out, result.train, result.test)
    pl.DataFrame(
        [(tid, split, result.styles[tid]) for split, _, tid in jobs], schema=["tomo_id", "split", "style"], orient="row"
    ).write_csv(out / STYLE_FILE)
    if preview:
        result.previews = write_previews(out, result)
    return result


def synth_params(n_train: int, n_test: int, size: str, seed: int, styles: tuple[str, ...] | None = None) -> dict:
    """What the marker records: the arguments and the generator's version (equal params, equal files)."""
    return {"n_train": n_train, "n_test": n_test, "size": size, "seed": seed, "styles": list(check_styles(styles)),
            "generator": GENERATOR}


def prepare_output(out: Path, params: dict) -> None:
    """Create `out`; replace an earlier synthetic dataset there, but never a folder this module did not write."""
    marker = out / MARKER
    if out.exists() and not marker.exists() and any(out.iterdir()):
        raise DataError(f"{out}: not empty and not written by synth; choose a new or empty folder")
    for name in (*SPLITS, "preview"):  # an earlier synthetic dataset's folders (the marker says so)
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(params, indent=1) + "\n")


def draw_tomo_ids(seed: int, n: int) -> list[str]:
    """Unique ids like the real ones (`tomo_` + 6 hex digits); train takes the first ones, each split sorted."""
    values = np.random.default_rng([seed, 0x1D5]).choice(16**6, size=n, replace=False)
    return [f"tomo_{v:06x}" for v in values]


def motor_counts(seed: int, split: str, n: int) -> list[int]:
    """Motors per tomogram: exactly round(n * real motor-free fraction) without; test tomograms hold at most one."""
    rng = np.random.default_rng([seed, SPLITS.index(split), 0xC0])
    free = set(rng.permutation(n)[: round(n * REAL_LABEL_STATS.motor_free_fraction)].tolist())
    return [0 if i in free else (draw_motor_count(rng) if split == "train" else 1) for i in range(n)]


def _write_job(args: tuple) -> tuple[TomoRecord, str]:
    """`write_tomogram` for one job of `synthesize` (in a worker process when there are many), with its own encoders."""
    folder, size, seed, split, index, n_motors, styles = args
    with ThreadPoolExecutor(max_workers=2) as encoders:
        return write_tomogram(folder, SIZES[size], seed, split, index, n_motors, encoders, styles)


def write_tomogram(
    folder: Path,
    binning: Binning,
    seed: int,
    split: str,
    index: int,
    n_motors: int,
    pool: ThreadPoolExecutor,
    styles: tuple[str, ...],
) -> tuple[TomoRecord, str]:
    """Plan, render and write one tomogram's slices; the record lists the motors that were placed, then its style."""
    plan_rng, noise_rng = (np.random.default_rng([seed, SPLITS.index(split), index, k]) for k in (1, 2))
    scene = plan_scene(plan_rng, binning, n_motors, test=split == "test", styles=styles)
    folder.mkdir(parents=True)
    pending: list[Future] = []
    for z0, slab in render_slabs(scene, noise_rng):
        for f in pending:  # at most one slab waits for the encoders: bounded memory
            f.result()
        pending = [
            pool.submit(save_jpeg, image, folder / f"slice_{z0 + k:04d}.jpg", scene.imaging.jpeg_quality)
            for k, image in enumerate(slab)
        ]
    for f in pending:
        f.result()
    return TomoRecord(folder.name, scene.shape, scene.spacing, list(scene.motors), len(scene.motors)), scene.style


def save_jpeg(image: np.ndarray, path: Path, quality: int) -> None:
    Image.fromarray(image).save(path, quality=quality)


def write_csvs(out: Path, train: list[TomoRecord], test: list[TomoRecord]) -> dict[str, Path]:
    paths = {name: out / f"{name}.csv" for name in ("train_labels", "sample_submission", "test_solution")}
    records_to_frame(sorted(train, key=lambda r: r.tomo_id)).write_csv(paths["train_labels"])
    test = sorted(test, key=lambda r: r.tomo_id)
    sample = pl.DataFrame({"tomo_id": [r.tomo_id for r in test]}, schema={"tomo_id": pl.String})
    sample.with_columns([pl.lit(-1).alias(c) for c in COORD_COLUMNS]).write_csv(paths["sample_submission"])
    solution_frame(test).write_csv(paths["test_solution"])
    return paths


def write_previews(out: Path, result: SynthResult) -> list[Path]:
    """PNG per motor (x-y slice through it above the x-z slice, hit radius circled) and one motor-free tomogram."""
    folder = out / "preview"
    folder.mkdir(exist_ok=True)
    written = []
    free_done = False
    for split in SPLITS:
        for rec in getattr(result, split):
            if not rec.motors and free_done:
                continue
            free_done |= not rec.motors
            for k, motor in enumerate(rec.motors or [None]):
                image = preview_image(out / split / rec.tomo_id, rec, motor)
                path = folder / f"{split}_{rec.tomo_id}_{f'motor{k}' if motor else 'none'}.png"
                image.save(path)
                written.append(path)
    return written


def preview_image(folder: Path, rec: TomoRecord, motor: tuple[float, float, float] | None) -> Image.Image:
    z, y, x = motor if motor else (rec.shape[0] // 2, rec.shape[1] // 2, rec.shape[2] // 2)
    xy = np.asarray(Image.open(folder / f"slice_{int(round(z)):04d}.jpg"))
    xz = np.stack([np.asarray(Image.open(folder / f"slice_{k:04d}.jpg"))[int(round(y))] for k in range(rec.shape[0])])
    lo, hi = np.percentile(xy, (1, 99))
    stretched = np.clip((np.concatenate([xy, xz]).astype(np.float32) - lo) / max(hi - lo, 1) * 255, 0, 255)
    scale = max(1, 720 // rec.shape[2])
    image = Image.fromarray(stretched.astype(np.uint8)).convert("RGB")
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    if motor:
        draw = ImageDraw.Draw(image)
        r = HIT_RADIUS_A / rec.voxel_spacing * scale
        for cy in (y, rec.shape[1] + z):  # the motor in the x-y slice, then in the x-z slice below it
            cx, cy = (x + 0.5) * scale, (cy + 0.5) * scale
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(255, 60, 60), width=2)
    return image
