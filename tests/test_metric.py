"""The competition metric: worked example, each outcome, the radius boundary, validation, and a brute-force oracle."""

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kitlib.data.labels import load_labels, solution_frame
from kitlib.metric import breakdown, f_beta, score, summarize

AXES = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]
NONE = (-1, -1, -1)
REAL_LABELS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "byu_train_labels.csv"


def solution(rows: list[tuple[str, tuple, float]]) -> pl.DataFrame:
    """rows: (tomo_id, (z, y, x), spacing); repeat a tomo_id for several motors, NONE for no motor."""
    return pl.DataFrame(
        [(t, *map(float, zyx), float(s)) for t, zyx, s in rows],
        schema=["tomo_id", *AXES, "Voxel spacing"],
        orient="row",
    )


def submission(rows: list[tuple[str, tuple]]) -> pl.DataFrame:
    return pl.DataFrame([(t, *map(float, zyx)) for t, zyx in rows], schema=["tomo_id", *AXES], orient="row")


def one(truth: tuple, pred: tuple, spacing: float = 10.0, min_radius: float = 1000.0) -> dict:
    """Breakdown row of a single tomogram."""
    return breakdown(solution([("t", truth, spacing)]), submission([("t", pred)]), min_radius).row(0, named=True)


def test_worked_example():
    sol = solution([("a", NONE, 10), ("b", (100, 100, 100), 10), ("c", (100, 100, 100), 10), ("d", (50, 50, 50), 10)])
    sub = submission([("a", (5, 5, 5)), ("b", (102, 99, 100)), ("c", (300, 100, 100)), ("d", NONE)])
    assert score(sol, sub) == pytest.approx(5 / 14)  # TP=1, FP=1, FN=2: 5 / (5 + 8 + 1)
    assert score(sol, sub) == pytest.approx(0.35714285714)
    assert breakdown(sol, sub)["outcome"].to_list() == ["FP", "TP", "FN", "FN"]


@pytest.mark.parametrize(
    "truth, pred, outcome",
    [
        ((10, 20, 30), (12, 20, 30), "TP"),
        ((10, 20, 30), (10, 20, 300), "FN"),  # too far: a miss, not also an FP
        ((10, 20, 30), NONE, "FN"),
        (NONE, (10, 20, 30), "FP"),
        (NONE, NONE, "TN"),
    ],
)
def test_each_outcome(truth, pred, outcome):
    assert one(truth, pred)["outcome"] == outcome


def test_breakdown_columns_and_distance():
    row = one((10, 20, 30), (13, 24, 30), spacing=15.6)
    assert row["dist_A"] == pytest.approx(5 * 15.6)
    assert row["voxel_spacing"] == 15.6
    assert [row[a] for a in AXES] == [13.0, 24.0, 30.0]
    assert one((10, 20, 30), NONE)["dist_A"] is None
    assert one(NONE, (10, 20, 30))["dist_A"] is None


def test_exactly_the_radius_is_a_hit_and_a_hair_beyond_is_not():
    # 3-4-5 triangle: (0, 60, 80) voxels at 10 A/voxel is exactly 1000 A.
    assert one((100, 100, 100), (100, 160, 180))["outcome"] == "TP"
    assert one((100, 100, 100), (100, 160, 180.0001))["outcome"] == "FN"


@pytest.mark.parametrize("spacing", [6.5, 13.1, 13.2, 13.3, 15.6, 16.1, 16.8, 19.2, 19.3, 19.7])
def test_radius_scales_with_spacing(spacing):
    radius_vox = 1000.0 / spacing
    assert one((0, 0, 0), (radius_vox, 0, 0), spacing)["outcome"] == "TP"  # exactly 1000 A
    assert one((0, 0, 0), (0, radius_vox * (1 + 1e-9), 0), spacing)["outcome"] == "FN"
    # The same voxel offset is a hit at a coarse spacing and a miss at a fine one.
    assert one((200, 200, 200), (200, 200, 255), spacing)["outcome"] == ("TP" if 55 * spacing <= 1000 else "FN")


def test_min_radius_parameter():
    assert one((0, 0, 0), (0, 0, 60))["outcome"] == "TP"
    assert one((0, 0, 0), (0, 0, 60), min_radius=500)["outcome"] == "FN"


