"""Local scoring over folds: train on the other folds (or use given weights), predict the held-out fold, tune the
presence rule on all out-of-fold predictions, and score with the competition metric.

Writes into `runs/<run>/`: `oof.csv` (best candidate per tomogram, its fold, and whether it is a hit), `score.json`,
`presence.json` (the tuned rule, which predict and the kernels read beside the weights), `config.yaml` and plots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from kitlib.config import KitConfig
from kitlib.data.folds import resolve_folds
from kitlib.data.labels import TomoRecord, load_labels, solution_frame
from kitlib.data.layout import CompetitionData
from kitlib.infer.predict import candidates_to_submission, load_detectors, predict_tomograms
from kitlib.infer.tta import parse_views
from kitlib.metric import breakdown, summarize
from kitlib.evaluation.plots import plot_f2_curve, plot_score_hist
from kitlib.presence import tune_presence


def fold_weights(run_dir: Path, fold: int) -> Path:
    """Where the model trained without `fold` keeps its best checkpoint."""
    return run_dir / f"fold{fold}" / "weights" / "best.pt"


def train_fold(data: CompetitionData, run: str, fold: int, cfg: KitConfig, folds: dict[str, int],
               records: list[TomoRecord]) -> Path:
    """Export the fold's stacks and train on the other folds; the best checkpoint's path."""
    from kitlib.data.export import export_fold
    from kitlib.model import train

    run_dir = Path(cfg.train.project) / run
    data_yaml = export_fold(data.root, run_dir / "export" / f"fold{fold}", fold, cfg, folds, records)
    return train(data_yaml, cfg, f"{run}/fold{fold}")


def oof_outcomes(candidates: pl.DataFrame, records: Sequence[TomoRecord]) -> pl.DataFrame:
    """Add `has_motor` (truth) and `hit` (the best candidate is within the hit radius of a true motor)."""
    ids = candidates["tomo_id"].to_list()
    every_candidate = candidates_to_submission(candidates, np.ones(len(ids), bool), ids)
    outcome = breakdown(solution_frame([r for r in records if r.tomo_id in set(ids)]), every_candidate)
    return candidates.join(
        outcome.select("tomo_id", pl.col("outcome").eq("TP").alias("hit"), "dist_A"), on="tomo_id"
    ).with_columns(pl.col("tomo_id").replace_strict({r.tomo_id: r.has_motor for r in records}).alias("has_motor"))


def local_score(
    data: CompetitionData,
    cfg: KitConfig,
    run: str,
    weights: Sequence[Path] | None = None,
    folds_path: Path | None = None,
    progress: bool = True,
) -> dict:
    """Out-of-fold F2 of the kit on `data`'s train split; returns the `score.json` dict."""
    from kitlib.model import epochs_trained

    records = load_labels(data.labels_csv)
    folds, folds_file = resolve_folds(data.root, records, cfg.tune.n_folds, cfg.tune.seed, folds_path)
    run_dir = Path(cfg.train.project) / run
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    views = parse_views(cfg.infer.tta)
    spacings = {r.tomo_id: r.voxel_spacing for r in records}

    parts, epochs = [], {}
    for fold in sorted(set(folds.values())):
        fold_weights_ = list(weights) if weights else [train_fold(data, run, fold, cfg, folds, records)]
        epochs[int(fold)] = None if weights else epochs_trained(fold_weights_[0])
        held_out = [r.tomo_id for r in records if folds[r.tomo_id] == fold]
        candidates = predict_tomograms(data, "train", held_out, load_detectors(fold_weights_, cfg), cfg, views,
                                       spacings=spacings, progress=progress)
        parts.append(candidates.with_columns(pl.lit(fold).alias("fold")))
    oof = oof_outcomes(pl.concat(parts), records)

    scores, has_motor, hit = (oof[c].to_numpy() for c in ("score", "has_motor", "hit"))
    rule = tune_presence(scores, has_motor, hit, cfg.tune.rule, cfg.tune.bootstrap, cfg.tune.seed,
                         folds=oof["fold"].to_numpy())
    rule.save(run_dir / "presence.json")
    oof = oof.with_columns(pl.Series("kept", rule.apply(scores)))
    oof.write_csv(run_dir / "oof.csv")
    summary = oof_summary(oof, records)
    per_fold = {int(f): oof_summary(oof.filter(pl.col("fold") == f), records)["f2"] for f in sorted(set(folds.values()))}
    result = {
        "f2": summary["f2"],
        "f2_ci": list(rule.f2_ci),
        "rule": rule.kind,
        "threshold": rule.value,
        **{k: summary[k] for k in ("tp", "fp", "fn", "tn", "n_tomograms", "median_dist_A")},
        "per_fold_f2": per_fold,
        "per_fold_epochs": epochs,
        "n_errors": int(oof["error"].is_not_null().sum()),
        "folds_csv": str(folds_file),
        "weights": [str(w) for w in weights] if weights else [str(fold_weights(run_dir, f)) for f in per_fold],
        "plots": {
            "f2_curve": str(plot_f2_curve(scores, has_motor, hit, rule, run_dir / "f2_curve.png")),
            "score_hist": str(plot_score_hist(scores, has_motor, run_dir / "score_hist.png")),
        },
    }
    (run_dir / "score.json").write_text(json.dumps(result, indent=2))
    return result


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
    return "\n".join(lines)


