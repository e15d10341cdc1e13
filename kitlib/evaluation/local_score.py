"""Local scoring over folds: train the model that holds each fold out (or take it from the run: resumed or
imported from Kaggle), predict its held-out fold with it alone, train the verifier's fold networks on those
candidates and rescore each fold with the network that never saw it (`verify.enabled`), tune the presence rule on
all out-of-fold predictions, and score with the competition metric. Extra training sources (`cfg.data.extra`) train
every fold and are never scored; the labels override (`cfg.data.labels_override`) corrects the labels of training and
scoring alike.

Writes into the run folder (`kitlib.run.RunDir`): `folds.csv`, `oof.csv` (best candidate per tomogram, its fold,
whether it is a hit), `score.json`, `presence.json` (the tuned rule predict and the kernels read), `verifier.pt`
and its material `verify/`, and plots.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.data.folds import resolve_folds, write_folds
from kitlib.data.labels import TomoRecord, solution_frame
from kitlib.data.layout import CompetitionData
from kitlib.data.sources import load_training_labels
from kitlib.evaluation.checks import score_warnings
from kitlib.evaluation.plots import plot_f2_curve, plot_score_hist
from kitlib.infer.predict import candidates_to_submission
from kitlib.infer.predictor import Predictor, predict_shard, resolve_device
from kitlib.metric import breakdown, summarize
from kitlib.presence import f2_curve, tune_presence
from kitlib.run import RunDir, fold_of_file
from kitlib.side_by_side import run_folds_side_by_side
from kitlib.version import machine_stamp


def run_folds(data: CompetitionData, records: list[TomoRecord], cfg: KitConfig, run: RunDir,
              folds_path: Path | None = None) -> dict[str, int]:
    """The run's fold assignment: its own `folds.csv` once it has one, else `folds_path` / the data's default
    (`kitlib.data.folds.resolve_folds`), copied into the run."""
    if run.folds_csv.is_file() and folds_path is None:
        return resolve_folds(data.root, records, cfg.tune.n_folds, cfg.tune.seed, run.folds_csv)[0]
    folds, _ = resolve_folds(data.root, records, cfg.tune.n_folds, cfg.tune.seed, folds_path)
    write_folds(pl.DataFrame({"tomo_id": list(folds), "fold": list(folds.values())}), run.folds_csv)
    return folds


def check_held_out(checkpoint: Path, meta: dict, fold: int, held_out: Sequence[str]) -> None:
    """DataError unless the fold model never trained on the tomograms it is asked to score (its `kit_meta` records
    the fold it held out and those tomo_ids)."""
    if "held_out" not in meta:
        raise DataError(f"{checkpoint}: records no held-out tomograms (trained by an older kit?): cannot prove it "
                        f"did not train on fold {fold}; retrain the fold")
    trained_on = sorted(set(held_out) - set(meta["held_out"]))
    if meta.get("fold") != fold or trained_on:
        raise DataError(f"{checkpoint}: trained with other folds (it held out fold {meta.get('fold')}; "
                        f"{len(trained_on)} of fold {fold}'s tomograms were in its training set, e.g. "
                        f"{trained_on[:3]}): scoring it would leak; use the folds.csv it was trained with")


def import_folds(sources: Sequence[Path], run: RunDir) -> dict[int, Path]:
    """Copy a train kernel's outputs (`fold<k>.pt`, with its `config.yaml` and `folds.csv`) found in or below
    `sources` into the run's layout; fold -> copied checkpoint. The first config and folds CSV found become the run's."""
    found: dict[int, Path] = {}
    for source in sources:
        if not Path(source).is_dir():
            raise DataError(f"{source}: not a folder (the train kernel's output, e.g. build/kernels/train/output)")
        for ckpt in sorted(Path(source).rglob("fold*.pt")):
            fold = fold_of_file(ckpt)
            if fold is None:
                continue
            if fold in found:
                raise DataError(f"{ckpt}: fold {fold} given twice (also {found[fold]})")
            found[fold] = ckpt
    if not found:
        raise DataError(f"{', '.join(map(str, sources))}: no fold<k>.pt checkpoints (the train kernel's outputs)")
    copied: set[Path] = set()
    for fold, ckpt in found.items():
        beside = RunDir(ckpt.parent)
        for src, dst in ((beside.config, run.config), (beside.folds_csv, run.folds_csv)):
            if src.is_file() and dst not in copied:
                shutil.copy2(src, dst)
                copied.add(dst)
        target = run.fold_checkpoint(fold)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ckpt, target)
        print(f"fold {fold}: {ckpt} -> {target}", flush=True)
    if run.config not in copied:
        raise DataError(f"{', '.join(map(str, sources))}: no config.yaml beside the fold checkpoints")
    return {fold: run.fold_checkpoint(fold) for fold in found}


def local_score(
    data: CompetitionData,
    cfg: KitConfig,
    run: RunDir,
    folds_path: Path | None = None,
    resume: bool = False,
    train_missing: bool = True,
    progress: bool = True,
) -> dict:
    """Out-of-fold F2 of the kit on `data`'s train split; returns the `score.json` dict.

    `resume`: folds whose finished checkpoint is in the run are not trained again (imported ones included).
    `train_missing=False`: a fold without a checkpoint is an error instead of being trained.
    """
    from kitlib.model import epochs_trained, train_folds

    start = time.perf_counter()
    if train_missing:
        resolve_device(cfg.train.device, f"{run.config}: train.device")  # before any export
    labels = load_training_labels(data, cfg.data)  # before any training: a bad source or override fails here
    records = labels.records
    folds = run_folds(data, records, cfg, run, folds_path)
    spacings = {r.tomo_id: r.voxel_spacing for r in records}

    fold_ids = sorted(set(folds.values()))
    if train_missing:
        trained = train_folds(data, run, fold_ids, cfg, folds, labels.for_training, resume=resume)
    jobs, epochs, checkpoints, trained_on = {}, {}, {}, {}
    for fold in fold_ids:
        held_out = [r.tomo_id for r in records if folds[r.tomo_id] == fold]
        ckpt = trained[fold] if train_missing else run.fold_checkpoint(fold)
        if not ckpt.is_file():
            raise DataError(f"{ckpt}: fold {fold} has no checkpoint (train it: make push-kernel KERNEL=train FOLD={fold})")
        predictor = Predictor.from_run([ckpt], config=cfg, need_rule=False, verify=False)
        check_held_out(ckpt, predictor.detectors[0].meta, fold, held_out)
        epochs[int(fold)], checkpoints[int(fold)] = epochs_trained(ckpt), str(ckpt)
        trained_on[int(fold)] = predictor.detectors[0].meta.get("sources", {})
        jobs[fold] = predictor, held_out
    verify = cfg.verify.enabled
    shutil.rmtree(run.verify_patches, ignore_errors=True)  # the material of an earlier scoring of this run
    run.verifier.unlink(missing_ok=True)  # ... and its verifier: a new one is trained below, or none is wanted
    probes = {r.tomo_id: np.asarray(r.motors, np.float64).reshape(-1, 3) for r in records} if verify else None
    predicted = predict_held_out(data, jobs, spacings, cfg.train.parallel_folds, progress,
                                 patch_dir=run.verify_patches if verify else None, probes=probes)
    oof = _pooled_outcomes(predicted, records)
    detector_f2 = None
    if verify:
        detector_f2 = float(f2_curve(*(oof[c].to_numpy() for c in ("score", "has_motor", "hit")))[1].max())
        oof = _pooled_outcomes(_verified(predicted, run, records, folds, cfg), records)

    scores, has_motor, hit = (oof[c].to_numpy() for c in ("score", "has_motor", "hit"))
    rule = tune_presence(scores, has_motor, hit, cfg.tune.rule, cfg.tune.bootstrap, cfg.tune.seed,
                         folds=oof["fold"].to_numpy())
    rule.save(run.presence)
    oof = oof.with_columns(pl.Series("kept", rule.apply(scores)))
    oof.write_csv(run.oof)
    summary = oof_summary(oof, records)
    per_fold = {int(f): oof_summary(oof.filter(pl.col("fold") == f), records)["f2"] for f in sorted(set(folds.values()))}
    result = {
        "f2": summary["f2"],
        "f2_ci": list(rule.f2_ci),
        "f2_detector_only": detector_f2,  # with verify.enabled: the best F2 of the detector's scores, unverified
        "rule": rule.kind,
        "threshold": rule.value,
        **{k: summary[k] for k in ("tp", "fp", "fn", "tn", "n_tomograms", "median_dist_A")},
        "per_fold_f2": per_fold,
        "per_fold_epochs": epochs,
        "data": str(data.root),
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": machine_stamp(),
        "sources": labels.sources,
        "per_fold_sources": trained_on,
        "labels_override": labels.override,
        "n_errors": int(oof["error"].is_not_null().sum()),
        "folds_csv": str(run.folds_csv),
        "weights": list(checkpoints.values()),
        "plots": {
            "f2_curve": str(plot_f2_curve(scores, has_motor, hit, rule, run.plot("f2_curve"))),
            "score_hist": str(plot_score_hist(scores, has_motor, run.plot("score_hist"))),
        },
    }
    planned = None if cfg.train.time_budget_s is not None or not train_missing else cfg.train.epochs
    result["warnings"] = score_warnings(result, scores, planned)
    run.score.write_text(json.dumps(result, indent=2))
    return result


def predict_held_out(data: CompetitionData, jobs: dict[int, tuple[Predictor, list[str]]],
                     spacings: dict[str, float], parallel: int = 1, progress: bool = True,
                     patch_dir: Path | None = None, probes: dict[str, np.ndarray] | None = None
                     ) -> dict[int, pl.DataFrame]:
    """Each fold's candidates for its held-out train tomograms (`jobs`: fold -> (its predictor, their ids)); with
    `patch_dir`, their candidates and the verifier's patches (also at `probes`) are stored there.

    One fold after another, or with CPU predictors `parallel` folds at once (`train.parallel_folds`, as they trained),
    each in a spawned process with an equal share of this process's threads: the same candidates as one after another
    with those threads. Each worker holds one tomogram at a time, so the memory is `parallel` tomograms'.
    """
    parallel = min(parallel, len(jobs)) if all(p.devices == ["cpu"] for p, _ in jobs.values()) else 1
    if parallel <= 1:
        return {fold: predictor.predict_tomograms(data, "train", ids, spacings=spacings, progress=progress,
                                                  patch_dir=patch_dir, probes=probes)
                for fold, (predictor, ids) in jobs.items()}
    args = {fold: (predictor.cfg, predictor.checkpoints, data.root, "train", ids, spacings, None)
            for fold, (predictor, ids) in jobs.items()}
    return run_folds_side_by_side(partial(predict_shard, patch_dir=patch_dir, probes=probes), args, parallel,
                                  "predicting the held-out tomograms",
                                  lambda frame: f"{len(frame)} held-out tomograms predicted")


def _verified(predicted: dict[int, pl.DataFrame], run: RunDir, records: list[TomoRecord], folds: dict[str, int],
              cfg: KitConfig) -> dict[int, pl.DataFrame]:
    """The held-out candidates rescored: the verifier's fold networks trained on the material `predict_held_out`
    stored (side by side on the CPU, as the folds trained), saved as the run's `verifier.pt`, each fold's rows
    rescored by the network that never saw it."""
    from kitlib.verify.folds import rescore_held_out, train_fold_verifiers

    verifier = train_fold_verifiers(run.verify_patches, records, folds, cfg.verify, cfg.train.seed,
                                    cfg.train.folds_at_once())
    verifier.save(run.verifier)
    return {fold: rescore_held_out(c, run.verify_patches, verifier, fold) for fold, c in predicted.items()}


def _pooled_outcomes(predicted: dict[int, pl.DataFrame], records: Sequence[TomoRecord]) -> pl.DataFrame:
    """Every fold's out-of-fold rows, with their fold and `oof_outcomes`."""
    return oof_outcomes(pl.concat(c.with_columns(pl.lit(fold).alias("fold")) for fold, c in predicted.items()), records)


