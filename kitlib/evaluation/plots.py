"""PNG plots of presence tuning (F2 against threshold and quantile, score distributions), detections and z errors.

Figures are built with ``matplotlib.figure.Figure`` (Agg rendering, no pyplot state, matplotlib's bundled fonts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kitlib.presence import PresenceRule, f2_curve, f2_quantile_curve


def plot_f2_curve(
    scores: np.ndarray, has_motor: np.ndarray, correct: np.ndarray, rule: PresenceRule, path: str | Path
) -> Path:
    """F2 vs threshold (left) and vs quantile (right); the chosen rule is marked on its panel, the same decisions as
    a hollow marker on the other; the CI (and cross-fitted F2) are in the legend."""
    s = np.asarray(scores, dtype=np.float64)
    t, f2_t = f2_curve(s, has_motor, correct)
    q, f2_q = f2_quantile_curve(s, has_motor, correct)
    pred = rule.apply(s)
    same_t = s[pred].min() if pred.any() else np.inf  # the threshold and the quantile that make the same decisions
    same_q = 1.0 - pred.mean()
    f2_here = f2_curve(s, has_motor, correct, [same_t])[1][0]
    label = f"{rule.kind} {rule.value:.3g}: F2 {rule.f2:.3f} (95% CI {rule.f2_ci[0]:.3f}-{rule.f2_ci[1]:.3f})"
    if rule.f2_cv is not None:
        label += f"\ncross-fitted F2 {rule.f2_cv:.3f}"

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_t, ax_q = fig.subplots(1, 2, sharey=True)
    finite = np.isfinite(t)
    ax_t.plot(t[finite], f2_t[finite], drawstyle="steps-pre", color="C0")  # F2 at t_i holds on (t_{i-1}, t_i]
    ax_q.plot(q, f2_q, drawstyle="steps-post", color="C0")  # F2 at k/n holds on [k/n, (k+1)/n)
    chosen, other = (ax_t, ax_q) if rule.kind == "threshold" else (ax_q, ax_t)
    x_other = same_q if rule.kind == "threshold" else same_t
    if np.isfinite(rule.value):
        chosen.plot([rule.value], [f2_here], "o", color="C3", label=label)
    if np.isfinite(x_other):
        other.plot([x_other], [f2_here], "o", mfc="none", color="C3", label="same decisions")
    ax_t.set(xlabel="threshold on best-candidate score", ylabel="F2 (out-of-fold)", ylim=(0, 1.02))
    ax_q.set(xlabel="quantile called 'no motor'")
    for ax in (ax_t, ax_q):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Presence rule on {len(s)} tomograms ({int(np.sum(has_motor))} with a motor)")
    return _save(fig, path)


def plot_score_hist(scores: np.ndarray, has_motor: np.ndarray, path: str | Path) -> Path:
    """Best-candidate score histograms of tomograms with and without a motor, on shared bins."""
    s = np.asarray(scores, dtype=np.float64)
    has = np.asarray(has_motor, dtype=bool)
    bins = np.histogram_bin_edges(s, bins=int(np.clip(len(s) // 10, 10, 50)))
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for mask, name, color in ((has, "motor", "C0"), (~has, "no motor", "C1")):
        ax.hist(s[mask], bins=bins, alpha=0.6, color=color, label=f"{name} (n={int(mask.sum())})")
    ax.set(xlabel="best-candidate score", ylabel="tomograms", title="Score distributions")
    ax.legend()
    return _save(fig, path)


def plot_detections(candidates, solution, rule: PresenceRule, path: str | Path) -> Path:
    """One row per tomogram: the best candidate's slice (marker size = score; filled when the rule keeps it) against
    the true motors' slices (green bars). `candidates` has tomo_id, z, score; `solution` the competition's columns."""
    truth: dict[str, list[float]] = {}
    for row in solution.iter_rows(named=True):
        z = row["Motor axis 0"]
        truth.setdefault(row["tomo_id"], []).extend([z] if z >= 0 else [])
    ids = candidates["tomo_id"].to_list()
    z, score = candidates["z"].to_numpy(), candidates["score"].to_numpy()
    kept = rule.apply(score) & (z >= 0)
    fig = Figure(figsize=(8, 0.8 + 0.28 * len(ids)), layout="constrained")
    ax = fig.subplots()
    for i, tomo_id in enumerate(ids):
        for tz in truth.get(tomo_id, []):
            ax.plot([tz, tz], [i - 0.35, i + 0.35], color="C2", lw=3)
    found = z >= 0
    size = 20 + 180 * np.clip(score, 0, 1)
    rows = np.arange(len(ids))
    ax.scatter(z[found & kept], rows[found & kept], s=size[found & kept], color="C3", label="kept by the rule")
    ax.scatter(z[found & ~kept], rows[found & ~kept], s=size[found & ~kept], facecolors="none", edgecolors="C3",
               label="dropped by the rule")
    ax.plot([], [], color="C2", lw=3, label="true motor")
    ax.set_yticks(rows, ids, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("slice (z)")
    ax.set_title(f"best candidate per tomogram (marker size = score; rule {rule.kind} {rule.value:.3g})")
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def plot_z_error(errors: np.ndarray, path: str | Path) -> Path:
    """|z error| against the stack centre's offset from the true motor (`kitlib.evaluation.z_error` rows: offset, z-head
    error, baseline error): every matched detection as a point, the median per whole-slice offset as a line."""
    offset, head, base = np.asarray(errors, np.float64).reshape(-1, 3).T
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    bins = np.rint(offset)
    x = np.unique(bins)
    for values, name, color in ((head, "z-head: centre + dz", "C0"), (base, "baseline: centre only", "C1")):
        ax.scatter(offset, values, s=6, alpha=0.25, color=color)
        ax.plot(x, [np.median(values[bins == b]) for b in x], "-o", ms=3, color=color, label=f"{name} (median)")
    ax.set(xlabel="stack centre - true motor z (slices)", ylabel="|z error| (slices)",
           title=f"z error of {len(offset)} matched detections (held-out tomograms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path
