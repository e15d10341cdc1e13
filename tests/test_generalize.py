"""`make generalize`'s report (pure: a result dict in, markdown out); the runs themselves are measured, not tested."""

from __future__ import annotations

from bench.generalize import markdown


def score(f2: float, tp: int, fp: int, fn: int) -> dict:
    return {"f2": f2, "tp": tp, "fp": fp, "fn": fn}


def test_report_names_the_held_out_style_its_scores_and_the_drop():
    row = {"style": "ctf", "trained_on": ["clean", "dose", "thick"], "oof_f2": 0.784, "oof_f2_ci": [0.678, 0.868],
           "tests": {"seen": score(0.9, 20, 1, 2), "held_out": score(0.7, 15, 3, 7)}, "drop": 0.2}
    report = markdown({"git_commit": "abc1234", "reference": "none", "rows": [row]})
    assert "| ctf | clean, dose, thick | 0.784 (0.68-0.87) | 0.900 (20/1/2) | 0.700 (15/3/7) | **+0.200** | - |" in report
    assert "commit abc1234" in report
