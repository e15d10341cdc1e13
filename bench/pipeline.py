"""The kit's own inference pipeline (`predict_tomograms`) on the bench tomograms, with its stage split and memory."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from kitlib.config import KitConfig
from kitlib.data.layout import CompetitionData
from kitlib.infer.predict import STAGE_COLUMNS
from kitlib.version import cpu_model

UNTRAINED = "untrained (random init) default-scale model: inference speed does not depend on the weights"


def untrained_predictor(cfg: KitConfig, work: Path):
    """A `Predictor` (built the way every entry point builds one) around a freshly initialised checkpoint of
    `cfg.model.scale` at `cfg.model.imgsz`, written to `work`."""
    from kitlib.infer.predictor import Predictor
    from kitlib.testing import untrained_checkpoint

    pre = cfg.preprocess
    ckpt = untrained_checkpoint(Path(work) / "untrained.pt", cfg.model.imgsz, pre.stack_stride, cfg.model.scale,
                                pre.channels)
    return Predictor.from_run([ckpt], config=cfg, need_rule=False)


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(detector) -> str:
    """The GPU's name, or the CPU model."""
    import torch

    if detector.device.type == "cuda":
        return torch.cuda.get_device_name(detector.device)
    return cpu_model()


def hidden_read_fraction(candidates: pl.DataFrame) -> float | None:
    """The part of reading that prefetch hid behind the previous tomogram's work (the first one's cannot be hidden)."""
    later = candidates[1:]
    read = float(later["read_s"].sum())
    return 1 - float(later["wait_s"].sum()) / read if read > 0 else None


def run_pipeline(data: CompetitionData, tomo_ids: Sequence[str], cfg: KitConfig, work: Path, predictor=None) -> dict:
    """Seconds per tomogram (model loaded and warmed up beforehand), the stage split, memory and the plan used, with
    `predictor` (default: `untrained_predictor(cfg, work)`)."""
    import torch

    predictor = predictor or untrained_predictor(cfg, work)
    detector = predictor.detectors[0]
    shape = (detector.imgsz, detector.imgsz, cfg.preprocess.channels)
    detector.predict(np.zeros(shape, np.uint8), conf=cfg.infer.conf)  # warm-up: one-off kernel selection
    if detector.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(detector.device)
    rss_before = rss_mb()
    started = time.perf_counter()
    candidates = predictor.predict_tomograms(data, "test", tomo_ids, progress=False)
    total = time.perf_counter() - started
    errors = candidates["error"].drop_nulls().to_list()
    if errors:
        raise RuntimeError(f"bench tomograms failed to read: {errors}")
    stages = {name.removesuffix("_s"): float(candidates[name].mean()) for name in STAGE_COLUMNS}
    sec_per_tomo = total / len(tomo_ids)
    stages["other"] = sec_per_tomo - sum(v for k, v in stages.items() if k != "read")
    result = {
        "device": str(detector.device),
        "device_name": device_name(detector),
        "half": detector.half,
        "sec_per_tomo": sec_per_tomo,
        "total_sec": total,
        "stages_sec_per_tomo": stages,
        "prefetch_hidden_read_fraction": hidden_read_fraction(candidates),
        # all but the last tomogram's model stage ran beside the next one's read: compare to spot contention
        "model_sec_each": candidates["model_s"].to_list(),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "plan": {"n_views": int(candidates["n_views"].max()), "slice_step": int(candidates["slice_step"].max())},
    }
    if detector.device.type == "cuda":
        result["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(detector.device) / 2**20
    return result
