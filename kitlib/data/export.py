"""Training export of one fold: 5-page TIFF stacks with pose-format labels carrying z (DEVELOPERS.md contract).

Per tomogram the volume is read once, contrast-normalised once and resampled if configured; stacks are then cut at
planned centre slices. All coordinates below are on that (possibly resampled) grid, in voxel indices.

- Positive stacks: `positives_per_motor` distinct centres drawn within +-`z_window` slices of each motor (an extra
  source's own `z_window` for its tomograms, `kitlib.data.sources`).
- Labels: every motor with ``|motor_z - centre| <= z_span`` (the range the z encoding covers, and the stack's own
  span), so a stack near two motors labels both.
- Negative stacks (empty label files): centres more than ``2 * z_span`` from every motor, `negatives_per_tomo` per
  tomogram, none from tomograms that state more motors than they list (an unlisted motor may be anywhere) or from an
  extra source not trusted for negatives; then at most ``neg_ratio`` x positives are kept per split.
- With ``crop``, each stack is a crop x crop window at full resolution: a positive one holds the motor nearest its
  centre slice (at least a quarter box from the window's edges where the slice allows), a negative one lies anywhere;
  only motors inside the window are labelled; a slice smaller than the window is padded with grey to its size.
- Normalised image coordinates use voxel centres: ``cx = (x + 0.5) / W`` (so ``x = cx * W - 0.5``), which any
  resize (cv2, ultralytics' letterbox) leaves unchanged.

Randomness comes from `cfg.train.seed` and the tomo_id only, so the same inputs give the same files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord, load_labels
from kitlib.data.layout import CompetitionData
from kitlib.data.tomogram import iter_tomograms
from kitlib.preprocess import grid_policy, model_grid, resample_factor, resampled_shape, stack_indices
from kitlib.preprocess.resample import to_resampled
from kitlib.preprocess.zcode import encode_dz, z_span_for

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


@dataclass
class TomoPlan:
    """What to cut from one tomogram: its motors on the export grid and the positive / negative stack centres."""

    record: TomoRecord
    split: str
    grid_shape: tuple[int, int, int]
    motors: np.ndarray  # (N, 3) z, y, x on the export grid
    positives: list[int]
    negatives: list[int]


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (not on Python's salted `hash`)."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def positive_centres(
    motor_z: np.ndarray, depth: int, per_motor: int, z_window: int, rng: np.random.Generator
) -> list[int]:
    """`per_motor` distinct centres within +-`z_window` slices of each motor (fewer at the edges), merged and sorted."""
    centres: set[int] = set()
    for z in np.rint(motor_z).astype(int):
        window = np.arange(max(0, z - z_window), min(depth, z + z_window + 1))
        centres.update(rng.choice(window, min(per_motor, len(window)), replace=False).tolist())
    return sorted(centres)


def negative_centres(motor_z: np.ndarray, depth: int, count: int, margin: float, rng: np.random.Generator) -> list[int]:
    """Up to `count` distinct centres farther than `margin` slices from every motor, sorted."""
    z = np.arange(depth)
    if len(motor_z):
        z = z[np.abs(z[:, None] - np.asarray(motor_z)[None, :]).min(1) > margin]
    return sorted(rng.choice(z, min(count, len(z)), replace=False).tolist())


def label_lines(
    motors: np.ndarray, centre: int, image_hw: tuple[int, int], box_side: float, z_span: float
) -> list[str]:
    """Pose-format lines ``0 cx cy w h cx cy zenc`` for the motors within `z_span` slices of `centre`.

    The box (side `box_side` voxels, centred on the motor) is clipped to the image; the point stays on the motor.
    """
    h, w = image_hw
    lines = []
    for z, y, x in motors:
        dz = z - centre
        px, py = x + 0.5, y + 0.5  # continuous image coordinates of the voxel centre
        if abs(dz) > z_span or not (0 <= px <= w and 0 <= py <= h):
            continue
        x0, x1 = np.clip([px - box_side / 2, px + box_side / 2], 0, w)
        y0, y1 = np.clip([py - box_side / 2, py + box_side / 2], 0, h)
        zenc = float(encode_dz(dz, z_span))
        values = [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h, px / w, py / h, zenc]
        lines.append("0 " + " ".join(f"{v:.6f}" for v in values))
    return lines


def plan_fold(records: list[TomoRecord], folds: dict[str, int], fold: int, cfg: KitConfig) -> list[TomoPlan]:
    """Stack centres of every tomogram (the held-out `fold` -> val, others -> train), negatives capped per split."""
    missing = [r.tomo_id for r in records if not r.source and r.tomo_id not in folds]
    if missing:
        raise ValueError(f"{len(missing)} tomogram(s) have no fold: {missing[:5]}")
    if not any(_held_out(r, folds, fold) for r in records):
        raise ValueError(f"fold {fold} holds none of the {len(records)} tomograms")
    plans = [plan_tomogram(rec, cfg, "val" if _held_out(rec, folds, fold) else "train") for rec in records]
    for split in SPLITS:
        _cap_negatives([p for p in plans if p.split == split], cfg.export.neg_ratio,
                       _rng(cfg.train.seed, "negatives", split))
    return plans


def plan_tomogram(rec: TomoRecord, cfg: KitConfig, split: str = "") -> TomoPlan:
    """One tomogram's stack centres before any fold's negative cap (they depend on the seed and tomo_id only)."""
    pre, exp = cfg.preprocess, cfg.export
    grid = resampled_shape(rec.shape, resample_factor(rec.shape, rec.voxel_spacing, pre))
    motors = to_resampled(np.asarray(rec.motors, np.float64).reshape(-1, 3), rec.shape, grid)
    rng = _rng(cfg.train.seed, rec.tomo_id)
    z_window = exp.z_window if rec.z_window is None else rec.z_window
    positives = positive_centres(motors[:, 0], grid[0], exp.positives_per_motor, z_window, rng)
    complete = rec.n_motors_stated <= len(rec.motors)  # else unlisted motors may be anywhere
    n_neg = exp.negatives_per_tomo if complete and rec.negatives else 0
    negatives = negative_centres(motors[:, 0], grid[0], n_neg, 2 * z_span_for(pre.stack_stride), rng)
    return TomoPlan(rec, split, grid, motors, positives, negatives)


def _held_out(rec: TomoRecord, folds: dict[str, int], fold: int) -> bool:
    """The tomogram is in the held-out fold (an extra source's never is)."""
    return not rec.source and folds[rec.tomo_id] == fold


def _cap_negatives(plans: list[TomoPlan], ratio: float, rng: np.random.Generator) -> None:
    """Keep at most `ratio` x positives negative centres over `plans`, drawn uniformly (in place, order-free)."""
    negatives = sorted((p.record.tomo_id, z) for p in plans for z in p.negatives)
    cap = int(ratio * sum(len(p.positives) for p in plans))
    if len(negatives) <= cap:
        return
    keep = {negatives[j] for j in rng.choice(len(negatives), cap, replace=False)}
    for plan in plans:
        plan.negatives = [z for z in plan.negatives if (plan.record.tomo_id, z) in keep]


def _box_side(rec: TomoRecord, cfg: KitConfig) -> float:
    """Box side in export-grid voxels: `box_px`, else `box_angstrom` over the grid's spacing."""
    if cfg.export.box_px is not None:
        return float(cfg.export.box_px)
    return cfg.export.box_angstrom * resample_factor(rec.shape, rec.voxel_spacing, cfg.preprocess) / rec.voxel_spacing


def _resize_pages(pages: np.ndarray, imgsz: int | None) -> list[np.ndarray]:
    """The pages, shrunk so the longest side is `imgsz` (unchanged when None or already that small)."""
    h, w = pages.shape[1:]
    scale = 1.0 if imgsz is None else min(1.0, imgsz / max(h, w))
    if scale == 1.0:
        return list(pages)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return [cv2.resize(page, size, interpolation=interp) for page in pages]


def crop_origin(
    image_hw: tuple[int, int], crop: int, target_yx: np.ndarray | None, margin: float, rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left corner of a `crop` window inside `image_hw`: uniform, or keeping `target_yx` `margin` px inside."""
    origin = []
    for size, t in zip(image_hw, [None, None] if target_yx is None else target_yx):
        hi = max(size - crop, 0)
        lo_t, hi_t = (0, hi) if t is None else (int(np.ceil(t + margin - crop)), int(t - margin))
        lo_t, hi_t = max(lo_t, 0), min(hi_t, hi)
        origin.append(int(rng.integers(lo_t, hi_t + 1)) if lo_t <= hi_t else int(np.clip(round(t - crop / 2), 0, hi)))
    return origin[0], origin[1]


# Stacks are stored uncompressed: their size is known before any is written (the real train set: 7.4 GB for every
# fold together), and they decode ~4x faster than cv2's default LZW, which makes noisy slices larger, not smaller
# (bench/results/rehearse.md measures the formats).
_TIFF_PARAMS = [cv2.IMWRITE_TIFF_COMPRESSION, 1]


def _write_stacks(volume: np.ndarray, plan: TomoPlan, out: Path, cfg: KitConfig) -> None:
    stride, crop = cfg.preprocess.stack_stride, cfg.export.crop
    z_span = z_span_for(stride)
    box = _box_side(plan.record, cfg)
    rng = _rng(cfg.train.seed, plan.record.tomo_id, "crop")
    for centre in plan.positives + plan.negatives:
        stem = f"{plan.record.tomo_id}_z{centre}"
        pages = volume[stack_indices(centre, len(volume), stride, cfg.preprocess.channels)]
        motors = plan.motors
        if crop:
            target = None
            if centre in plan.positives:
                target = motors[np.argmin(np.abs(motors[:, 0] - centre)), 1:]
            y0, x0 = crop_origin(volume.shape[1:], crop, target, box / 4, rng)
            pages = _pad_to(pages[:, y0 : y0 + crop, x0 : x0 + crop], crop)
            motors = motors - np.array([0.0, y0, x0])
        image = out / "images" / f"{stem}.tif"
        if not cv2.imwritemulti(str(image), _resize_pages(pages, None if crop else cfg.model.imgsz), _TIFF_PARAMS):
            raise OSError(f"{image}: cannot write TIFF")
        lines = label_lines(motors, centre, pages.shape[1:], box, z_span)  # none for negatives: motors are far
        (out / "labels" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))


def _pad_to(pages: np.ndarray, side: int) -> np.ndarray:
    """(C, H, W) pages padded at the bottom and right to at least side x side with ultralytics' grey 114, so a slice
    smaller than the crop is not enlarged in training (ultralytics resizes every image to its imgsz)."""
    h, w = pages.shape[1:]
    if h >= side and w >= side:
        return pages
    return np.pad(pages, ((0, 0), (0, max(side - h, 0)), (0, max(side - w, 0))), constant_values=114)


def export_stacks(
    data_root: Path, cache: Path, cfg: KitConfig, records: list[TomoRecord], progress: bool = True
) -> dict:
    """Every tomogram's stacks, read and normalised once, into `cache/images` and `cache/labels` (flat); every fold
    links its split from there. Reused as it is while the settings and labels it was made from are unchanged (its
    `stacks.json` records their fingerprint, and the tomograms that could not be read); rebuilt otherwise."""
    cache = Path(cache).resolve()
    manifest = cache / "stacks.json"
    fingerprint = _fingerprint(cfg, records)
    if manifest.is_file():
        done = json.loads(manifest.read_text())
        if done.get("fingerprint") == fingerprint:
            return done
    for sub in ("images", "labels"):
        shutil.rmtree(cache / sub, ignore_errors=True)
        (cache / sub).mkdir(parents=True)
    data = CompetitionData(Path(data_root))
    plans = [p for p in (plan_tomogram(r, cfg) for r in records) if p.positives or p.negatives]
    skipped = []
    folders = [p.record.folder or data.split_dir("train") / p.record.tomo_id for p in plans]
    reader = iter_tomograms(folders, cfg.infer.decode_threads, progress=progress, desc="export stacks")
    for plan, (folder, volume) in zip(plans, reader):
        if not isinstance(volume, DataError) and volume.shape != tuple(plan.record.shape):
            volume = DataError(f"{folder}: shape {volume.shape} differs from the labels' {tuple(plan.record.shape)}")
        if isinstance(volume, DataError):
            log.warning("skipping tomogram %s: %s", folder, volume)
            skipped.append({"tomo_id": plan.record.tomo_id, "folder": str(folder), "error": str(volume)})
            continue
        volume, _ = model_grid(volume, plan.record.voxel_spacing, cfg.preprocess)
        _write_stacks(volume, plan, cache, cfg)
    done = {"fingerprint": fingerprint, "skipped": skipped,
            "bytes": sum(f.stat().st_size for f in (cache / "images").iterdir())}
    manifest.write_text(json.dumps(done, indent=2) + "\n")
    return done


def _fingerprint(cfg: KitConfig, records: list[TomoRecord]) -> str:
    """What the stacks depend on: the preprocessing, export and size settings, the seed and the labels."""
    import hashlib

    key = {"preprocess": dataclasses.asdict(cfg.preprocess), "export": dataclasses.asdict(cfg.export),
           "imgsz": cfg.model.imgsz, "seed": cfg.train.seed, "tiff": _TIFF_PARAMS,
           "records": sorted((r.tomo_id, list(r.shape), r.voxel_spacing, r.motors, r.n_motors_stated, str(r.folder),
                              r.z_window, r.negatives) for r in records)}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _link(src: Path, dst: Path) -> None:
    """`dst` as a hard link to `src` (no second copy on disk), a copy where links are not possible."""
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def export_fold(
    data_root: Path,
    out: Path,
    fold: int,
    cfg: KitConfig,
    folds: dict[str, int],
    records: list[TomoRecord] | None = None,
    progress: bool = True,
    cache: Path | None = None,
) -> Path:
    """Export the train split as an ultralytics pose dataset for `fold`; returns the `dataset.yaml` path.

    The stacks come from `export_stacks` in `cache` (default `out/stacks`; pass one cache for every fold so that
    each tomogram is read once and stored once); `out/images/{train,val}` and `out/labels/{train,val}` are replaced
    by links to them. Tomograms that cannot be read (or whose shape disagrees with the labels) are skipped with a
    warning and listed in `export_summary.json`.
    """
    data = CompetitionData(Path(data_root))
    out = Path(out).resolve()
    cache = Path(cache).resolve() if cache is not None else out / "stacks"
    records = load_labels(data.labels_csv) if records is None else records
    plans = [p for p in plan_fold(records, folds, fold, cfg) if p.positives or p.negatives]
    stacks = export_stacks(data.root, cache, cfg, records, progress)
    for sub in ("images", "labels"):
        shutil.rmtree(out / sub, ignore_errors=True)
        for split in SPLITS:
            (out / sub / split).mkdir(parents=True)

    counts = {s: {"tomograms": 0, "positive": 0, "negative": 0} for s in SPLITS}
    planned = {p.record.tomo_id for p in plans}
    skipped = [s for s in stacks["skipped"] if s["tomo_id"] in planned]
    unreadable = {s["tomo_id"] for s in skipped}
    for plan in plans:
        if plan.record.tomo_id in unreadable:
            continue
        for centre in plan.positives + plan.negatives:
            stem = f"{plan.record.tomo_id}_z{centre}"
            _link(cache / "images" / f"{stem}.tif", out / "images" / plan.split / f"{stem}.tif")
            _link(cache / "labels" / f"{stem}.txt", out / "labels" / plan.split / f"{stem}.txt")
        c = counts[plan.split]
        c["tomograms"] += 1
        c["positive"] += len(plan.positives)
        c["negative"] += len(plan.negatives)

    for split in SPLITS:
        if not counts[split]["positive"] + counts[split]["negative"]:
            log.warning("fold %d: the %s split is empty", fold, split)
    summary = {"fold": fold, "splits": counts, "skipped": skipped, "stacks": str(cache), "stacks_bytes": stacks["bytes"]}
    (out / "export_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    dataset = {
        "path": str(out),
        "train": "images/train",
        "val": "images/val",
        "names": {0: "motor"},
        "channels": cfg.preprocess.channels,
        "kpt_shape": [1, 3],
        "flip_idx": [0],
        "stack_stride": cfg.preprocess.stack_stride,
        "z_span": z_span_for(cfg.preprocess.stack_stride),
        "grid": grid_policy(cfg.preprocess),
        "imgsz": None if cfg.export.crop else cfg.model.imgsz,
        "crop": cfg.export.crop,
        "fold": fold,
        "held_out": sorted(r.tomo_id for r in records if _held_out(r, folds, fold)),
        "sources": dict(Counter(r.source for r in records if r.source)),  # extra source -> tomograms
        "counts": counts,
    }
    path = out / "dataset.yaml"
    path.write_text(yaml.safe_dump(dataset, sort_keys=False))
    return path