def test_float_and_integer_coordinates():
    sol = solution([("a", (100, 100, 100), 13.1)])
    floats = submission([("a", (100.4, 99.6, 170.2))])
    ints = pl.DataFrame({"tomo_id": ["a"], "Motor axis 0": [100], "Motor axis 1": [100], "Motor axis 2": [170]})
    assert score(sol, floats) == 1.0
    assert score(sol, ints) == 1.0
    int_sol = sol.with_columns(pl.col(AXES).cast(pl.Int64))
    assert score(int_sol, floats) == 1.0


@pytest.mark.parametrize("pred", [(-1, 100, 100), (100, -1, 100), (100, 100, -1)])
def test_minus_one_in_any_axis_means_no_motor(pred):
    assert one((100, 100, 100), pred)["outcome"] == "FN"
    assert one(NONE, pred)["outcome"] == "TN"


def test_nearest_of_several_motors_counts():
    sol = solution([("a", (10, 10, 10), 10), ("a", (200, 200, 200), 10), ("a", (400, 10, 10), 10)])
    near_second = breakdown(sol, submission([("a", (205, 200, 200))])).row(0, named=True)
    assert near_second["outcome"] == "TP"
    assert near_second["dist_A"] == pytest.approx(50.0)
    far_from_all = breakdown(sol, submission([("a", (200, 10, 10))])).row(0, named=True)
    assert far_from_all["outcome"] == "FN"
    assert far_from_all["dist_A"] == pytest.approx(1900.0)


def test_beta_other_than_two():
    sol = solution([("a", NONE, 10), ("b", (1, 1, 1), 10), ("c", (1, 1, 1), 10), ("d", (1, 1, 1), 10)])
    sub = submission([("a", (1, 1, 1)), ("b", (1, 1, 1)), ("c", NONE), ("d", NONE)])  # TP=1, FP=1, FN=2
    assert score(sol, sub, beta=1.0) == pytest.approx(2 / (2 + 2 + 1))
    assert score(sol, sub, beta=0.5) == pytest.approx(1.25 / (1.25 + 0.25 * 2 + 1))
    assert score(sol, sub) == pytest.approx(5 / (5 + 8 + 1))


def test_f_beta_without_positives_is_zero():
    assert f_beta(0, 0, 0) == 0.0
    sol = solution([("a", NONE, 10), ("b", NONE, 10)])
    assert score(sol, submission([("a", NONE), ("b", NONE)])) == 0.0


def test_summarize():
    sol = solution([("a", NONE, 10), ("b", (0, 0, 0), 10), ("c", (0, 0, 0), 10), ("d", NONE, 10), ("e", (0, 0, 0), 10)])
    sub = submission([("a", (1, 1, 1)), ("b", (0, 0, 3)), ("c", (0, 0, 5)), ("d", NONE), ("e", NONE)])
    s = summarize(breakdown(sol, sub))
    assert (s["tp"], s["fp"], s["fn"], s["tn"], s["n_tomograms"]) == (2, 1, 1, 1, 5)
    assert s["f2"] == pytest.approx(10 / (10 + 4 + 1))
    assert s["median_dist_A"] == pytest.approx(40.0)
    assert summarize(breakdown(sol, sub), beta=1.0)["f2"] == pytest.approx(4 / (4 + 1 + 1))
    assert summarize(breakdown(sol, sub.with_columns(pl.lit(-1.0).alias("Motor axis 0"))))["median_dist_A"] is None


def test_row_order_does_not_matter():
    sol = solution([("a", NONE, 10), ("b", (0, 0, 0), 13.1), ("c", (9, 9, 9), 19.7)])
    sub = submission([("c", (9, 9, 90)), ("a", NONE), ("b", (0, 0, 50))])
    assert breakdown(sol, sub).equals(breakdown(sol.reverse(), sub.reverse()))


def test_mismatched_ids_are_named():
    sol = solution([("a", NONE, 10), ("b", NONE, 10)])
    with pytest.raises(ValueError, match=r"missing.*'b'") as err:
        score(sol, submission([("a", NONE), ("zz", NONE)]))
    assert "'zz'" in str(err.value)
    many = solution([(f"t{i:03d}", NONE, 10) for i in range(50)])
    with pytest.raises(ValueError, match=r"49 missing tomo_id\(s\) \['t001'.* and 44 more"):
        score(many, submission([("t000", NONE)]))