def oof_outcomes(candidates: pl.DataFrame, records: Sequence[TomoRecord]) -> pl.DataFrame:
    """Add `has_motor` (truth) and `hit` (the best candidate is within the hit radius of a true motor)."""
    ids = candidates["tomo_id"].to_list()
    every_candidate = candidates_to_submission(candidates, np.ones(len(ids), bool), ids)
    outcome = breakdown(solution_frame([r for r in records if r.tomo_id in set(ids)]), every_candidate)
    return candidates.join(
        outcome.select("tomo_id", pl.col("outcome").eq("TP").alias("hit"), "dist_A"), on="tomo_id"
    ).with_columns(pl.col("tomo_id").replace_strict({r.tomo_id: r.has_motor for r in records}).alias("has_motor"))


def oof_summary(oof: pl.DataFrame, records: Sequence[TomoRecord]) -> dict:
    """Competition-metric summary of the OOF rows under their presence decisions (`kept`)."""
    ids = oof["tomo_id"].to_list()
    solution = solution_frame([r for r in records if r.tomo_id in set(ids)])
    return summarize(breakdown(solution, candidates_to_submission(oof, oof["kept"].to_numpy(), ids)))


def format_table(result: dict) -> str:
    """A small text table of the per-fold and overall scores."""
    epochs = result.get("per_fold_epochs", {})
    lines = [f"{'fold':>6} {'F2':>7} {'epochs':>7}"]
    lines += [f"{fold:>6} {f2:7.4f} {epochs.get(fold) or '-':>7}" for fold, f2 in result["per_fold_f2"].items()]
    lo, hi = result["f2_ci"]
    dist = result["median_dist_A"]
    lines.append(f"{'OOF':>6} {result['f2']:7.4f}  95% CI [{lo:.3f}, {hi:.3f}]  rule={result['rule']} "
                 f"value={result['threshold']:.4g}  TP={result['tp']} FP={result['fp']} FN={result['fn']} "
                 f"TN={result['tn']}  median TP distance={'-' if dist is None else f'{dist:.0f} A'}")
    if result.get("f2_detector_only") is not None:
        lines.append(f"{'':>6} {result['f2_detector_only']:7.4f}  the detector alone, without the verifier")
    lines += [f"WARNING: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)


