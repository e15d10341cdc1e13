import json

import numpy as np
import pytest

from kitlib.data.errors import DataError
from kitlib.evaluation.plots import plot_f2_curve, plot_score_hist
from kitlib.presence import PresenceRule, f2_curve, f2_quantile_curve, tune_presence

# scores, has_motor, correct of five tomograms; the F2 values below are worked out by hand
S = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
HAS = np.array([1, 1, 0, 1, 0], bool)
OK = np.array([1, 0, 0, 1, 0], bool)
F2_BY_HAND = [10 / 16, 10 / 15, 5 / 14, 5 / 13, 5 / 13, 0.0]  # thresholds 0.2 0.3 0.7 0.8 0.9 inf


def _synthetic(n, seed=0, prevalence=0.5, shift=0.0):
    """Motor tomograms score higher; 85% of their best candidates are correct."""
    rng = np.random.default_rng(seed)
    has = rng.random(n) < prevalence
    ok = has & (rng.random(n) < 0.85)
    scores = np.clip(rng.normal(np.where(ok, 0.65, 0.35), 0.15) + shift, 0, 1)
    return scores, has, ok


def test_f2_curve_by_hand():
    t, f2 = f2_curve(S, HAS, OK)
    np.testing.assert_array_equal(t, [0.2, 0.3, 0.7, 0.8, 0.9, np.inf])
    np.testing.assert_allclose(f2, F2_BY_HAND)
    _, at = f2_curve(S, HAS, OK, thresholds=[0.25, 0.0, 1.0])
    np.testing.assert_allclose(at, [10 / 15, 10 / 16, 0.0])


def test_competition_worked_example():
    # truth (none, m, m, m), predictions (motor, within, too far, none)
    _, f2 = f2_curve([1.0, 1.0, 1.0, 0.0], [0, 1, 1, 1], [0, 1, 0, 0], thresholds=[0.5])
    assert f2[0] == pytest.approx(0.35714, abs=1e-5)


def test_quantile_curve_by_hand():
    q, f2 = f2_quantile_curve(S, HAS, OK)
    np.testing.assert_allclose(q, np.arange(6) / 5)
    np.testing.assert_allclose(f2, F2_BY_HAND)  # no ties: k lowest called none == threshold at the (k+1)-th score


def test_threshold_quantile_equivalence():
    s, has, ok = _synthetic(300)
    s = np.round(s, 1)  # many ties
    asc = np.sort(s)
    _, f2_t = f2_curve(s, has, ok, thresholds=np.append(asc, np.inf))
    _, f2_q = f2_quantile_curve(s, has, ok)
    np.testing.assert_array_equal(f2_q, f2_t)
    for q in (0.0, 0.29, 0.5, 0.56, 1.0):
        called = PresenceRule("quantile", q, 0, (0, 0), 0).apply(s)
        k = int(np.floor(q * len(s) + 1e-9))
        assert (~called).sum() <= k
        np.testing.assert_array_equal(called, s >= (asc[k] if k < len(s) else np.inf))
    untied = np.random.default_rng(0).permutation(100) / 100
    assert (~PresenceRule("quantile", 0.29, 0, (0, 0), 0).apply(untied)).sum() == 29


def test_tuned_values_by_hand_and_plateau_middle():
    rule = tune_presence(S, HAS, OK, rule="threshold", bootstrap=50)
    assert rule.value == pytest.approx(0.25) and rule.f2 == pytest.approx(10 / 15)
    assert tune_presence(S, HAS, OK, rule="quantile", bootstrap=50).value == pytest.approx(0.2)
    # a wrong motor candidate at 0.5 makes thresholds 0.5 and 0.6 tie: plateau (0.2, 0.6], middle 0.4
    s = np.array([0.1, 0.2, 0.5, 0.6, 0.7, 0.8])
    has, ok = np.array([0, 0, 1, 1, 1, 1], bool), np.array([0, 0, 0, 1, 1, 1], bool)
    assert tune_presence(s, has, ok, rule="threshold", bootstrap=50).value == pytest.approx(0.4)
    q = tune_presence(s, has, ok, rule="quantile", bootstrap=50).value
    assert q == pytest.approx(2.5 / 6)  # k = 2 and k = 3 tie


@pytest.mark.parametrize("kind", ["threshold", "quantile"])
def test_tuned_rule_reaches_curve_maximum(kind):
    s, has, ok = _synthetic(500, seed=1)
    rule = tune_presence(s, has, ok, rule=kind, bootstrap=100)
    best = f2_curve(s, has, ok)[1].max()
    assert rule.kind == kind and rule.n == 500
    assert rule.f2 == pytest.approx(best)
    pred = rule.apply(s)
    tp, fp = (pred & ok).sum(), (pred & ~has).sum()
    assert 5 * tp / (5 * tp + 4 * (has.sum() - tp) + fp) == pytest.approx(best)
    assert 0 < rule.f2_cv <= best + 1e-12  # cross-fitting cannot beat the in-sample optimum by much


