"""Tomograms -> per-tomogram best candidates -> submission rows (`kitlib.infer.predictor.Predictor` drives it).

Every expected tomogram gets a row, whatever happens: a folder that cannot be read gets `-1,-1,-1` and a warning
naming it, and a time budget sheds TTA views and widens the slice step instead of dropping tomograms. With a
verifier (`kitlib.verify`) the best candidate is the one with the best verified score, which becomes the row's score.
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.data.layout import CompetitionData
from kitlib.data.submission import submission_frame
from kitlib.data.tomogram import iter_tomograms
from kitlib.infer.budget import BudgetPlanner, Plan
from kitlib.infer.fusion import Candidate
from kitlib.infer.locate import Detector, Located, locate_motor
from kitlib.infer.tta import View
from kitlib.preprocess import resample_factor, resampled_shape
from kitlib.verify.rescore import best_verified
from kitlib.verify.store import TomoPatches, save_tomo_patches

if TYPE_CHECKING:
    from kitlib.verify.verifier import Verifier  # torch: imported by whoever builds one

# Where each tomogram's time went (wall seconds): reading in the background, waiting for it, then `locate_motor`'s stages.
STAGE_COLUMNS = ("read_s", "wait_s", "normalize_s", "model_s", "fusion_s")
CANDIDATE_SCHEMA = {
    "tomo_id": pl.String,
    "z": pl.Float64,
    "y": pl.Float64,
    "x": pl.Float64,
    "score": pl.Float64,
    "detector_score": pl.Float64,  # the detector's score of the chosen candidate
    "verify_score": pl.Float64,  # the verifier's probability of it (null without a verifier)
    "n_views": pl.Int64,
    "slice_step": pl.Int64,
    "seconds": pl.Float64,
    "error": pl.String,
    **{name: pl.Float64 for name in STAGE_COLUMNS},
}


def predict_tomograms(
    data: CompetitionData,
    split: str,
    tomo_ids: Sequence[str],
    detectors: Sequence[Detector],
    cfg: KitConfig,
    views: Sequence[View],
    spacings: dict[str, float] | None = None,
    budget_s: float | None = None,
    progress: bool = True,
    verifier: Verifier | None = None,
    patch_dir: Path | None = None,
    probes: dict[str, np.ndarray] | None = None,
) -> pl.DataFrame:
    """Best candidate per tomogram (`CANDIDATE_SCHEMA`, with `STAGE_COLUMNS` timings); unreadable ones get z=y=x=-1,
    score 0 and the error text.

    `spacings` gives known voxel spacings (train folds); unknown ones use `cfg.preprocess.assumed_spacing`.
    `verifier` rescores the `infer.top_k` candidates (`cfg.verify` must cut its patches). `patch_dir` (with
    `verify.enabled`): each tomogram's candidates and patches are written there (`kitlib.verify.store`), with patches
    at its `probes` points (tomo_id -> (M, 3) original voxels: the labelled motors, for training the verifier).
    `budget_s` is the seconds for all of `tomo_ids` from this call on (a caller that set up first passes what is
    left): views are shed and the slice step widened as the projection requires, the first tomogram planned from a
    probe (`_probe`); 0 or less is the cheapest plan for every tomogram, None no budget (the richest plan).
    """
    spacings = spacings or {}
    planner = BudgetPlanner(budget_s, len(tomo_ids), len(views), cfg.infer.slice_step)
    folders = [data.split_dir(split) / t for t in tomo_ids]
    read_s: dict[Path, float] = {}
    rows = []
    started = time.perf_counter()
    stream = iter_tomograms(folders, threads=cfg.infer.decode_threads, progress=progress, desc=f"predict {split}",
                            read_seconds=read_s)
    waiting = time.perf_counter()
    for done, (folder, volume) in enumerate(stream):
        wait_s = time.perf_counter() - waiting
        tomo_id = folder.name
        if isinstance(volume, DataError):
            warnings.warn(f"{volume} -> predicting no motor for {tomo_id}", stacklevel=2)
            rows.append(_failed_row(tomo_id, str(volume), read_s.get(folder, 0.0), wait_s))
            waiting = time.perf_counter()
            continue
        spacing = spacings.get(tomo_id)
        try:
            plan = _plan(planner, volume, detectors, cfg, views, spacing, started, done)
            t = time.perf_counter()
            located = locate_motor(volume, detectors, cfg, views[: plan.n_views], spacing, slice_step=plan.slice_step,
                                   probes=(probes or {}).get(tomo_id))
            best, score, probability = _choose(located, verifier)
        except Exception as e:  # e.g. out of GPU memory on one huge tomogram: lose that row, not the whole split
            error = f"{folder}: prediction failed: {type(e).__name__}: {e}"
            warnings.warn(f"{error}\n{traceback.format_exc()} -> predicting no motor for {tomo_id}", stacklevel=2)
            rows.append(_failed_row(tomo_id, error, read_s.get(folder, 0.0), wait_s))
            del volume
            waiting = time.perf_counter()
            continue
        seconds = time.perf_counter() - t
        stage = located.seconds
        planner.record(stage["model"], seconds - stage["model"] + wait_s, plan.n_views, located.n_stacks)
        if patch_dir is not None:
            save_tomo_patches(patch_dir, _tomo_patches(tomo_id, located))
        zyx = (best.z, best.y, best.x) if best else (-1.0, -1.0, -1.0)
        rows.append((tomo_id, *zyx, score, best.score if best else 0.0, probability, plan.n_views, plan.slice_step,
                     seconds, None, read_s.get(folder, 0.0), wait_s, stage["normalize"], stage["model"],
                     stage["fusion"]))
        del volume
        waiting = time.perf_counter()
    return pl.DataFrame(rows, schema=CANDIDATE_SCHEMA, orient="row")


def _plan(
    planner: BudgetPlanner, volume: np.ndarray, detectors: Sequence[Detector], cfg: KitConfig,
    views: Sequence[View], spacing: float | None, started: float, done: int,
) -> Plan:
    """The plan for `volume`, the `done`-th tomogram of a split begun at `started` (`time.perf_counter()`), probed
    first when the planner has learnt nothing yet."""
    depth = resampled_shape(volume.shape, resample_factor(volume.shape, spacing, cfg.preprocess))[0]  # the grid the model sees
    if planner.wants_probe():
        _probe(planner, volume, depth, detectors, cfg, views[0], spacing)
    return planner.plan(time.perf_counter() - started, done, depth)


def _probe(
    planner: BudgetPlanner, volume: np.ndarray, depth: int, detectors: Sequence[Detector], cfg: KitConfig,
    view: View, spacing: float | None,
) -> None:
    """Teach `planner` what `volume` costs before its plan is chosen: a copy of its first slices, giving as many
    stacks as the cheapest plan sweeps (at most a batch), through the models in one view, the cost outside the
    model scaled to the whole volume. It costs about one cheapest-plan tomogram; a first call's warm-up and a small
    batch make it overestimate, so that the first plan errs towards the cheap."""
    step = cfg.infer.slice_step
    n_stacks = min(cfg.infer.batch, math.ceil(depth / planner.cheapest.slice_step))
    slab = volume[: n_stacks * step].copy()
    t = time.perf_counter()
    probe = locate_motor(slab, detectors, cfg, [view], spacing, slice_step=step)
    model_s = probe.seconds["model"]
    planner.record(model_s, (time.perf_counter() - t - model_s) * len(volume) / len(slab), 1, probe.n_stacks,
                   probe=True)


def _choose(located: Located, verifier: Verifier | None) -> tuple[Candidate | None, float, float | None]:
    """(best candidate, its score, its verifier probability): the detector's best, or with a verifier the best
    verified score (`kitlib.verify.rescore`) among the candidates."""
    if not located.candidates:
        return None, 0.0, None
    if verifier is None:
        return located.best, located.best.score, None
    probabilities = verifier.probability(located.patches)
    index, score = best_verified(np.array([c.score for c in located.candidates]), probabilities)
    return located.candidates[index], score, float(probabilities[index])


def _tomo_patches(tomo_id: str, located: Located) -> TomoPatches:
    if located.patches is None:
        raise ValueError("patches are cut only with verify.enabled")
    zyx = np.array([(c.z, c.y, c.x) for c in located.candidates], np.float64).reshape(-1, 3)
    scores = np.array([c.score for c in located.candidates], np.float64)
    return TomoPatches(tomo_id, zyx, scores, located.patches, located.probe_patches)


def _failed_row(tomo_id: str, error: str, read_s: float, wait_s: float) -> tuple:
    """A `CANDIDATE_SCHEMA` row for a tomogram that got no prediction."""
    return (tomo_id, -1.0, -1.0, -1.0, 0.0, 0.0, None, 0, 0, 0.0, error, read_s, wait_s, 0.0, 0.0, 0.0)


def candidates_to_submission(candidates: pl.DataFrame, keep: np.ndarray, order: Sequence[str]) -> pl.DataFrame:
    """A submission from the per-tomogram best candidates and the presence decisions `keep` (one per row, e.g.
    `rule.apply(candidates["score"])`); ids in `order` without a kept candidate get -1s."""
    keep = np.asarray(keep, bool) & (candidates["z"].to_numpy() >= 0)
    predictions = {
        row["tomo_id"]: (row["z"], row["y"], row["x"])
        for row, kept in zip(candidates.iter_rows(named=True), keep)
        if kept
    }
    return submission_frame(predictions, order)
