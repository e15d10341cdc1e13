"""The competition's F-beta over tomograms, as one per-tomogram `breakdown` that `score` and `summarize` build on.

Rules (the host's metric, restated): a prediction "has motor" unless any of its coordinates is -1; a solution row
with a -1 coordinate is a tomogram without motor. A predicted motor within `min_radius / Voxel spacing` voxels
(inclusive) of the nearest true motor is a TP; farther away it is an FN only; a missed motor is an FN, a motor
predicted in a motor-free tomogram an FP, nothing predicted where there is nothing a TN.
"""

from __future__ import annotations

from typing import NoReturn

import polars as pl

COORDS = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]
SPACING = "Voxel spacing"
NO_MOTOR = -1.0
OUTCOMES = ("TP", "FP", "FN", "TN")
_SHOWN_IDS = 5
_IS_MOTOR = ~pl.any_horizontal([pl.col(c) == NO_MOTOR for c in COORDS])


def _fail(frame: str, problem: str) -> NoReturn:
    raise ValueError(f"{frame}: {problem}")


def _clean(df: pl.DataFrame, frame: str, numeric: list[str]) -> pl.DataFrame:
    """Check columns, types and missing values; return tomo_id as text and `numeric` as Float64."""
    missing = [c for c in ["tomo_id", *numeric] if c not in df.columns]
    if missing:
        _fail(frame, f"missing columns {missing}; found {df.columns}")
    bad_types = [c for c in numeric if not df.schema[c].is_numeric()]
    if bad_types:
        _fail(frame, f"non-numeric columns {bad_types}")
    out = df.select(pl.col("tomo_id").cast(pl.String), *[pl.col(c).cast(pl.Float64) for c in numeric])
    gaps = [c for c in out.columns if out[c].null_count() or (c in numeric and out[c].is_nan().any())]
    if gaps:
        _fail(frame, f"null or NaN values in {gaps}")
    return out


def _id_problem(solution_ids: set[str], submission_ids: set[str]) -> str | None:
    parts = []
    for what, ids in (("missing", solution_ids - submission_ids), ("unknown", submission_ids - solution_ids)):
        if ids:
            shown = sorted(ids)[:_SHOWN_IDS]
            more = f" and {len(ids) - len(shown)} more" if len(ids) > len(shown) else ""
            parts.append(f"{len(ids)} {what} tomo_id(s) {shown}{more}")
    return "; ".join(parts) or None


def breakdown(solution: pl.DataFrame, submission: pl.DataFrame, min_radius: float = 1000.0) -> pl.DataFrame:
    """One row per tomogram, sorted by tomo_id: tomo_id, outcome (TP/FP/FN/TN), dist_A, voxel_spacing, Motor axis 0-2.

    `dist_A` is the distance in Å from the prediction to the nearest true motor, null where either is absent.
    The predicted coordinates are those submitted (-1 where no motor was predicted). Raises ValueError on missing or
    non-numeric columns, null/NaN values, a tomo_id repeated in the submission, tomo_id sets that differ, or a
    tomogram whose solution rows disagree on the voxel spacing (or give one <= 0).
    """
    sol = _clean(solution, "solution", [*COORDS, SPACING])
    sub = _clean(submission, "submission", COORDS)
    dupes = sub.filter(pl.col("tomo_id").is_duplicated())["tomo_id"].unique().sort().to_list()
    if dupes:
        _fail("submission", f"{len(dupes)} tomo_id(s) appear more than once: {dupes[:_SHOWN_IDS]}")
    id_problem = _id_problem(set(sol["tomo_id"]), set(sub["tomo_id"]))
    if id_problem:
        _fail("submission", f"tomo_ids differ from the solution: {id_problem}")

    tomos = sol.group_by("tomo_id").agg(
        pl.col(SPACING).first().alias("voxel_spacing"),
        pl.col(SPACING).n_unique().alias("n_spacings"),
        _IS_MOTOR.sum().alias("n_motors"),
    )
    bad = tomos.filter((pl.col("n_spacings") > 1) | (pl.col("voxel_spacing") <= 0))["tomo_id"].sort().to_list()
    if bad:
        _fail("solution", f"tomogram(s) with conflicting or non-positive voxel spacing: {bad[:_SHOWN_IDS]}")

    predicted = sub.filter(_IS_MOTOR)
    nearest = (
        sol.filter(_IS_MOTOR)
        .join(predicted, on="tomo_id", suffix="_pred")
        .group_by("tomo_id")
        .agg(pl.sum_horizontal([(pl.col(c) - pl.col(f"{c}_pred")) ** 2 for c in COORDS]).sqrt().min().alias("dist"))
    )
    has_truth = pl.col("n_motors") > 0
    has_pred = _IS_MOTOR
    # Compared in voxels against min_radius / spacing, as the host's metric does, so boundary cases round alike.
    hit = pl.col("dist") <= min_radius / pl.col("voxel_spacing")
    outcome = (
        pl.when(has_truth & has_pred & hit)
        .then(pl.lit("TP"))
        .when(has_truth)
        .then(pl.lit("FN"))
        .when(has_pred)
        .then(pl.lit("FP"))
        .otherwise(pl.lit("TN"))
    )
    return (
        sub.join(tomos, on="tomo_id")
        .join(nearest, on="tomo_id", how="left")
        .select(
            "tomo_id",
            outcome.alias("outcome"),
            (pl.col("dist") * pl.col("voxel_spacing")).alias("dist_A"),
            "voxel_spacing",
            *COORDS,
        )
        .sort("tomo_id")
    )


def f_beta(tp: int, fp: int, fn: int, beta: float = 2.0) -> float:
    """(1+b²)TP / ((1+b²)TP + b²FN + FP); 0.0 when nothing is positive (no TP, FP or FN), like sklearn's fbeta_score
    that the host's metric calls."""
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    return (1 + b2) * tp / denominator if denominator else 0.0


def summarize(breakdown_df: pl.DataFrame, beta: float = 2.0) -> dict:
    """Counts and score of a `breakdown` frame: tp, fp, fn, tn, beta, f2, n_tomograms, median_dist_A.

    `f2` is the F-beta for `beta` (F2 at the default); `median_dist_A` the median distance of the TPs in Å, None
    when there is no TP.
    """
    counts = {o.lower(): int((breakdown_df["outcome"] == o).sum()) for o in OUTCOMES}
    tp_dist = breakdown_df.filter(pl.col("outcome") == "TP")["dist_A"]
    return {
        **counts,
        "beta": beta,
        "f2": f_beta(counts["tp"], counts["fp"], counts["fn"], beta),
        "n_tomograms": breakdown_df.height,
        "median_dist_A": float(tp_dist.median()) if tp_dist.len() else None,
    }


def score(solution: pl.DataFrame, submission: pl.DataFrame, min_radius: float = 1000.0, beta: float = 2.0) -> float:
    """The competition score: F-beta over tomograms (see the module docstring for the rules)."""
    return summarize(breakdown(solution, submission, min_radius), beta)["f2"]
