"""Presence rules: which tomograms are given a motor, tuned on out-of-fold (OOF) predictions.

Per tomogram ``i``: ``s_i`` the best candidate's score, ``has_i`` the truth has a motor, ``correct_i`` the best
candidate lies within the hit radius of a true motor. A predicted motor is a TP if has & correct, a FP if not has; a
motor tomogram that is not predicted, or predicted too far away, is a FN. ``F2 = 5TP / (5TP + 4FN + FP)``, and 0
where undefined (no motor and no prediction).

Two kinds of rule:
- ``threshold`` t: predict iff ``s >= t``. Transfers to the test set as an absolute score (assumes calibration holds).
- ``quantile`` q: on the set being predicted (the whole test set), the lowest ``k = floor(q * n)`` tomograms by
  score get no motor. Ties: a tomogram is called "none" iff its score is strictly below the (k+1)-th lowest score, so
  equal scores always get the same decision and at most k are called none. Transfers as a share of motor-free
  tomograms (assumes the prevalence holds).

On one fixed set both kinds reach exactly the same decisions (quantile q is the threshold at the (k+1)-th lowest
score), so their in-sample best F2 is identical. ``tune_presence(rule="auto")`` therefore compares how they transfer:
cross-fitting over folds (tune on the other folds, apply to the held-out fold -- the threshold as a value, the
quantile on the fold's own scores -- pool the counts). With the OOF folds of separately trained models this also
measures the calibration shift between models that a test set brings.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from kitlib.data.errors import DataError

RuleKind = Literal["threshold", "quantile"]
_KINDS = ("threshold", "quantile")
_AUTO_FOLDS = 5  # random folds used to cross-fit when the caller gives none
_EPS = 1e-9  # floor(q * n) must not lose a whole tomogram to rounding (0.29 * 100 = 28.999...)


def f2_curve(
    scores: np.ndarray, has_motor: np.ndarray, correct: np.ndarray, thresholds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """F2 of "predict iff s >= t" for each threshold; by default every distinct score (ascending) and then ``inf``
    ("predict none")."""
    s, has, ok = _check(scores, has_motor, correct)
    asc = np.argsort(s, kind="stable")
    cum_tp = np.concatenate([[0], np.cumsum((has & ok)[asc])])  # among the i lowest scores
    cum_fp = np.concatenate([[0], np.cumsum(~has[asc])])
    t = np.append(np.unique(s), np.inf) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    below = np.searchsorted(s[asc], t, side="left")  # tomograms with s < t are not predicted
    tp = cum_tp[-1] - cum_tp[below]
    fp = cum_fp[-1] - cum_fp[below]
    return t, _f2(tp, has.sum() - tp, fp)


def f2_quantile_curve(
    scores: np.ndarray, has_motor: np.ndarray, correct: np.ndarray, quantiles: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """F2 of the quantile rule applied to this set, for each q; by default ``q = k / n`` for ``k = 0..n``."""
    s, _, _ = _check(scores, has_motor, correct)
    q = np.arange(len(s) + 1) / len(s) if quantiles is None else np.asarray(quantiles, dtype=np.float64)
    return q, f2_curve(s, has_motor, correct, _quantile_cut(np.sort(s), q))[1]


@dataclass
class PresenceRule:
    """A tuned presence rule. ``f2``: in-sample OOF F2 at ``value``; ``f2_ci``: percentile-bootstrap 95% CI of the
    re-tuned F2; ``n``: tomograms tuned on; ``f2_cv``: F2 when tuned on the other folds and applied to each held-out
    fold (pooled), the honest out-of-sample estimate."""

    kind: RuleKind
    value: float
    f2: float
    f2_ci: tuple[float, float]
    n: int
    f2_cv: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"rule kind must be one of {_KINDS}, got {self.kind!r}")
        if math.isnan(self.value):
            raise ValueError(f"{self.kind} value is NaN")
        if self.kind == "quantile" and not 0 <= self.value <= 1:
            raise ValueError(f"quantile value must lie in 0..1, got {self.value!r}")
        if len(self.f2_ci) != 2:
            raise ValueError(f"f2_ci must be (low, high), got {self.f2_ci!r}")
        self.f2_ci = (float(self.f2_ci[0]), float(self.f2_ci[1]))

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Which of these tomograms get a motor (the quantile rule ranks within ``scores`` itself)."""
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1 or np.isnan(s).any():
            raise ValueError(f"scores must be a 1-D array without NaN, got shape {s.shape}")
        return _predict(self.kind, self.value, s)

    def save(self, path: str | Path) -> Path:
        """Write as JSON (conventionally ``presence.json`` beside the weights)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PresenceRule:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read presence rule: {e}") from e
        try:
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            return cls(
                kind=data["kind"],
                value=float(data["value"]),
                f2=float(data["f2"]),
                f2_ci=tuple(data["f2_ci"]),
                n=int(data["n"]),
                f2_cv=None if data.get("f2_cv") is None else float(data["f2_cv"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: not a presence rule ({type(e).__name__}: {e})") from e


def tune_presence(
    scores: np.ndarray,
    has_motor: np.ndarray,
    correct: np.ndarray,
    rule: Literal["auto", "threshold", "quantile"] = "auto",
    bootstrap: int = 1000,
    seed: int = 0,
    folds: np.ndarray | None = None,
) -> PresenceRule:
    """The F2-maximising rule on OOF predictions.

    The value is the middle of the longest run of maximal F2 (the first such run on ties): a threshold midway between
    the scores that bound the plateau (its lower end taken at the lowest score when it reaches "predict all"), a
    quantile midway between the plateau's first and last ``k / n``. An edge would sit on one tomogram's score and flip
    with the slightest shift. ``rule="auto"`` takes the quantile only if its cross-fitted F2 is strictly higher.
    ``folds``: the OOF fold of each tomogram (cross-fitting); by default 5 random folds drawn from ``seed``.
    ``f2_ci`` re-tunes inside every bootstrap resample (the same for both kinds, see the module docstring).
    """
    s, has, ok = _check(scores, has_motor, correct)
    if rule not in ("auto", *_KINDS):
        raise ValueError(f"rule must be 'auto', 'threshold' or 'quantile', got {rule!r}")
    if len(s) < 2 or bootstrap < 1:
        raise ValueError(f"need at least 2 tomograms and 1 bootstrap resample, got {len(s)} and {bootstrap}")
    if folds is None:
        folds = np.random.default_rng(seed).permutation(len(s)) % min(_AUTO_FOLDS, len(s))
    folds = np.asarray(folds)
    if folds.shape != s.shape or len(np.unique(folds)) < 2:
        raise ValueError(f"folds must give each of the {len(s)} tomograms a fold, with at least 2 distinct folds")
    kinds = _KINDS if rule == "auto" else (rule,)
    cv = {kind: _cross_fitted_f2(kind, s, has, ok, folds) for kind in kinds}
    kind = "quantile" if cv.get("quantile", -1.0) > cv.get("threshold", -1.0) else kinds[0]
    value = _tune_value(kind, s, has, ok)
    f2 = float(_f2(*_counts(_predict(kind, value, s), has, ok)))
    lo, hi = np.percentile(_bootstrap_tuned_f2(s, has, ok, bootstrap, seed), [2.5, 97.5])
    return PresenceRule(kind, value, f2, (lo, hi), len(s), cv[kind])


def _check(scores, has_motor, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    has = np.asarray(has_motor, dtype=bool)
    ok = np.asarray(correct, dtype=bool)
    if s.ndim != 1 or s.shape != has.shape or s.shape != ok.shape or len(s) == 0:
        raise ValueError(f"need 1-D scores, has_motor, correct of one length > 0: {s.shape} {has.shape} {ok.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (give a tomogram without any candidate the score 0)")
    if (ok & ~has).any():
        raise ValueError("a tomogram without a motor cannot have a correct candidate")
    return s, has, ok


def _f2(tp, fn, fp):
    tp, fn, fp = (np.asarray(a, dtype=np.float64) for a in (tp, fn, fp))
    den = 5 * tp + 4 * fn + fp
    return np.divide(5 * tp, den, out=np.zeros(np.broadcast(tp, fn, fp).shape), where=den > 0)


def _counts(pred: np.ndarray, has: np.ndarray, ok: np.ndarray) -> tuple[int, int, int]:
    tp = int((pred & ok).sum())
    return tp, int(has.sum()) - tp, int((pred & ~has).sum())


def _quantile_cut(ascending: np.ndarray, q) -> np.ndarray:
    """The threshold equivalent to quantile q on this set: the (k+1)-th lowest score, or inf when k = n."""
    q = np.asarray(q, dtype=np.float64)
    if ((q < 0) | (q > 1)).any():
        raise ValueError(f"quantiles must lie in 0..1, got {q}")
    k = np.floor(q * len(ascending) + _EPS).astype(np.int64)
    return np.append(ascending, np.inf)[np.minimum(k, len(ascending))]


def _predict(kind: RuleKind, value: float, s: np.ndarray) -> np.ndarray:
    if kind == "threshold":
        return s >= value
    return s >= _quantile_cut(np.sort(s), value)


def _plateau(f2: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of maximal values (the first run on ties)."""
    edges = np.diff(np.concatenate([[0], (f2 == f2.max()).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    best = int(np.argmax(ends - starts))
    return int(starts[best]), int(ends[best])


def _tune_value(kind: RuleKind, s: np.ndarray, has: np.ndarray, ok: np.ndarray) -> float:
    if kind == "threshold":
        t, f2 = f2_curve(s, has, ok)
        i, j = _plateau(f2)
        return float((t[max(i - 1, 0)] + t[j]) / 2)
    q, f2 = f2_quantile_curve(s, has, ok)
    i, j = _plateau(f2)
    return float((q[i] + q[j]) / 2)


def _cross_fitted_f2(kind: RuleKind, s: np.ndarray, has: np.ndarray, ok: np.ndarray, folds: np.ndarray) -> float:
    total = np.zeros(3, dtype=np.int64)
    for fold in np.unique(folds):
        held = folds == fold
        value = _tune_value(kind, s[~held], has[~held], ok[~held])
        total += _counts(_predict(kind, value, s[held]), has[held], ok[held])
    return float(_f2(*total))


def _bootstrap_tuned_f2(s: np.ndarray, has: np.ndarray, ok: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Best in-sample F2 over all thresholds, for each of ``n_boot`` resamples of the tomograms (with replacement).

    A resample is a vector of counts per tomogram; with tomograms sorted by score descending, TP and FP of every
    threshold are cumulative sums of weighted counts, read at the ends of tied-score groups. Chunked to bound memory.
    """
    n = len(s)
    desc = np.argsort(-s, kind="stable")
    tp_w, fp_w, has_w = (has & ok)[desc], ~has[desc], has[desc]
    group_ends = np.flatnonzero(np.append(np.diff(s[desc]) != 0, True))
    rng = np.random.default_rng(seed)
    out = []
    chunk = max(1, 2**22 // n)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n, (b, n)) + n * np.arange(b)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n)
        tp = np.cumsum(counts * tp_w, axis=1)[:, group_ends]
        fp = np.cumsum(counts * fp_w, axis=1)[:, group_ends]
        n_has = (counts * has_w).sum(axis=1, keepdims=True)
        out.append(_f2(tp, n_has - tp, fp).max(axis=1))
    return np.concatenate(out)
