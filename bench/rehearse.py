"""`python -m bench.rehearse [--quick]`: the default preset end to end at real size, and a projection of the full job.

A handful of real-size synthetic tomograms (`synth --size real`: train ones drawn from the real label file's shapes
and spacings, test ones at the reported 400x1400x1050) go through the kit's own stages with
`KitConfig.preset("default")`, on the CPU in fp32 (`--device cuda`: training on GPU 0 and inference over every
visible GPU, fp16): the training export (`export_fold` into one stacks store), one short epoch at the preset's size
on a capped subset of the fold's stacks (the ultralytics trainer), prediction of the test split with that fold's
checkpoint (`Predictor.from_run`), then the projection to the full Kaggle job and the plan the inference kernel's
budget planner would choose for it. Each stage runs in a process of its own, so its peak RSS is its own.
Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from kitlib.config import KitConfig
from kitlib.data.labels import TomoRecord
from kitlib.data.synth.scene import REPORTED_TEST_SHAPE, weighted_index
from kitlib.data.synth.stats import POSITION_BINS, REAL_LABEL_STATS, LabelStats
from kitlib.preprocess import grid_policy

from bench.pipeline import peak_rss_mb, run_pipeline
from bench.report import write_results
from bench.run import ROOT, git_commit

SEED = 5  # its 3 train tomograms: two with motors (one holds two), one without
FULL_JOB = {"train_tomograms": REAL_LABEL_STATS.n_tomograms, "test_tomograms": 900, "test_shape": REPORTED_TEST_SHAPE}
KAGGLE_CPUS = 4  # vCPUs of a Kaggle GPU machine (T4 x2 or P100)
KERNEL_SETUP_S = 600.0  # inference kernel: wheel install and model loading before the first tomogram (not measured)
# Effective throughput of the model in this kit's PyTorch pipeline, TFLOP/s. ASSUMED, not measured: TensorRT fp16 runs
# a nano YOLO on a T4 at ~14 TFLOP/s at batch 32 (YOLOv6-N's published T4 table: 1249 img/s x 11.1 GFLOPs); eager
# PyTorch is taken as ~3.5x slower, training (AMP) slower still; the P100 has no tensor cores (18.7 TFLOP/s fp16 peak
# against the T4's 65).
GPU_TFLOPS = {"t4_infer_fp16": 4.0, "p100_infer_fp16": 2.5, "t4_train_amp": 3.0}
TRAIN_FLOPS_PER_FORWARD = 3.0  # forward + backward
PCIE_GB_S = 6.0  # host -> GPU copy of the uint8 stacks, every model of the ensemble its own copy (assumed)
MOSAIC_READS = 4  # stacks decoded per training sample: mosaic joins four, rarely in ultralytics' small RAM buffer
# Training-store formats measured on the rehearsal's stacks (cv2 TIFF compression codes): the current one, and others.
CURRENT_FORMAT = "current (uncompressed)"
STORE_FORMATS = {
    CURRENT_FORMAT: [],
    "LZW (cv2's default)": [("IMWRITE_TIFF_COMPRESSION", 5)],
    "deflate": [("IMWRITE_TIFF_COMPRESSION", 8)],
    "jpeg (libtiff default quality, lossy)": [("IMWRITE_TIFF_COMPRESSION", 7), ("IMWRITE_TIFF_ROWSPERSTRIP", 8)],
}
FEWER_NEGATIVES = "current format, export.negatives_per_tomo=1"
DISK_GOAL_GB, INFER_GOAL_H = 8.0, 6.0


# -- stages (each runs in a spawned process of its own) --------------------------------------------------------------
def _rss() -> dict:
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": peak_rss_mb(), "children_peak_rss_mb": children}


def disk_bytes(path: Path) -> int:
    """Bytes of the files under `path`, each hard-linked file counted once."""
    seen = {}
    for p in Path(path).rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def stage_synth(root: Path, size: str, n_train: int, n_test: int, seed: int) -> dict:
    from kitlib.data.synth import synthesize

    t = time.perf_counter()
    result = synthesize(root, n_train, n_test, size=size, seed=seed, progress=False)
    sec = time.perf_counter() - t
    records = result.train + result.test
    voxels = sum(math.prod(r.shape) for r in records)
    return {"sec": sec, "sec_per_tomo": sec / len(records), "ns_per_voxel": sec / voxels * 1e9,
            "disk_bytes": disk_bytes(root),
            "train": [{"shape": r.shape, "spacing": r.voxel_spacing, "motors": len(r.motors)} for r in result.train],
            "test": [{"shape": r.shape, "motors": len(r.motors)} for r in result.test], **_rss()}


def stage_export(comp: Path, work: Path, cfg: KitConfig) -> dict:
    from kitlib.data.export import export_fold
    from kitlib.data.folds import make_folds
    from kitlib.data.labels import load_labels
    from kitlib.data.layout import CompetitionData

    records = load_labels(CompetitionData(comp).labels_csv)
    folds = dict(make_folds(records, min(cfg.tune.n_folds, len(records)), cfg.train.seed).iter_rows())
    fold = folds[next(r.tomo_id for r in records if r.motors)]  # a fold with positives to validate on
    stacks = work / "export" / "stacks"
    t = time.perf_counter()
    data_yaml = export_fold(comp, work / "export" / f"fold{fold}", fold, cfg, folds, records, progress=False,
                            cache=stacks)
    sec = time.perf_counter() - t
    images = sorted((stacks / "images").glob("*.tif"))
    voxels = sum(math.prod(r.shape) for r in records)
    return {"sec": sec, "sec_per_tomo": sec / len(records), "sec_per_gvoxel": sec / voxels * 1e9,
            "n_tomograms": len(records), "n_stacks": len(images), "disk_bytes": disk_bytes(work / "export"),
            "bytes_per_stack": sum(p.stat().st_size for p in images) / max(1, len(images)),
            "data_yaml": str(data_yaml), "formats": store_formats(images, work / "formats"), **_rss()}


def store_formats(images: list[Path], scratch: Path) -> dict:
    """Each `STORE_FORMATS` entry re-encoded from the stacks: bytes and decode time per stack, pixel error."""
    import cv2

    scratch.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, flags in STORE_FORMATS.items():
        params = [v for flag, value in flags for v in (getattr(cv2, flag), value)]
        sizes, reads, errors = [], [], []
        for image in images:
            pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)[1]
            path = image if not flags else scratch / "stack.tif"
            if flags and not cv2.imwritemulti(str(path), pages, params):
                raise OSError(f"{path}: cv2 cannot write the {name} format")
            t = time.perf_counter()
            back = cv2.imreadmulti(str(path), flags=cv2.IMREAD_UNCHANGED)[1]
            reads.append(time.perf_counter() - t)
            sizes.append(path.stat().st_size)
            errors.append(np.abs(np.stack(back).astype(np.int16) - np.stack(pages)).astype(np.float32))
        error = np.concatenate([e.ravel() for e in errors]) if errors else np.zeros(1)
        out[name] = {"bytes_per_stack": float(np.mean(sizes)) if sizes else 0.0,
                     "decode_sec_per_stack": float(np.mean(reads)) if reads else 0.0,
                     "mean_abs_error": float(error.mean()), "max_abs_error": float(error.max())}
    return out


def subset_yaml(data_yaml: Path, max_train: int, max_val: int) -> tuple[Path, dict]:
    """A copy of the export's dataset.yaml whose splits are lists of at most `max_*` of its stacks (spread evenly)."""
    import yaml

    data = yaml.safe_load(data_yaml.read_text())
    counts = {}
    for split, cap in (("train", max_train), ("val", max_val)):
        images = sorted((data_yaml.parent / data[split]).glob("*.tif"))
        keep = [images[i] for i in np.unique(np.linspace(0, len(images) - 1, min(cap, len(images))).astype(int))]
        listing = data_yaml.parent / f"rehearse_{split}.txt"
        listing.write_text("".join(f"{p}\n" for p in keep))
        data[split], counts[split] = str(listing), len(keep)
    path = data_yaml.with_name("rehearse.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, counts


def stage_train(data_yaml: Path, work: Path, cfg: KitConfig, max_train: int, max_val: int) -> dict:
    import polars as pl

    from kitlib.model.trainer import train

    subset, counts = subset_yaml(Path(data_yaml), max_train, max_val)
    t = time.perf_counter()
    save_dir = work / "train"
    best = train(subset, cfg, save_dir)
    sec = time.perf_counter() - t
    times = pl.read_csv(save_dir / "results.csv")["time"].to_list()  # seconds since the start, per epoch
    epoch = times[-1] - times[-2] if len(times) > 1 else times[-1]  # the last epoch: no warm-up when there are two
    return {"sec": sec, "epochs": len(times), "epoch_sec": epoch, "train_stacks": counts["train"],
            "val_stacks": counts["val"], "sec_per_stack": epoch / max(1, counts["train"]),
            "augment_sec_per_sample": augment_sec(subset, cfg, work / "loader"), "checkpoint": str(best),
            "device": cfg.train.device, "disk_bytes": disk_bytes(save_dir), **_rss()}


def augment_sec(data_yaml: Path, cfg: KitConfig, save_dir: Path) -> float:
    """Seconds per training sample for ultralytics' augmentation (mosaic, affine, flips) in one process, its stacks
    already decoded (the second pass over the dataset reads its RAM buffer)."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    from kitlib.model.trainer import train_overrides

    args = get_cfg(overrides=train_overrides(data_yaml, cfg, save_dir))
    data = check_det_dataset(str(data_yaml))
    dataset = build_yolo_dataset(args, data["train"], cfg.train.batch, data, mode="train", stride=32)
    for i in range(len(dataset)):
        dataset[i]
    t = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return (time.perf_counter() - t) / max(1, len(dataset))


def stage_predict(comp: Path, checkpoint: Path, cfg: KitConfig) -> dict:
    from kitlib.data.layout import CompetitionData
    from kitlib.infer.predictor import Predictor

    data = CompetitionData(comp)
    ids = data.submission_ids()
    predictor = Predictor.from_run([Path(checkpoint)], config=cfg, need_rule=False)
    run = run_pipeline(data, ids, cfg, Path(checkpoint).parent, predictor)  # timed as make bench times it
    detector = predictor.detectors[0]  # on the CPU when there are several devices (each worker loads its own)
    if len(predictor.devices) > 1:
        run["device_name"] = ",".join(predictor.devices)
    return {**run, "sec": run["total_sec"], "n_tomograms": len(ids), "devices": predictor.devices,
            "stack_build_sec_per_tomo": stack_build_sec(data.split_dir("test") / ids[0], detector.stack_stride, cfg),
            **_rss()}


def stack_build_sec(folder: Path, stride: int, cfg: KitConfig) -> float:
    """Seconds to cut one tomogram's stacks on the host (part of the model stage, on the CPU whatever the device)."""
    from kitlib.data.tomogram import read_tomogram
    from kitlib.infer.locate import centre_slices
    from kitlib.preprocess import model_grid, stack_batches

    grid, _ = model_grid(read_tomogram(folder, cfg.infer.decode_threads), None, cfg.preprocess)
    t = time.perf_counter()
    for _ in stack_batches(grid, centre_slices(len(grid), cfg.infer.slice_step), stride, cfg.preprocess.channels,
                           cfg.infer.batch):
        pass
    return time.perf_counter() - t


def _in_child(fn, *args):
    """`fn(*args)` in a fresh spawned process (its peak RSS is its own; CUDA is not forked)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# -- projection (pure) -----------------------------------------------------------------------------------------------
def real_records(stats: LabelStats = REAL_LABEL_STATS, seed: int = 0) -> list[TomoRecord]:
    """Records with the label file's shapes, spacings and motor counts; motor depths drawn from its z histogram."""
    rng = np.random.default_rng(seed)
    counts = [0] * stats.n_motor_free + [k for k, n in stats.motors_per_tomogram for _ in range(n)]
    rng.shuffle(counts)
    acquisitions = [a[:4] for a in stats.acquisitions for _ in range(a[4])]
    records = []
    for i, ((z, y, x, spacing), k) in enumerate(zip(acquisitions, counts)):
        rel = [(weighted_index(rng, stats.position_hist[0]) + rng.random()) / POSITION_BINS for _ in range(k)]
        records.append(TomoRecord(f"real_{i:03d}", (z, y, x), spacing, [(r * (z - 1), y / 2, x / 2) for r in rel], k))
    return records


def job_stacks(cfg: KitConfig, records: list[TomoRecord]) -> dict:
    """Training stacks of `records` by the kit's own planner: the store (every planned stack, which every fold links
    to) and fold 0's train / val splits (negatives capped per split)."""
    from kitlib.data.export import plan_fold, plan_tomogram
    from kitlib.data.folds import make_folds

    stored = sum(len(p.positives) + len(p.negatives) for p in (plan_tomogram(r, cfg) for r in records))
    folds = dict(make_folds(records, cfg.tune.n_folds, cfg.train.seed).iter_rows())
    split = {"train": 0, "val": 0}
    for plan in plan_fold(records, folds, 0, cfg):
        split[plan.split] += len(plan.positives) + len(plan.negatives)
    return {"stored": stored, "fold_train": split["train"], "fold_val": split["val"]}


def model_gflops(cfg: KitConfig, hw: tuple[int, int]) -> float:
    """GFLOPs of one forward of the preset's model at the letterboxed size of an (h, w) image."""
    from kitlib import runtime

    runtime.prepare()
    from ultralytics.utils.torch_utils import get_flops

    from kitlib.model.build import build_model

    imgsz = cfg.infer.imgsz or cfg.model.imgsz
    r = imgsz / max(hw)
    size = [int(math.ceil(n * r / 32) * 32) for n in hw]
    return float(get_flops(build_model(cfg.model.scale, cfg.preprocess.channels, width=cfg.model.width), size))


def kernel_plan(cfg: KitConfig, n_tomograms: int, per_tomo_model_s: float, per_tomo_other_s: float,
                n_stacks: int, depth: int) -> dict:
    """The plan the inference kernel's budget planner chooses for `n_tomograms` (one worker's share) costing as
    projected, with the kernel's default budget less the set-up."""
    from kitlib.infer.budget import BudgetPlanner
    from kitlib.kernel import DEFAULT_BUDGET_S

    views = len(cfg.infer.tta)
    planner = BudgetPlanner(DEFAULT_BUDGET_S - KERNEL_SETUP_S, n_tomograms, views, cfg.infer.slice_step)
    planner.record(per_tomo_model_s, per_tomo_other_s, views, n_stacks)
    plan = planner.plan(0.0, 0, depth)
    return {"n_views": plan.n_views, "slice_step": plan.slice_step, "budget_s": DEFAULT_BUDGET_S,
            "richest": plan.n_views == views and plan.slice_step == cfg.infer.slice_step}


def project(m: dict, cfg: KitConfig) -> dict:
    """The full job from the measured figures `m` (CPU stages, bytes per stack, ...), GFLOPs and the assumed GPU
    throughputs: training disk and hours per fold on a T4, inference hours on T4 x2 and on a P100, and the plans."""
    from kitlib.preprocess import resample_factor, resampled_shape

    real = real_records()
    stacks = job_stacks(cfg, real)
    folds, views = cfg.tune.n_folds, len(cfg.infer.tta)
    train_gflops = model_gflops(cfg, (cfg.model.imgsz, cfg.model.imgsz))
    grid = resampled_shape(FULL_JOB["test_shape"], resample_factor(FULL_JOB["test_shape"], None, cfg.preprocess))
    infer_gflops = model_gflops(cfg, grid[1:])
    n_stacks = math.ceil(grid[0] / cfg.infer.slice_step)

    # training, one fold's kernel on one T4: its export of every train tomogram (CPU), then the epochs
    export_s = sum(math.prod(r.shape) for r in real) * m["export_sec_per_gvoxel"] / 1e9
    decode = m["store_decode_sec_per_stack"]
    gpu_stack = TRAIN_FLOPS_PER_FORWARD * train_gflops / (GPU_TFLOPS["t4_train_amp"] * 1e3)
    loader_stack = (m["augment_sec_per_sample"] + MOSAIC_READS * decode) / KAGGLE_CPUS
    val_stack = max(train_gflops / (GPU_TFLOPS["t4_infer_fp16"] * 1e3), decode / KAGGLE_CPUS)
    epoch_s = stacks["fold_train"] * max(gpu_stack, loader_stack) + (stacks["fold_val"] * val_stack if cfg.train.val
                                                                     else 0.0)

    # inference, per tomogram: the CPU stages as measured (each T4 worker has 2 of the 4 vCPUs, as this machine has 2
    # cores), then the model stage: stacks cut on the host (measured), copied to the GPU and run at the assumed
    # throughput; nothing overlapped
    s = m["infer_cpu_stages_sec_per_tomo"]
    other_s = s["read"] + s["normalize"] + s["fusion"]
    copy_s = n_stacks * views * folds * math.prod(grid[1:]) * cfg.preprocess.channels / (PCIE_GB_S * 1e9)
    host_s = m["stack_build_sec_per_tomo"] * views + copy_s
    out = {"basis": "PROJECTION from measured CPU figures, GFLOPs and assumed GPU throughputs; not a GPU measurement",
           "train_disk_gb_all_folds": stacks["stored"] * m["bytes_per_stack"] / 1e9,
           "train_hours_per_fold_t4": (export_s + cfg.train.epochs * epoch_s) / 3600,
           "train_export_hours_per_fold": export_s / 3600, "train_epoch_sec_t4": epoch_s,
           "train_step_bound": "GPU" if gpu_stack >= loader_stack else "data loader", "epochs": cfg.train.epochs,
           "stacks": stacks, "gflops_train_forward": train_gflops, "gflops_infer_forward": infer_gflops,
           "test_grid": grid, "infer_stacks_per_tomo": n_stacks, "infer_forwards_per_tomo": n_stacks * views * folds}
    for gpu, workers, tflops in (("t4x2", 2, GPU_TFLOPS["t4_infer_fp16"]), ("p100", 1, GPU_TFLOPS["p100_infer_fp16"])):
        model_s = host_s + n_stacks * views * folds * infer_gflops / (tflops * 1e3)
        share = math.ceil(FULL_JOB["test_tomograms"] / workers)  # one worker's tomograms
        out[f"infer_sec_per_tomo_{gpu}"] = other_s + model_s
        out[f"infer_hours_{gpu}"] = (KERNEL_SETUP_S + share * (other_s + model_s)) / 3600
        out[f"plan_{gpu}"] = kernel_plan(cfg, share, model_s, other_s, n_stacks, grid[0])
    out["store_options_gb"] = {name: stacks["stored"] * f["bytes_per_stack"] / 1e9 for name, f in m["formats"].items()}
    fewer = cfg.override({"export": {"negatives_per_tomo": 1}}, "rehearse")
    out["store_options_gb"][FEWER_NEGATIVES] = job_stacks(fewer, real)["stored"] * m["bytes_per_stack"] / 1e9
    out["assumptions"] = assumptions(cfg, m, stacks, gpu_stack, loader_stack)
    return out


def assumptions(cfg: KitConfig, m: dict, stacks: dict, gpu_stack: float, loader_stack: float) -> list[str]:
    from kitlib.kernel import DEFAULT_BUDGET_S

    t, i = cfg.train, cfg.infer
    return [
        f"job: {FULL_JOB['train_tomograms']} train tomograms with the label file's shapes, spacings and motor counts "
        f"({stacks['stored']} stacks planned by the kit's own export: {cfg.export.positives_per_motor} per motor, "
        f"{cfg.export.negatives_per_tomo} negatives per tomogram), {t.epochs} epochs per fold, {cfg.tune.n_folds} "
        f"folds; {FULL_JOB['test_tomograms']} test tomograms of {'x'.join(map(str, FULL_JOB['test_shape']))}, "
        f"{cfg.tune.n_folds} folds x {len(i.tta)} view(s), slice step {i.slice_step}",
        "disk: measured bytes per stack of the real-size synthetic export x the stacks planned; one store serves "
        "every fold of a run (export/stacks, folds are hard links); GB = 1e9 bytes; the stacks are stored "
        "uncompressed, so their size does not depend on what the tomograms hold (the compressed formats' would)",
        f"GPU throughput (assumed, TFLOP/s effective): {GPU_TFLOPS}; training = {TRAIN_FLOPS_PER_FORWARD:g}x the "
        f"forward's GFLOPs per stack ({gpu_stack * 1e3:.1f} ms on a T4)",
        f"training data loader: ultralytics' augmentation measured here ({m['augment_sec_per_sample'] * 1e3:.1f} ms "
        f"a sample, one process) + {MOSAIC_READS} stack decodes ({m['store_decode_sec_per_stack'] * 1e3:.1f} ms "
        f"each, measured) over {KAGGLE_CPUS} Kaggle vCPUs: {loader_stack * 1e3:.1f} ms a stack; a step costs the "
        f"slower of GPU and loader",
        "export on Kaggle: seconds per voxel measured here (2 cores) applied to the real train set, every fold's "
        "kernel exporting every train tomogram",
        f"inference CPU stages (read, normalise, fusion, stack cutting) as measured here at the test shape, per "
        f"worker; host -> GPU copies at {PCIE_GB_S:g} GB/s; nothing overlapped; set-up {KERNEL_SETUP_S:g} s; the "
        f"kernel's default budget {DEFAULT_BUDGET_S / 3600:g} h for the plan",
        "a measured CUDA figure replaces none of these unless it comes from the GPU named (see measured_cuda)",
    ]


# -- driver ----------------------------------------------------------------------------------------------------------
def rehearse_config(device: str, epochs: int, imgsz: int | None) -> KitConfig:
    """The default preset on the CPU in fp32, or on CUDA (training on GPU 0, inference on every visible GPU)."""
    import torch

    if device == "cuda":
        gpus = ",".join(str(k) for k in range(torch.cuda.device_count()))
        changes = {"train": {"device": "0"}, "infer": {"device": gpus, "half": True}}
    else:
        changes = {"train": {"device": "cpu"}, "infer": {"device": "cpu", "half": False}}
    changes["train"]["epochs"] = epochs
    if imgsz:
        changes["model"] = {"imgsz": imgsz}
    return KitConfig.preset("default").override(changes, "rehearse")


def run_rehearsal(args: argparse.Namespace) -> dict:
    import torch

    load_before = os.getloadavg()[0]
    cfg = rehearse_config(args.device, args.epochs, 96 if args.quick else None)
    size = "tiny" if args.quick else "real"
    cache = args.cache / f"{size}-{args.n_train}+{args.n_test}-seed{SEED}"
    comp, work = cache / "comp", cache / "work"
    synth_json = cache / "synth.json"
    if synth_json.is_file() and (comp / "sample_submission.csv").is_file():
        synth = {**json.loads(synth_json.read_text()), "cached": True}
    else:
        synth = _in_child(stage_synth, comp, size, args.n_train, args.n_test, SEED)
        synth_json.write_text(json.dumps(synth, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)  # the rehearsal's own scratch: an old stacks store would be reused
    export = _in_child(stage_export, comp, work, cfg)
    train = _in_child(stage_train, Path(export["data_yaml"]), work, cfg, args.max_stacks, max(2, args.max_stacks // 4))
    predict = _in_child(stage_predict, comp, Path(train["checkpoint"]), cfg)
    stages = {"synth": synth, "export": export, "train": train, "predict": predict}
    measured = {
        "export_sec_per_gvoxel": export["sec_per_gvoxel"], "bytes_per_stack": export["bytes_per_stack"],
        "formats": export["formats"],
        "store_decode_sec_per_stack": export["formats"][CURRENT_FORMAT]["decode_sec_per_stack"],
        "augment_sec_per_sample": train["augment_sec_per_sample"],
        "infer_cpu_stages_sec_per_tomo": predict["stages_sec_per_tomo"],
        "stack_build_sec_per_tomo": predict["stack_build_sec_per_tomo"],
    }
    projection = project(measured, KitConfig.preset("default"))  # the full job: the preset's own epochs and device
    if args.device == "cuda":
        projection["measured_cuda"] = {"device": predict["device_name"], "infer_sec_per_tomo": predict["sec_per_tomo"],
                                       "train_sec_per_stack": train["sec_per_stack"]}
    return {
        "quick": args.quick, "device": args.device, "git_commit": git_commit(), "cpu_count": os.cpu_count(),
        "load_avg_1min": {"start": load_before, "end": os.getloadavg()[0]},  # others' work on the same cores
        "torch": torch.__version__, "preset": "default",
        "config": {"imgsz": cfg.model.imgsz, "scale": cfg.model.scale, "batch": cfg.train.batch,
                   "epochs": cfg.train.epochs, "train_device": cfg.train.device, "infer_device": cfg.infer.device,
                   "half": cfg.infer.half, "tta": list(cfg.infer.tta), "slice_step": cfg.infer.slice_step,
                   "stack_stride": cfg.preprocess.stack_stride, **grid_policy(cfg.preprocess)},
        "synth_sec_per_tomo": synth["sec_per_tomo"],
        "export_sec_per_tomo": export["sec_per_tomo"],
        "export_bytes_per_tomo": export["disk_bytes"] / export["n_tomograms"],
        "train_sec_per_stack": train["sec_per_stack"],
        "infer_sec_per_tomo": predict["sec_per_tomo"],
        "peak_rss_mb": max(max(s["peak_rss_mb"], s["children_peak_rss_mb"]) for s in stages.values()),
        "disk_bytes": {name: s["disk_bytes"] for name, s in stages.items() if "disk_bytes" in s},
        "stages": stages,
        "projection": projection,
    }


def markdown(r: dict) -> str:
    """The report: stages as measured, then the projection with what it rests on."""
    p, st = r["projection"], r["stages"]
    shapes = ", ".join(f"{'x'.join(map(str, t['shape']))} @ {t['spacing']} A" for t in st["synth"]["train"])
    tests = ", ".join("x".join(map(str, t["shape"])) for t in st["synth"]["test"])
    lines = [
        f"Rehearsal ({'quick, tiny data' if r['quick'] else 'real size'}): default preset on {r['device']} "
        f"({st['predict']['device_name']}), {r['cpu_count']} CPU cores (1-min load average "
        f"{r['load_avg_1min']['start']:.1f} at the start, {r['load_avg_1min']['end']:.1f} at the end), torch "
        f"{r['torch']}, commit {r['git_commit']}.",
        f"Train tomograms: {shapes}; test: {tests}.",
        "",
        "| stage | seconds | per unit | disk written | peak RSS MB |",
        "| --- | --- | --- | --- | --- |",
        f"| synth{' (cached)' if st['synth'].get('cached') else ''} | {st['synth']['sec']:.1f} | "
        f"{st['synth']['sec_per_tomo']:.1f} s/tomogram ({st['synth']['ns_per_voxel']:.0f} ns/voxel) | "
        f"{st['synth']['disk_bytes'] / 1e6:.0f} MB | "
        f"{st['synth']['peak_rss_mb']:.0f} |",
        f"| export | {st['export']['sec']:.1f} | {r['export_sec_per_tomo']:.1f} s/tomogram, "
        f"{st['export']['n_stacks']} stacks | {st['export']['disk_bytes'] / 1e6:.1f} MB | "
        f"{st['export']['peak_rss_mb']:.0f} |",
        f"| train ({st['train']['epochs']} epoch(s), {st['train']['train_stacks']} + {st['train']['val_stacks']} val "
        f"stacks) | {st['train']['sec']:.1f} | {r['train_sec_per_stack']:.2f} s/stack (last epoch) | "
        f"{st['train']['disk_bytes'] / 1e6:.1f} MB | "
        f"{max(st['train']['peak_rss_mb'], st['train']['children_peak_rss_mb']):.0f} |",
        f"| predict ({', '.join(st['predict']['devices'])}) | {st['predict']['sec']:.1f} | "
        f"{r['infer_sec_per_tomo']:.1f} s/tomogram | 0 | {st['predict']['peak_rss_mb']:.0f} |",
        "",
        "Prediction per tomogram (1 model): " + ", ".join(
            f"{k} {v:.2f} s" for k, v in st["predict"]["stages_sec_per_tomo"].items())
        + f" (read runs in the background; stack cutting, inside model: "
          f"{st['predict']['stack_build_sec_per_tomo']:.2f} s).",
        "",
        f"**Projection to the full job** ({p['basis']}):",
        "",
        "| figure | projected | goal |",
        "| --- | --- | --- |",
        f"| training disk, all folds (one store) | {p['train_disk_gb_all_folds']:.1f} GB | <= {DISK_GOAL_GB:g} GB |",
        f"| training, hours per fold on one T4 (export {p['train_export_hours_per_fold']:.2f} h + "
        f"{p['epochs']} epochs; step bound: {p['train_step_bound']}) | "
        f"{p['train_hours_per_fold_t4']:.2f} h | 12 h |",
        f"| inference on T4 x2 ({p['infer_sec_per_tomo_t4x2']:.2f} s/tomogram per worker; plan "
        f"{p['plan_t4x2']['n_views']} view(s), step {p['plan_t4x2']['slice_step']}) | {p['infer_hours_t4x2']:.2f} h "
        f"| <= {INFER_GOAL_H:g} h |",
        f"| inference on a P100 ({p['infer_sec_per_tomo_p100']:.2f} s/tomogram; plan {p['plan_p100']['n_views']} "
        f"view(s), step {p['plan_p100']['slice_step']}) | {p['infer_hours_p100']:.2f} h | 12 h |",
        "",
        "Training store formats, measured on the rehearsal's stacks (lossless ones have no pixel error):",
        "",
        "| store | bytes / stack | decode ms / stack | mean abs pixel error | projected GB, all folds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, f in st["export"]["formats"].items():
        lines.append(f"| {name} | {f['bytes_per_stack']:.0f} | {f['decode_sec_per_stack'] * 1e3:.1f} | "
                     f"{f['mean_abs_error']:.2f} | {p['store_options_gb'][name]:.1f} |")
    lines += [f"| {FEWER_NEGATIVES} | | | 0 | {p['store_options_gb'][FEWER_NEGATIVES]:.1f} |", "", "Assumptions:", ""]
    lines += [f"- {a}" for a in p["assumptions"]]
    if "measured_cuda" in p:
        c = p["measured_cuda"]
        lines.append(f"- measured on {c['device']}: inference {c['infer_sec_per_tomo']:.2f} s/tomogram (1 model), "
                     f"training {c['train_sec_per_stack'] * 1e3:.1f} ms/stack")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny tomograms at 96 px, for tests")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: train on GPU 0, infer on all")
    parser.add_argument("--n-train", type=int, default=3, help="train tomograms")
    parser.add_argument("--n-test", type=int, default=2, help="test tomograms")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (the last one is timed)")
    parser.add_argument("--max-stacks", type=int, default=16, help="training stacks at most (val: a quarter)")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "rehearse", help="tomograms and scratch")
    parser.add_argument("--out", type=Path, default=None, help="results stem (default: bench/results/rehearse)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "bench" / "results" / ("rehearse_quick" if args.quick else "rehearse")
    result = run_rehearsal(args)
    write_results(out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
