"""What a local score should say out loud when its figure cannot be trusted as it stands (pure: the score dict in,
sentences out). local-score's table, the demo summary and `score.json` (`warnings`) carry them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FEW_EPOCHS = 0.5  # a fold that trained under half its plan (or of the busiest fold's count) is flagged
LOW_FOLD_F2 = 0.2  # a fold this far below the best fold is flagged
MIN_TOMOGRAMS, MIN_MOTOR_TOMOGRAMS = 30, 10  # fewer scored tomograms than this cannot tell settings apart


def score_warnings(result: dict, scores: Sequence[float], planned_epochs: int | None) -> list[str]:
    """Warnings about a local score: folds that trained far fewer epochs than planned (or than each other, under a
    time budget: `planned_epochs` None), a fold scoring far below the others, a presence rule at an extreme of its
    curve, and a validation set too small to tell anything."""
    out = []
    epochs = {int(f): e for f, e in result["per_fold_epochs"].items() if e is not None}
    reference = planned_epochs or (max(epochs.values()) if epochs else None)
    for fold, n in sorted(epochs.items()):
        if reference and n < FEW_EPOCHS * reference:
            planned = f"of {planned_epochs} planned" if planned_epochs else f"against {reference} in another fold"
            out.append(f"fold {fold} trained {n} epochs {planned}: stopped early or a busy machine; "
                       f"its model is not the one this config makes")
    f2 = {int(f): v for f, v in result["per_fold_f2"].items()}
    if len(f2) > 1:
        best = max(f2.values())
        out += [f"fold {fold} F2 {v:.3f} is far below the best fold's {best:.3f}" for fold, v in sorted(f2.items())
                if v < best - LOW_FOLD_F2]
    extreme = _rule_extreme(result["rule"], result["threshold"], np.asarray(scores, np.float64))
    if extreme:
        out.append(f"presence rule at an extreme ({result['rule']} {result['threshold']:.4g}): {extreme}")
    n, motors = result["n_tomograms"], result["tp"] + result["fn"]
    if n < MIN_TOMOGRAMS or motors < MIN_MOTOR_TOMOGRAMS:
        lo, hi = result["f2_ci"]
        out.append(f"only {n} tomograms ({motors} with a motor) scored: too few to tell settings apart "
                   f"(95% CI {lo:.2f}-{hi:.2f})")
    return out


def _rule_extreme(kind: str, value: float, scores: np.ndarray) -> str | None:
    """What a rule at an end of its curve does, or None when it lies inside."""
    every, none = "every tomogram gets a motor", "no tomogram gets a motor"
    if kind == "quantile":
        return {0.0: every, 1.0: none}.get(float(value))
    if not len(scores):
        return None
    return every if value <= scores.min() else none if value > scores.max() else None