def test_bootstrap_ci_contains_estimate_and_narrows():
    small = tune_presence(*_synthetic(100, seed=2), bootstrap=500)
    large = tune_presence(*_synthetic(2000, seed=2), bootstrap=500)
    for rule in (small, large):
        assert rule.f2_ci[0] <= rule.f2 <= rule.f2_ci[1]
    width = lambda r: r.f2_ci[1] - r.f2_ci[0]  # noqa: E731
    assert width(large) < 0.5 * width(small)
    assert tune_presence(*_synthetic(100, seed=2), bootstrap=500) == small  # deterministic for a seed


def test_auto_prefers_the_rule_that_transfers():
    # every fold model is calibrated differently (scores shifted): the threshold does not transfer, the quantile does
    parts = [_synthetic(200, seed=f, shift=0.25 * f - 0.25) for f in range(3)]
    s, has, ok = (np.concatenate(p) for p in zip(*parts))
    folds = np.repeat(np.arange(3), 200)
    auto = tune_presence(s, has, ok, folds=folds, bootstrap=50)
    threshold = tune_presence(s, has, ok, rule="threshold", folds=folds, bootstrap=50)
    assert auto.kind == "quantile" and auto.f2_cv > threshold.f2_cv
    # same calibration but the motor share differs per fold: now the threshold transfers, the quantile does not
    parts = [_synthetic(200, seed=f, prevalence=p) for f, p in enumerate((0.2, 0.5, 0.8))]
    s, has, ok = (np.concatenate(p) for p in zip(*parts))
    assert tune_presence(s, has, ok, folds=folds, bootstrap=50).kind == "threshold"


def test_bad_inputs():
    with pytest.raises(ValueError, match="of one length"):
        f2_curve(S, HAS[:3], OK)
    with pytest.raises(ValueError, match="finite"):
        f2_curve([0.1, np.nan], [1, 0], [1, 0])
    with pytest.raises(ValueError, match="cannot have a correct"):
        f2_curve([0.1, 0.2], [0, 0], [1, 0])
    with pytest.raises(ValueError, match="rule must be"):
        tune_presence(S, HAS, OK, rule="best")
    with pytest.raises(ValueError, match="0..1"):
        PresenceRule("quantile", 1.5, 0, (0, 0), 0)
    with pytest.raises(ValueError, match="kind"):
        PresenceRule("median", 0.5, 0, (0, 0), 0)


def test_save_load_round_trip(tmp_path):
    rule = tune_presence(*_synthetic(200, seed=3), bootstrap=100)
    path = rule.save(tmp_path / "weights" / "presence.json")
    assert PresenceRule.load(path) == rule
    assert json.loads(path.read_text())["kind"] == rule.kind
    legacy = {k: v for k, v in json.loads(path.read_text()).items() if k != "f2_cv"}
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    assert PresenceRule.load(tmp_path / "old.json").f2_cv is None


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "cannot read"),
        ("[1, 2]", "not a presence rule"),
        ('{"kind": "threshold", "value": 0.5}', "not a presence rule"),
        ('{"kind": "median", "value": 0.5, "f2": 0.9, "f2_ci": [0.8, 0.95], "n": 10}', "kind"),
        ('{"kind": "quantile", "value": "x", "f2": 0.9, "f2_ci": [0.8, 0.95], "n": 10}', "not a presence rule"),
        ('{"kind": "threshold", "value": 0.5, "f2": 0.9, "f2_ci": [0.8], "n": 10}', "f2_ci"),
    ],
)
def test_load_bad_file(tmp_path, text, problem):
    path = tmp_path / "presence.json"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as err:
        PresenceRule.load(path)
    assert str(err.value).startswith(str(path))


def test_load_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        PresenceRule.load(tmp_path / "absent.json")


@pytest.mark.parametrize("kind", ["threshold", "quantile"])
def test_plots_write_png(tmp_path, kind):
    s, has, ok = _synthetic(300, seed=4)
    rule = tune_presence(s, has, ok, rule=kind, bootstrap=100)
    for path in (
        plot_f2_curve(s, has, ok, rule, tmp_path / f"f2_{kind}.png"),
        plot_score_hist(s, has, tmp_path / "plots" / "hist.png"),
    ):
        data = path.read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
