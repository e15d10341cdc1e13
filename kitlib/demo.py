"""`make demo`: the daily loop on the embedded default data.

Synthesise a small competition-format dataset (unless real data is given), local-score it over folds with the CPU
preset, predict the test split with the fold ensemble and the tuned presence rule, and score that submission against
`test_solution.csv` when the data has one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl

from kitlib.config import KitConfig
from kitlib.data.layout import CompetitionData, find_competition_root
from kitlib.infer.predict import assumed_spacing_from_labels, load_detectors, predict_split
from kitlib.infer.tta import parse_views
from kitlib.metric import breakdown, summarize
from kitlib.evaluation.local_score import format_table, local_score
from kitlib.evaluation.plots import plot_detections
from kitlib.presence import PresenceRule

DEMO_DATA = Path("data/demo")
DEMO_SYNTH = dict(n_train=100, n_test=12, size="small", seed=0)


def run_demo(data_root: Path | None = None, run: str = "demo", preset: str = "cpu") -> dict:
    """Run the whole loop; returns the demo summary (also written to `runs/<run>/demo.json`)."""
    started = time.perf_counter()
    if data_root is None:
        data_root = DEMO_DATA
        ensure_demo_data(data_root)
    data = CompetitionData(find_competition_root(data_root))
    cfg = KitConfig.preset(preset)
    run_dir = Path(cfg.train.project) / run

    print(f"\n== local score: {cfg.tune.n_folds} folds, train on the others, predict the held-out fold ==")
    oof = local_score(data, cfg, run)
    print(format_table(oof))

    print("\n== predict the test split with the fold ensemble ==")
    cfg.preprocess.assumed_spacing = assumed_spacing_from_labels(data, cfg.preprocess.assumed_spacing)
    detectors = load_detectors([Path(w) for w in oof["weights"]], cfg)
    rule = PresenceRule.load(run_dir / "presence.json")
    submission_path, candidates = predict_split(data, "test", detectors, rule, cfg, parse_views(cfg.infer.tta),
                                                run_dir / "submission.csv")
    candidates.write_csv(run_dir / "test_candidates.csv")
    result = {"oof": oof, "submission": str(submission_path), "seconds": None, "test": None}
    if data.test_solution.is_file():
        solution = pl.read_csv(data.test_solution, schema_overrides={"tomo_id": pl.String})
        result["test"] = summarize(breakdown(solution, pl.read_csv(submission_path, schema_overrides={"tomo_id": pl.String})))
        result["test_plot"] = str(plot_detections(candidates, solution, rule, run_dir / "test_detections.png"))
    result["seconds"] = round(time.perf_counter() - started, 1)
    (run_dir / "demo.json").write_text(json.dumps(result, indent=2))
    print_summary(result, run_dir)
    return result


def ensure_demo_data(root: Path) -> None:
    """Synthesise the demo dataset into `root` unless it already holds exactly that one (a rerun reuses it; an older
    kit's demo data, written with other settings, is replaced)."""
    from kitlib.data.synth import MARKER, synthesize

    marker = root / MARKER
    if (root / "train_labels.csv").is_file() and marker.is_file() and json.loads(marker.read_text()) == DEMO_SYNTH:
        return
    print(f"synthesising a small competition-format dataset in {root} ...")
    synthesize(root, **DEMO_SYNTH, preview=True)


def print_summary(result: dict, run_dir: Path) -> None:
    oof, test = result["oof"], result["test"]
    lo, hi = oof["f2_ci"]
    print("\n== demo summary ==")
    print(f"held-out folds (OOF) F2: {oof['f2']:.4f}  (95% CI {lo:.3f}-{hi:.3f}, {oof['n_tomograms']} tomograms)")
    if test:
        print(f"test split F2:          {test['f2']:.4f}  (TP={test['tp']} FP={test['fp']} FN={test['fn']} "
              f"TN={test['tn']}, {test['n_tomograms']} tomograms)")
    print(f"wall time: {result['seconds'] / 60:.1f} min")
    print(f"files: {run_dir}/score.json, oof.csv, presence.json, submission.csv, demo.json")
    print(f"plots: {', '.join(oof['plots'].values())}" + (f", {result['test_plot']}" if test else ""))
