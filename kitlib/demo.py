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
from kitlib.evaluation.local_score import format_table, local_score
from kitlib.evaluation.plots import plot_detections
from kitlib.infer.predictor import Predictor
from kitlib.evaluation.test_split import describe_test_score, score_test_split
from kitlib.run import RunDir, new_run
from kitlib.version import describe_machine

DEMO_DATA = Path("data/demo")
DEMO_SYNTH = dict(n_train=200, n_test=12, size="small", seed=0)


def run_demo(
    data_root: Path | None = None, run: str | Path = "demo", preset: str = "cpu", config: KitConfig | None = None,
    exist_ok: bool = False, resume: bool = False,
) -> dict:
    """Run the whole loop into a new run folder (see `kitlib.run.new_run` for `exist_ok` / `resume`); returns the
    demo summary (also written to the run's `demo.json`). `config` replaces the preset."""
    started = time.perf_counter()
    run_dir, cfg = new_run(run, config or KitConfig.preset(preset), exist_ok=exist_ok, resume=resume)
    if data_root is None:
        data_root = DEMO_DATA
        ensure_demo_data(data_root)
    data = CompetitionData(find_competition_root(data_root))

    print(f"\n== local score: {cfg.tune.n_folds} folds, train on the others, predict the held-out fold ==")
    oof = local_score(data, cfg, run_dir, resume=resume)
    print(format_table(oof))

    print("\n== predict the test split with the fold ensemble ==")
    predictor = Predictor.from_run(run_dir.root)
    print(predictor.describe())
    submission_path, candidates = predictor.predict_split(data, "test", run_dir.submission)
    candidates.write_csv(run_dir.test_candidates)
    result = {"oof": oof, "submission": str(submission_path), "seconds": None, "test": None}
    result["test"] = score_test_split(data, submission_path)
    if result["test"]:
        solution = pl.read_csv(data.test_solution, schema_overrides={"tomo_id": pl.String})
        result["test_plot"] = str(plot_detections(candidates, solution, predictor.rule, run_dir.plot("test_detections")))
    result["seconds"] = round(time.perf_counter() - started, 1)
    run_dir.demo.write_text(json.dumps(result, indent=2))
    print_summary(result, run_dir)
    return result


def ensure_demo_data(root: Path, synth: dict = DEMO_SYNTH) -> None:
    """Synthesise the `synth` dataset (default: the demo's) into `root` unless it already holds exactly that one (a
    rerun reuses it; an older kit's data, written with other settings, is replaced)."""
    from kitlib.data.synth import MARKER, synth_params, synthesize

    marker = root / MARKER
    written = json.loads(marker.read_text()) if marker.is_file() else None
    if (root / "train_labels.csv").is_file() and written == synth_params(**synth):
        return
    print(f"synthesising a {synth['size']} competition-format dataset in {root} ...")
    synthesize(root, **synth, preview=True)


def print_summary(result: dict, run_dir: RunDir) -> None:
    oof, test = result["oof"], result["test"]
    lo, hi = oof["f2_ci"]
    print("\n== demo summary ==")
    print(f"held-out folds (OOF) F2: {oof['f2']:.4f}  (95% CI {lo:.3f}-{hi:.3f}, {oof['n_tomograms']} tomograms)")
    if oof.get("f2_detector_only") is not None:
        print(f"  without the verifier: {oof['f2_detector_only']:.4f}")
    if test:
        print(f"test split F2:          {describe_test_score(test)}")
    print(f"wall time: {result['seconds'] / 60:.1f} min on {describe_machine(oof['machine'])}")
    for warning in oof.get("warnings", []):
        print(f"WARNING: {warning}")
    files = (run_dir.score, run_dir.oof, run_dir.presence, run_dir.submission, run_dir.demo)
    print(f"files: {', '.join(map(str, files))}")
    print(f"next:  make predict RUN={run_dir.name} DATA=<competition folder>, make bundle RUN={run_dir.name}")
    print(f"plots: {', '.join(oof['plots'].values())}" + (f", {result['test_plot']}" if test else ""))
