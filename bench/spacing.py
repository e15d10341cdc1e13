"""`make spacing`: the spacing policies compared on spacing-diverse synthetic data -> bench/results/spacing.{json,md}.

Each policy trains the demo's runs (`make demo` with `preprocess.grid` set: OOF F2 over the demo's train
tomograms, whose spacings the labels give) and predicts two test sets whose spacing is hidden, as on Kaggle: one
drawn like the demo's (bin 4, 26-79 A) and one twice as fine (bin 2), which no model saw in training. A policy's
run is reused when it has finished (its demo.json exists); remove runs/spacing-<policy> to retrain it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kitlib.config import GRID_POLICIES, KitConfig
from kitlib.data.layout import CompetitionData
from kitlib.demo import DEMO_DATA, DEMO_SYNTH, ensure_demo_data, run_demo
from kitlib.evaluation.test_split import score_test_split
from kitlib.infer.predictor import Predictor
from kitlib.preprocess import grid_policy
from kitlib.run import RunDir

from bench.report import write_results
from bench.run import ROOT, git_commit

TEST_SETS = {  # hidden-spacing test sets: the demo's distribution, and a spacing shift
    "demo-like (bin 4)": dict(n_train=0, n_test=40, size="small", seed=7),
    "twice as fine (bin 2)": dict(n_train=0, n_test=40, size="fine", seed=8),
}
DATA = ROOT / "data" / "spacing"


def score_on(predictor: Predictor, root: Path, out: Path) -> dict:
    """Predict the test split of the dataset at `root` into `out` and score it."""
    data = CompetitionData(root)
    path, _ = predictor.predict_split(data, "test", out, progress=False)
    return score_test_split(data, path)


def policy_run(policy: str) -> tuple[RunDir, dict]:
    """The demo's run for `policy` (trained unless a finished one is there) and its demo summary."""
    run = RunDir(ROOT / "runs" / f"spacing-{policy}")
    if not run.demo.is_file():
        cfg = KitConfig.preset("cpu").override({"preprocess": {"grid": policy}}, f"spacing comparison ({policy})")
        run_demo(run=run.root, config=cfg, resume=run.config.is_file())
    return run, json.loads(run.demo.read_text())


def compare(policies: list[str]) -> dict:
    rows = []
    for i, (name, synth) in enumerate(TEST_SETS.items()):
        ensure_demo_data(DATA / f"test{i}", synth)
    for policy in policies:
        started = time.perf_counter()
        run, demo = policy_run(policy)
        predictor = Predictor.from_run(run.root)
        row = {"policy": policy, "grid": grid_policy(predictor.cfg.preprocess), "run": str(run.root),
               "oof_f2": demo["oof"]["f2"], "oof_f2_ci": demo["oof"]["f2_ci"], "demo_test_f2": demo["test"]["f2"],
               "demo_seconds": demo["seconds"], "tests": {}}
        for i, name in enumerate(TEST_SETS):
            row["tests"][name] = score_on(predictor, DATA / f"test{i}", DATA / "submissions" / f"{policy}-test{i}.csv")
        row["seconds_here"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(markdown_row(row), flush=True)
    return {"git_commit": git_commit(), "demo_data": {"root": str(DEMO_DATA), **DEMO_SYNTH}, "test_sets": TEST_SETS,
            "policies": rows}


def markdown_row(row: dict) -> str:
    lo, hi = row["oof_f2_ci"]
    tests = " | ".join(f"{t['f2']:.3f} ({t['tp']}/{t['fp']}/{t['fn']})" for t in row["tests"].values())
    return f"| {row['policy']} | {row['grid']} | {row['oof_f2']:.3f} ({lo:.2f}-{hi:.2f}) | {row['demo_test_f2']:.3f} | {tests} |"


def markdown(result: dict) -> str:
    names = " | ".join(f"test F2, {n} (TP/FP/FN)" for n in result["test_sets"])
    lines = [f"Spacing policies, cpu preset otherwise, commit {result['git_commit']} "
             f"(demo data: {result['demo_data']['n_train']} train tomograms; each test set 40 tomograms, "
             "spacing hidden).", "",
             f"| policy | grid settings | OOF F2 (95% CI) | demo test F2 (12) | {names} |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in result["test_sets"]) + " |"]
    lines += [markdown_row(r) for r in result["policies"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policies", nargs="+", choices=GRID_POLICIES, default=list(GRID_POLICIES))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "spacing")
    args = p.parse_args(argv)
    result = compare(args.policies)
    write_results(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
