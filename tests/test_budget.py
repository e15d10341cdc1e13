"""The time budget: `BudgetPlanner` alone (pure: costs are recorded by hand), then predicting through
`Predictor.predict_split` with an untrained tiny run under budgets from none to too short for one tomogram.

Plans are asserted, and where a bound on the time is checked, it bounds what the plans cost: the detector is slowed
by a fixed sleep per stack (a stand-in for a slow device) and the bound is on the seconds it slept, which no load on
the machine changes (the wall time of the rest, reading and fusing, did vary threefold beside other work).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kitlib.data.layout import CompetitionData
from kitlib.data.submission import read_submission
from kitlib.data.synth import synthesize
from kitlib.infer.budget import BudgetPlanner, Plan
from kitlib.infer.predictor import Predictor
from kitlib.infer.tta import default_view_order
from kitlib.testing import tiny_run

# --- the planner alone -----------------------------------------------------------------------------------------------


def planner(budget_s: float | None, n_tomograms: int = 1) -> BudgetPlanner:
    """Learnt: 1 s per (view x stack) and no overhead; plans below are for 40-slice tomograms (10 stacks at step 4)."""
    p = BudgetPlanner(budget_s, n_tomograms, max_views=4, base_step=4, max_step=16)
    p.record(model_s=10.0, other_s=0.0, n_views=1, n_stacks=10)
    return p


@pytest.mark.parametrize("left_s, expected", [
    (1e9, Plan(4, 4)),  # ample: the richest plan
    (40, Plan(4, 4)),
    (39, Plan(3, 4)),  # views go first ...
    (10, Plan(1, 4)),
    (9, Plan(1, 8)),  # ... then the step widens
    (3, Plan(1, 16)),
    (0, Plan(1, 16)),  # hopeless: the cheapest plan, never a skipped tomogram
    (-5, Plan(1, 16)),  # the set-up already spent more than the budget
])
def test_budget_planner_sheds_views_then_widens_step(left_s, expected):
    assert planner(left_s).plan(elapsed_s=0.0, done=0, depth=40) == expected


def test_budget_planner_plans_for_every_remaining_tomogram():
    p = planner(90.0, n_tomograms=10)
    assert p.plan(elapsed_s=0.0, done=0, depth=40) == Plan(1, 8)  # 10 tomograms x 5 s fit, x 10 s do not
    assert p.plan(elapsed_s=0.0, done=8, depth=40) == Plan(4, 4)  # 2 left: 40 s each fits
    assert p.plan(elapsed_s=50.0, done=8, depth=40) == Plan(2, 4)  # ... unless time went: 20 s each
    assert p.plan(elapsed_s=0.0, done=12, depth=40) == Plan(4, 4)  # past the count: still plans for one


def test_no_budget_is_the_richest_plan_and_zero_the_cheapest():
    unlimited = BudgetPlanner(None, 5, max_views=4, base_step=4)
    assert unlimited.plan(1e9, 0, 40) == Plan(4, 4) and not unlimited.wants_probe()
    for budget_s in (0.0, -1.0):
        p = BudgetPlanner(budget_s, 5, max_views=4, base_step=4)
        assert p.plan(0.0, 0, 40) == Plan(1, 32) and not p.wants_probe()
        p.record(model_s=0.0, other_s=0.0, n_views=1, n_stacks=10)  # even what costs nothing gets the cheapest
        assert p.plan(0.0, 0, 40) == Plan(1, 32)


def test_nothing_learnt_is_the_cheapest_plan_and_asks_for_a_probe():
    p = BudgetPlanner(1e9, 5, max_views=4, base_step=4)
    assert p.wants_probe() and p.plan(0.0, 0, 40) == p.cheapest == Plan(1, 32)


def test_a_probe_plans_the_first_tomogram_then_gives_way_to_it():
    p = BudgetPlanner(100.0, 1, max_views=4, base_step=4, max_step=16)
    p.record(model_s=3.0, other_s=0.0, n_views=1, n_stacks=1, probe=True)  # 3 s per stack: a warm-up, say
    assert not p.wants_probe() and p.plan(0.0, 0, 40) == Plan(3, 4)  # 3 views x 10 stacks x 3 s = 90 s
    p.record(model_s=10.0, other_s=0.0, n_views=1, n_stacks=10)  # the first tomogram: 1 s per stack
    assert p.plan(0.0, 0, 100) == Plan(4, 4)  # the probe is forgotten: 4 x 25 x 1 s (with it, 2 s a stack: 2 views)


def test_the_cheapest_plan_never_narrows_a_wide_base_step():
    p = BudgetPlanner(0.0, 1, max_views=2, base_step=64, max_step=32)
    assert p.cheapest == Plan(1, 64) and p.plan(0.0, 0, 200) == Plan(1, 64)


# --- through the predictor -------------------------------------------------------------------------------------------

N_TEST = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[CompetitionData, Path]:
    """A synthetic competition folder of N_TEST test tomograms (32 slices of 96x96) and an untrained tiny run."""
    root = tmp_path_factory.mktemp("budget")
    comp = synthesize(root / "comp", 0, N_TEST, size="tiny", seed=5, progress=False).out
    return CompetitionData(comp), tiny_run(root / "run")


class Slow:
    """A detector slowed by a fixed sleep per stack: wall time that no load on the machine shortens (`slept`)."""

    def __init__(self, detector, per_stack_s: float):
        self.detector, self.stack_stride, self.per_stack_s = detector, detector.stack_stride, per_stack_s
        self.slept = 0.0

    def predict(self, stacks, conf, imgsz):
        self.slept += self.per_stack_s * len(stacks)
        time.sleep(self.per_stack_s * len(stacks))
        return self.detector.predict(stacks, conf, imgsz)


def predict(tiny, out: Path, budget_s, n_views: int, per_stack_s: float = 0.0, n_models: int = 1, step: int = 4):
    """predict_split of the tiny test split (every row checked, in sample order): the candidates and the seconds the
    slowed detector slept (what the plans cost the device)."""
    data, run = tiny
    names = [v.name for v in default_view_order()[:n_views]]
    predictor = Predictor.from_run(run, tta=names, overrides={"infer": {"slice_step": step}})
    slow = Slow(predictor.detectors[0], per_stack_s)
    predictor.detectors = [slow] * n_models
    path, candidates = predictor.predict_split(data, "test", out, budget_s=budget_s, progress=False)
    assert read_submission(path)["tomo_id"].to_list() == data.submission_ids()
    assert candidates["error"].is_null().all()
    return candidates, slow.slept


def plans(candidates) -> list[tuple[int, int]]:
    return list(zip(candidates["n_views"], candidates["slice_step"]))


@pytest.mark.parametrize("budget_s, expected", [
    (None, (2, 4)),  # no budget: the richest plan
    (0, (1, 32)),  # 0 is the cheapest plan, never "unlimited"
    (1e-3, (1, 32)),  # too short for anything: probed, then the cheapest plan
])
def test_a_budget_of_none_zero_or_next_to_nothing(tiny, tmp_path, budget_s, expected):
    candidates, _ = predict(tiny, tmp_path / "sub.csv", budget_s, n_views=2)
    assert plans(candidates) == [expected] * N_TEST


@pytest.mark.parametrize("n_models", [1, 2], ids=["one-model", "two-model-ensemble"])
def test_a_budget_shorter_than_one_tomogram_is_kept_with_every_row(tiny, tmp_path, n_models):
    """25 ms a stack: the richest plan (4 views, step 1: 128 stacks) costs 3.2 s a tomogram per model, the cheapest
    (1 view, step 32: 1 stack) about 25 ms; a 1 s budget for 3 tomograms used to spend the richest on the first."""
    slow = {"per_stack_s": 0.025, "n_models": n_models, "step": 1}
    cheapest, cheap_slept = predict(tiny, tmp_path / "cheap.csv", 0, n_views=4, **slow)
    assert plans(cheapest) == [(1, 32)] * N_TEST
    budget_s = 1.0
    candidates, slept = predict(tiny, tmp_path / "sub.csv", budget_s, n_views=4, **slow)
    assert plans(candidates)[0] != (4, 1)  # the first tomogram was planned from the probe
    assert slept < 1.5 * (budget_s + cheap_slept / N_TEST), plans(candidates)