def test_duplicate_submission_ids():
    sol = solution([("a", NONE, 10), ("b", NONE, 10)])
    with pytest.raises(ValueError, match=r"more than once.*'a'"):
        score(sol, submission([("a", NONE), ("a", (1, 1, 1)), ("b", NONE)]))


def test_missing_or_bad_columns():
    sol = solution([("a", NONE, 10)])
    with pytest.raises(ValueError, match=r"submission: missing columns \['Motor axis 2'\]"):
        score(sol, submission([("a", NONE)]).drop("Motor axis 2"))
    with pytest.raises(ValueError, match=r"solution: missing columns \['Voxel spacing'\]"):
        score(sol.drop("Voxel spacing"), submission([("a", NONE)]))
    with pytest.raises(ValueError, match=r"non-numeric columns \['Motor axis 1'\]"):
        score(sol, submission([("a", NONE)]).with_columns(pl.lit("1").alias("Motor axis 1")))
    with pytest.raises(ValueError, match="null or NaN"):
        score(sol, submission([("a", NONE)]).with_columns(pl.lit(float("nan")).alias("Motor axis 0")))


def test_conflicting_spacing_in_solution():
    sol = solution([("a", (0, 0, 0), 10), ("a", (50, 50, 50), 13.1)])
    with pytest.raises(ValueError, match=r"voxel spacing.*'a'"):
        score(sol, submission([("a", NONE)]))


def test_real_label_file_as_solution():
    if not REAL_LABELS.exists():
        pytest.skip(f"{REAL_LABELS} not present")
    records = load_labels(REAL_LABELS)
    sol = solution_frame(records)
    last_motor = submission([(r.tomo_id, r.motors[-1] if r.motors else NONE) for r in records])
    assert score(sol, last_motor) == 1.0
    s = summarize(breakdown(sol, submission([(r.tomo_id, NONE) for r in records])))
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (0, 0, 362, 286)
    assert s["f2"] == 0.0


# --- brute-force oracle on random cases -------------------------------------------------------------------------


def brute_force(truth: dict[str, list], spacing: dict[str, float], preds: dict[str, tuple], beta: float) -> float:
    """A direct restatement of the rules, one tomogram at a time."""
    tp = fp = fn = 0
    for tomo, motors in truth.items():
        pred = preds[tomo]
        predicted = all(c != -1 for c in pred)
        if motors and predicted:
            nearest = min(math.dist(m, pred) for m in motors)
            if nearest <= 1000.0 / spacing[tomo]:
                tp += 1
            else:
                fn += 1
        elif motors:
            fn += 1
        elif predicted:
            fp += 1
    b2 = beta**2
    total = (1 + b2) * tp + b2 * fn + fp
    return (1 + b2) * tp / total if total else 0.0


def random_case(rng: np.random.Generator):
    spacings = [6.5, 13.1, 13.2, 13.3, 15.6, 16.1, 16.8, 19.2, 19.3, 19.7]
    truth, spacing, preds = {}, {}, {}
    for i in range(int(rng.integers(1, 30))):
        tomo = f"tomo_{i:03d}"
        spacing[tomo] = float(rng.choice(spacings))
        motors = [tuple(rng.uniform(0, 500, 3)) for _ in range(int(rng.choice([0, 0, 1, 1, 1, 2, 4])))]
        truth[tomo] = motors
        kind = rng.choice(["none", "partial", "near", "anywhere"])
        if kind == "none":
            preds[tomo] = NONE
        elif kind == "partial":
            pred = list(rng.uniform(0, 500, 3))
            pred[int(rng.integers(3))] = -1
            preds[tomo] = tuple(pred)
        elif kind == "near" and motors:
            # Offsets around the hit radius, so both sides of the boundary are exercised.
            direction = rng.normal(size=3)
            radius = rng.uniform(0.5, 1.5) * 1000.0 / spacing[tomo]
            preds[tomo] = tuple(np.asarray(motors[0]) + radius * direction / np.linalg.norm(direction))
        else:
            preds[tomo] = tuple(rng.uniform(0, 500, 3))
    return truth, spacing, preds


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    truth, spacing, preds = random_case(rng)
    sol = solution([(t, m, spacing[t]) for t, motors in truth.items() for m in motors or [NONE]])
    sub = submission(list(preds.items()))
    beta = float(rng.choice([0.5, 1.0, 2.0, 3.0]))
    assert score(sol, sub, beta=beta) == pytest.approx(brute_force(truth, spacing, preds, beta), abs=1e-12)
