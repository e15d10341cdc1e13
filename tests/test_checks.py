"""The local score's warnings, on constructed scores (no training)."""

from __future__ import annotations

from kitlib.evaluation.checks import score_warnings

SCORES = [0.1, 0.2, 0.5, 0.9] * 15


def result(**changes) -> dict:
    base = {"per_fold_epochs": {0: 85, 1: 85}, "per_fold_f2": {0: 0.91, 1: 0.88}, "rule": "quantile",
            "threshold": 0.35, "n_tomograms": 100, "tp": 50, "fn": 6, "f2_ci": [0.85, 0.95]}
    return {**base, **changes}


def test_a_sound_score_has_no_warning():
    assert score_warnings(result(), SCORES, planned_epochs=85) == []


def test_a_fold_stopped_after_one_epoch_is_flagged():
    [w] = score_warnings(result(per_fold_epochs={0: 1, 1: 85}), SCORES, planned_epochs=85)
    assert w.startswith("fold 0 trained 1 epochs of 85 planned")


def test_under_a_time_budget_folds_are_compared_with_each_other():
    [w] = score_warnings(result(per_fold_epochs={0: 5, 1: 20}), SCORES, planned_epochs=None)
    assert w.startswith("fold 0 trained 5 epochs against 20 in another fold")


def test_a_fold_far_below_the_others_is_flagged():
    [w] = score_warnings(result(per_fold_f2={0: 0.0, 1: 0.9}), SCORES, planned_epochs=85)
    assert w == "fold 0 F2 0.000 is far below the best fold's 0.900"


def test_presence_rules_at_an_extreme_are_flagged():
    for rule, value, what in (("quantile", 0.0, "every tomogram gets"), ("quantile", 1.0, "no tomogram gets"),
                              ("threshold", 0.05, "every tomogram gets"), ("threshold", 0.95, "no tomogram gets")):
        [w] = score_warnings(result(rule=rule, threshold=value), SCORES, planned_epochs=85)
        assert w.startswith("presence rule at an extreme") and what in w, (rule, value, w)
    assert score_warnings(result(rule="threshold", threshold=0.5), SCORES, planned_epochs=85) == []


def test_a_small_validation_set_is_flagged():
    [w] = score_warnings(result(n_tomograms=12, tp=5, fn=2, f2_ci=[0.5, 1.0]), SCORES, planned_epochs=85)
    assert w.startswith("only 12 tomograms (7 with a motor) scored: too few")
