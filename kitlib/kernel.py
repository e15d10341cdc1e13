"""The body of the offline Kaggle kernels in `kernels/`: install the wheels bundle, then predict (or train).

A kernel script puts the `src` dataset's kitlib wheel on `sys.path` and calls `install_wheels()` first; nothing here
imports ultralytics (or torch) before that. `run_infer` always leaves a complete submission once the competition
folder is found: a tomogram that cannot be read gets -1s (a warning names it), and any other failure (a broken sample
submission, no weights, a corrupt checkpoint, a crash) is said in one line naming the file (a crash with its
traceback) and answered by a full -1 fallback file. The returned `InferReport` says which happened.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kitlib.config import ConfigError
from kitlib.data.errors import DataError
from kitlib.data.layout import CompetitionData, find_competition_root, find_dataset, kaggle_root
from kitlib.release.bundle import DEFAULT_PREFIX, dataset_slug
from kitlib.release.manifest import read_requirements, verify_manifest
from kitlib.version import installed_version

REPORT_FILE = "kernel_report.json"
DEFAULT_BUDGET_S = 9 * 3600  # the whole inference run; Kaggle stops a kernel at 12 h


def working_dir() -> Path:
    """`<kaggle root>/working`, created if needed."""
    folder = kaggle_root() / "working"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def install_wheels(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """`pip install --no-index --no-deps` from the attached wheels dataset every pin of its requirements.txt that is
    not installed at that version (the image's torch / numpy / opencv stay untouched); returns what was installed."""
    folder = find_dataset(dataset_slug("wheels", prefix))
    pins = read_requirements(folder)
    missing = [f"{name}=={version}" for name, version in pins.items() if installed_version(name) != version]
    if missing:
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
               "--find-links", str(folder), *missing]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise DataError(f"{folder}: pip install {' '.join(missing)} failed:\n{proc.stdout}{proc.stderr}")
        importlib.invalidate_caches()
    present = sorted(set(f"{n}=={v}" for n, v in pins.items()) - set(missing))
    print(f"wheels from {folder}: installed {missing or 'nothing'}; already present {present or 'nothing'}",
          flush=True)
    return missing


@dataclass
class InferReport:
    """What the inference kernel did: `status` is `ok`, `all-failed` (no tomogram could be
    predicted) or `fallback` (every row -1 after the failure in `error`)."""

    status: str
    submission: str
    rows: int
    motors: int = 0
    unreadable: list[str] = field(default_factory=list)
    plan: tuple[int, int] = (0, 0)  # the richest plan: (TTA views, slice step)
    views: dict[int, int] = field(default_factory=dict)  # TTA views used -> tomograms
    slice_steps: dict[int, int] = field(default_factory=dict)  # slice step used -> tomograms
    error: str | None = None
    seconds: float = 0.0


def _predict(data: CompetitionData, out: Path, budget: tuple[float, float], n_views: int | None, prefix: str,
             progress: bool):
    """Load the weights dataset and predict the test split within `budget` (seconds, `time.perf_counter()` at its
    start: what the set-up took, loading the models included, is not left to the tomograms); returns the candidates
    and the richest plan (views, slice step). Raises on anything but unreadable tomograms."""
    from kitlib.infer.predictor import Predictor
    from kitlib.infer.tta import default_view_order

    folder = find_dataset(dataset_slug("weights", prefix))
    verify_manifest(folder)
    # the run's own views by default: the presence threshold was tuned on scores fused over them
    views = None if n_views is None else [v.name for v in default_view_order()[:n_views]]
    predictor = Predictor.from_run(folder, device="auto", tta=views)
    budget_s, started = budget
    left_s = budget_s - (time.perf_counter() - started)
    print(f"{predictor.describe()}, budget {budget_s:.0f} s, {left_s:.0f} s left after the set-up", flush=True)
    _, candidates = predictor.predict_split(data, "test", out, budget_s=left_s, progress=progress)
    return candidates, (len(predictor.views), predictor.cfg.infer.slice_step)


