"""Local scoring's verifier: `verify.members` networks per fold, trained on the stored candidates and motors of the
other folds' tomograms, then rescoring the fold's own out-of-fold candidates, so that no tomogram is scored by a
network that saw its labels. A test split is rescored with all of them (`Verifier.probability` without a fold)."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from kitlib.config import VerifyConfig
from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord
from kitlib.side_by_side import run_folds_side_by_side
from kitlib.verify.rescore import best_verified
from kitlib.verify.store import load_tomo_patches, patches_file, training_samples


def train_fold_verifiers(patch_dir: Path, records: list[TomoRecord], folds: dict[str, int], vcfg: VerifyConfig,
                         seed: int = 0, parallel: int = 1):
    """A `Verifier` with `vcfg.members` networks per fold, each trained on the other folds' tomograms stored in
    `patch_dir` (those that could be read), member m from seed `seed + m`; `parallel` networks at once, each in its
    own process (`kitlib.side_by_side`)."""
    from kitlib.verify.net import PatchNet
    from kitlib.verify.verifier import Verifier

    stored = [r for r in records if patches_file(patch_dir, r.tomo_id).is_file()]
    jobs = {(fold, m): (patch_dir, [r for r in stored if folds[r.tomo_id] != fold], vcfg, (seed + m) * 1000 + fold,
                        fold)
            for fold in sorted(set(folds.values())) for m in range(vcfg.members)}

    def name(job: tuple[int, int]) -> str:
        return f"fold {job[0]}" + (f" network {job[1] + 1}" if vcfg.members > 1 else "")

    if min(parallel, len(jobs)) > 1:
        states = run_folds_side_by_side(_train_one, jobs, min(parallel, len(jobs)), "training the verifier",
                                        lambda state: f"verifier trained on {state[1]} patches", name)
    else:
        states = {}
        for job, args in jobs.items():
            started = time.perf_counter()
            states[job] = _train_one(*args)
            print(f"{name(job)}: verifier trained on {states[job][1]} patches "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    nets = {}
    for (fold, _), (weights, _) in states.items():
        nets.setdefault(fold, []).append(PatchNet(vcfg.planes, vcfg.width))
        nets[fold][-1].load_state_dict(weights)
    return Verifier(nets, vcfg, str(patch_dir))


def _train_one(patch_dir: Path, records: list[TomoRecord], vcfg: VerifyConfig, seed: int, fold: int,
               threads: int | None = None) -> tuple[dict, int]:
    """(state dict, number of patches) of `fold`'s network, with `threads` torch threads (None: as they are)."""
    from kitlib import runtime
    from kitlib.verify.train import train_net

    if threads is not None:
        runtime.prepare(threads=threads)
    try:
        patches, labels = training_samples(patch_dir, records)
        return train_net(patches, labels, vcfg, seed).state_dict(), len(labels)
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{patch_dir}: fold {fold}'s verifier: {e} (too few tomograms? --set verify.enabled=false "
                        f"scores without it)") from e


def rescore_held_out(candidates: pl.DataFrame, patch_dir: Path, verifier, fold: int) -> pl.DataFrame:
    """A fold's out-of-fold rows with each tomogram's best verified candidate (`kitlib.verify.rescore`) by `fold`'s
    network: z, y, x and score replaced, `detector_score` and `verify_score` set. Rows without candidates (or that
    failed) stay as they are."""
    rows = []
    for row in candidates.iter_rows(named=True):
        if row["error"] is None and patches_file(patch_dir, row["tomo_id"]).is_file():
            item = load_tomo_patches(patch_dir, row["tomo_id"])
            if len(item.scores):
                probabilities = verifier.probability(item.patches, fold)
                best, score = best_verified(item.scores, probabilities)
                z, y, x = (float(v) for v in item.zyx[best])
                row = {**row, "z": z, "y": y, "x": x, "score": score, "detector_score": float(item.scores[best]),
                       "verify_score": float(probabilities[best])}
        rows.append(row)
    return pl.DataFrame(rows, schema=candidates.schema)
