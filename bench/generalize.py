"""`make generalize`: train on some appearance styles, score on one the model never saw -> bench/results/generalize.*

For each held-out style it trains the demo's runs (`make demo`: cpu preset, the demo's 200 train tomograms) on data
drawn from every other style, then predicts two hidden-spacing test sets of 40 tomograms: one drawn from the styles it
trained on and one drawn only from the held-out style. The drop between the two is what an unseen rendering costs. The
demo's own model (trained on every style, `runs/demo`) scores the held-out set too when it is there, as the figure
breadth buys back. A finished run is reused (its demo.json exists); remove runs/generalize-<style> to retrain it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kitlib.data.synth import STYLES
from kitlib.demo import DEMO_SYNTH, ensure_demo_data, run_demo
from kitlib.infer.predictor import Predictor
from kitlib.run import RunDir

from bench.report import write_results
from bench.run import ROOT, git_commit
from bench.spacing import TEST_SETS, score_on

DATA = ROOT / "data" / "generalize"
TEST_SET = TEST_SETS["demo-like (bin 4)"]  # the spacing comparison's, drawn here with chosen styles
DEMO_RUN = ROOT / "runs" / "demo"


def held_out(style: str, reference: Predictor | None) -> dict:
    seen = tuple(s for s in STYLES if s != style)
    train_data, run = DATA / f"without-{style}", RunDir(ROOT / "runs" / f"generalize-{style}")
    ensure_demo_data(train_data, {**DEMO_SYNTH, "styles": seen})
    tests = {"seen": DATA / f"test-without-{style}", "held_out": DATA / f"test-{style}"}
    ensure_demo_data(tests["seen"], {**TEST_SET, "styles": seen})
    ensure_demo_data(tests["held_out"], {**TEST_SET, "styles": (style,)})
    started = time.perf_counter()
    if not run.demo.is_file():
        run_demo(data_root=train_data, run=run.root, resume=run.config.is_file())
    demo = json.loads(run.demo.read_text())
    predictor = Predictor.from_run(run.root)
    row = {"style": style, "trained_on": list(seen), "run": str(run.root), "oof_f2": demo["oof"]["f2"],
           "oof_f2_ci": demo["oof"]["f2_ci"], "tests": {}}
    for name, root in tests.items():
        row["tests"][name] = score_on(predictor, root, DATA / "submissions" / f"without-{style}-{name}.csv")
    row["drop"] = round(row["tests"]["seen"]["f2"] - row["tests"]["held_out"]["f2"], 3)
    if reference is not None:
        row["tests"]["held_out_by_all_styles_model"] = score_on(reference, tests["held_out"],
                                                                DATA / "submissions" / f"demo-{style}.csv")
    row["seconds_here"] = round(time.perf_counter() - started, 1)
    print(markdown_row(row), flush=True)
    return row


def _f2(score: dict | None) -> str:
    return "-" if score is None else f"{score['f2']:.3f} ({score['tp']}/{score['fp']}/{score['fn']})"


def markdown_row(row: dict) -> str:
    lo, hi = row["oof_f2_ci"]
    tests = row["tests"]
    return (f"| {row['style']} | {', '.join(row['trained_on'])} | {row['oof_f2']:.3f} ({lo:.2f}-{hi:.2f}) | "
            f"{_f2(tests['seen'])} | {_f2(tests['held_out'])} | **{row['drop']:+.3f}** | "
            f"{_f2(tests.get('held_out_by_all_styles_model'))} |")


def markdown(result: dict) -> str:
    lines = [f"Held-out appearance styles, cpu preset (the demo's), commit {result['git_commit']}; each test set "
             f"{TEST_SET['n_test']} tomograms, spacing hidden; F2 (TP/FP/FN).", "",
             "| held-out style | trained on | OOF F2 (95% CI) | test, seen styles | test, held-out style | drop | "
             f"held-out, demo model (all styles: {result['reference']}) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [markdown_row(r) for r in result["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hold-out", nargs="+", choices=list(STYLES), default=["ctf"], help="styles to hold out, one run each")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "generalize")
    args = p.parse_args(argv)
    reference = Predictor.from_run(DEMO_RUN) if (DEMO_RUN / "demo.json").is_file() else None
    made_by = json.loads(RunDir(DEMO_RUN).info.read_text()).get("git", "?") if reference else None
    rows = [held_out(style, reference) for style in args.hold_out]
    result = {"git_commit": git_commit(), "reference": f"{DEMO_RUN.name} made at {made_by}" if reference else "none",
              "test_set": TEST_SET, "rows": rows}
    write_results(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