def run_infer(
    budget_s: float | str | None = None, n_views: int | str | None = None, prefix: str = DEFAULT_PREFIX,
    progress: bool = True,
) -> InferReport:
    """Predict the attached competition's test split into `<root>/working/submission.csv`, whatever happens.

    `budget_s` (default `DEFAULT_BUDGET_S`) covers the whole run (setup included; 0: the cheapest plan for every
    tomogram); the TTA views are the run's config's (`infer.tta`) or, with `n_views`, the first `n_views` of the
    default order; they are the richest plan, which the budget sheds (views, then slice step) when the projection
    runs over. Both may come as the kernel's environment strings: a value that is not a number is said and replaced
    by the default. Once the competition folder is found, any failure (the sample submission included) is said in
    one line and answered by the fallback file (`write_fallback`). Also writes `kernel_report.json`.
    """
    started = time.perf_counter()
    data = CompetitionData(find_competition_root())  # without it there are no ids to write: let it raise
    out = working_dir() / "submission.csv"
    try:
        expected = data.submission_ids()
        print(f"competition data {data.root}: {len(expected)} test tomograms -> {out}", flush=True)
        budget_s = _number(budget_s, "KIT_BUDGET_S", DEFAULT_BUDGET_S, float, least=0)
        n_views = _number(n_views, "KIT_TTA_VIEWS", None, int, least=1)
        candidates, plan = _predict(data, out, (budget_s, started), n_views, prefix, progress)
        unreadable = candidates.filter(candidates["error"].is_not_null())["tomo_id"].to_list()
        predicted = candidates.filter(candidates["error"].is_null())
        status = "ok" if len(unreadable) < len(candidates) else "all-failed"  # a systematic fault, not bad data
        report = InferReport(
            status, str(out), len(expected), unreadable=unreadable, plan=plan,
            views=dict(Counter(predicted["n_views"].to_list())),
            slice_steps=dict(Counter(predicted["slice_step"].to_list())),
        )
    except Exception as e:  # noqa: BLE001 - any failure: say so loudly, then leave a valid fallback file
        report = _fallback(data, out, e)
    report.motors = _count_motors(out)
    report.seconds = round(time.perf_counter() - started, 1)
    (out.parent / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(format_report(report), flush=True)
    return report


def _fallback(data: CompetitionData, out: Path, error: Exception) -> InferReport:
    """Say `error` (in one line; with its traceback when it is not a data or config problem) and write the fallback
    file for the ids `CompetitionData.fallback_ids` can read."""
    if not isinstance(error, (DataError, ConfigError)):
        traceback.print_exc()
    ids = data.fallback_ids()
    what = f"{type(error).__name__}: {error}"
    print(f"ERROR: {what}\nwriting the fallback submission: -1 for all {len(ids)} tomograms", file=sys.stderr,
          flush=True)
    return InferReport("fallback", str(write_fallback(ids, out)), len(ids), error=what)


def _number(value, name: str, default, kind, least: int):
    """`value` as `kind` (an empty value: `default`); a value that is not one, at least `least`, is said on stderr
    and replaced."""
    if value is None or str(value).strip() == "":
        return default
    try:
        number = kind(value)
        if not number >= least:  # NaN too
            raise ValueError(f"below {least}")
        return number
    except (TypeError, ValueError):
        print(f"WARNING: {name}={value!r} is not {'an integer' if kind is int else 'a number'} >= {least}: "
              f"using {default}", file=sys.stderr, flush=True)
        return default


def write_fallback(expected: list[str], out: Path) -> Path:
    """A valid submission predicting no motor anywhere (a header-only file for no ids)."""
    from kitlib.data.submission import submission_frame, write_submission

    return write_submission(submission_frame({}, expected), out, expected)


def _count_motors(path: Path) -> int:
    from kitlib.data.submission import read_submission

    return int((read_submission(path)["Motor axis 0"] >= 0).sum())


def format_report(report: InferReport) -> str:
    """A few lines for the kernel log; shed views / widened steps are spelled out."""
    lines = [f"submission {report.submission}: {report.rows} rows, {report.motors} with a motor, "
             f"status {report.status.upper()} in {report.seconds:.1f} s"]
    if report.error:
        lines.append(f"  FAILED: {report.error} (every row is -1)")
    if report.unreadable:
        lines.append(f"  tomograms that failed (-1): {report.unreadable}")
    if report.views:
        shed = sum(n for v, n in report.views.items() if v < report.plan[0])
        widened = sum(n for s, n in report.slice_steps.items() if s > report.plan[1])
        lines.append(f"  TTA views used {dict(sorted(report.views.items()))}, slice steps "
                     f"{dict(sorted(report.slice_steps.items()))} (views: tomograms)")
        if shed or widened:
            lines.append(f"  time budget: shed views on {shed} tomogram(s), widened the slice step on {widened}")
    return "\n".join(lines)


def run_train(fold: int, preset: str = "default", epochs: int | None = None) -> Path:
    """Export and train one fold on the attached competition's train split; returns `<working>/fold<k>.pt` (with
    the run's `config.yaml` and `folds.csv` beside it: `make import-folds` reads the three). The export goes to a
    temporary folder outside `working/`, whose saved output Kaggle caps, and is deleted afterwards."""
    import shutil
    import tempfile

    from kitlib.config import KitConfig
    from kitlib.data.sources import load_training_labels
    from kitlib.evaluation.local_score import run_folds
    from kitlib.infer.predictor import resolve_device
    from kitlib.model import train_fold
    from kitlib.run import RunDir

    data, work = CompetitionData(find_competition_root()), working_dir()
    run = RunDir(work)
    base = KitConfig.preset(preset)
    cfg = base.override({"train": {"device": resolve_device("auto")}}, f"preset {preset}")
    if epochs:
        cfg = cfg.override({"train": {"epochs": epochs, "time_budget_s": None}}, "KIT_EPOCHS")
    labels = load_training_labels(data, cfg.data)
    folds = run_folds(data, labels.records, cfg, run)
    print(f"fold {fold} of {cfg.tune.n_folds}: {sum(f != fold for f in folds.values())} train tomograms, "
          f"{cfg.train.length()} at {cfg.model.imgsz} px on {cfg.train.device}", flush=True)
    run.save_config(cfg)
    export = Path(tempfile.mkdtemp(prefix=f"kit-export-fold{fold}-"))
    try:
        best = train_fold(data, RunDir(work / "run"), fold, cfg, folds, labels.for_training, export_dir=export)
    finally:
        shutil.rmtree(export, ignore_errors=True)
    out = Path(shutil.copy2(best, run.fold_file(fold)))
    print(f"wrote {out}, {run.config} and {run.folds_csv}", flush=True)
    return out
