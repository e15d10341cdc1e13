"""Time budget: choose how many TTA views and which slice step the next tomogram can afford.

Cost model: a tomogram costs `overhead + unit * views * ceil(depth / step)` seconds, `unit` being one stack through
one model in one view. Both are learnt from the tomograms done so far. The plan keeps every tomogram: when the
projection runs over, it sheds views first (down to one), then widens the slice step (up to `max_step`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Plan:
    n_views: int
    slice_step: int


@dataclass
class BudgetPlanner:
    """Picks the richest `Plan` whose projected cost for all remaining tomograms fits the remaining budget."""

    budget_s: float
    n_tomograms: int
    max_views: int
    base_step: int
    max_step: int = 32
    _unit_s: list[float] = field(default_factory=list)  # seconds per (view x stack), observed
    _overhead_s: list[float] = field(default_factory=list)  # seconds per tomogram outside the model, observed

    def record(self, model_s: float, other_s: float, n_views: int, n_stacks: int) -> None:
        """Learn from one finished tomogram."""
        if n_views * n_stacks > 0:
            self._unit_s.append(model_s / (n_views * n_stacks))
        self._overhead_s.append(other_s)

    def plan(self, elapsed_s: float, done: int, depth: int) -> Plan:
        """The plan for the next tomogram (of `depth` slices), after `done` tomograms in `elapsed_s` seconds."""
        richest = Plan(self.max_views, self.base_step)
        if not self._unit_s:
            return richest
        remaining = max(1, self.n_tomograms - done)
        left_s = self.budget_s - elapsed_s
        unit = sum(self._unit_s) / len(self._unit_s)
        overhead = sum(self._overhead_s) / len(self._overhead_s)
        for plan in self._plans_richest_first():
            per_tomo = overhead + unit * plan.n_views * math.ceil(depth / plan.slice_step)
            if per_tomo * remaining <= left_s:
                return plan
        return Plan(1, self.max_step)

    def _plans_richest_first(self):
        for n_views in range(self.max_views, 0, -1):
            yield Plan(n_views, self.base_step)
        step = self.base_step
        while step < self.max_step:
            step = min(self.max_step, step * 2)
            yield Plan(1, step)
