"""Time budget: choose how many TTA views and which slice step the next tomogram can afford.

Cost model: a tomogram costs `overhead + unit * views * ceil(depth / step)` seconds, `unit` being one stack in one
view through every model of the ensemble and `depth` the slices of the grid the model sees. Both are learnt from the
tomograms done so far; before the first, from a probe (`record(..., probe=True)`), else the cheapest plan is taken.
The plan keeps every tomogram: when the projection runs over, it sheds views first (down to one), then widens the
slice step (up to `max_step`).
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
    """Picks the richest `Plan` whose projected cost for all remaining tomograms fits the remaining budget.

    `budget_s` None means no budget (always the richest plan); 0 or less, the cheapest plan for every tomogram.
    """

    budget_s: float | None
    n_tomograms: int
    max_views: int
    base_step: int
    max_step: int = 32
    _unit_s: list[float] = field(default_factory=list)  # seconds per (view x stack), observed
    _overhead_s: list[float] = field(default_factory=list)  # seconds per tomogram outside the model, observed
    _probed: bool = False  # what was observed is a probe's, to be replaced by the first tomogram's

    @property
    def cheapest(self) -> Plan:
        """One view at the widest slice step."""
        return Plan(1, max(self.base_step, self.max_step))

    def wants_probe(self) -> bool:
        """Whether a probe would change the next plan: a positive budget and nothing learnt yet."""
        return self.budget_s is not None and self.budget_s > 0 and not self._unit_s

    def record(self, model_s: float, other_s: float, n_views: int, n_stacks: int, probe: bool = False) -> None:
        """Learn from one finished tomogram: `model_s` for `n_stacks` stacks in `n_views` TTA views, `other_s`
        outside the model. A `probe` (part of a tomogram, `other_s` scaled to a whole one) stands in only until the
        first tomogram is recorded."""
        if self._probed:
            self._unit_s.clear()
            self._overhead_s.clear()
        self._probed = probe
        if n_views * n_stacks > 0:
            self._unit_s.append(model_s / (n_views * n_stacks))
        self._overhead_s.append(other_s)

    def plan(self, elapsed_s: float, done: int, depth: int) -> Plan:
        """The plan for the next tomogram (of `depth` grid slices), after `done` tomograms in `elapsed_s` seconds."""
        if self.budget_s is None:
            return Plan(self.max_views, self.base_step)
        if self.budget_s <= 0 or not self._unit_s:
            return self.cheapest
        remaining = max(1, self.n_tomograms - done)
        left_s = self.budget_s - elapsed_s
        unit = sum(self._unit_s) / len(self._unit_s)
        overhead = sum(self._overhead_s) / len(self._overhead_s)
        for plan in self._plans_richest_first():
            per_tomo = overhead + unit * plan.n_views * math.ceil(depth / plan.slice_step)
            if per_tomo * remaining <= left_s:
                return plan
        return self.cheapest

    def _plans_richest_first(self):
        for n_views in range(self.max_views, 0, -1):
            yield Plan(n_views, self.base_step)
        step = self.base_step
        while step < self.max_step:
            step = min(self.max_step, step * 2)
            yield Plan(1, step)
