"""`python -m kitlib <command>`: a thin argparse layer; each command calls one library function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kitlib.config import COMPETITION_SLUG
from kitlib.data.errors import DataError
from kitlib.kaggle.errors import KaggleError
from kitlib.version import package_version


def _synth(args: argparse.Namespace) -> int:
    from kitlib.data.synth import synthesize
    from kitlib.data.synth.style import check_styles

    try:
        styles = check_styles(args.styles.split(",")) if args.styles else None
    except ValueError as e:
        raise DataError(f"--styles: {e}") from None
    result = synthesize(args.out, args.n_train, args.n_test, size=args.size, seed=args.seed, styles=styles,
                        preview=args.preview)
    print(f"wrote {result.out}")
    return 0


def _score(args: argparse.Namespace) -> int:
    import polars as pl

    from kitlib.data.submission import read_submission
    from kitlib.metric import breakdown, summarize

    solution = pl.read_csv(args.solution, schema_overrides={"tomo_id": pl.String})
    summary = summarize(breakdown(solution, read_submission(args.submission)))
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return 0


def _folds(args: argparse.Namespace) -> int:
    from kitlib.data.folds import resolve_folds
    from kitlib.data.labels import load_labels

    data = _data(args)
    folds, path = resolve_folds(data.root, load_labels(data.labels_csv), args.k, args.seed, args.out)
    print(f"{len(folds)} tomograms in {args.k} folds: {path}")
    return 0


def _new_config(args: argparse.Namespace, preset: str = "default"):
    """The config of a new run: --config merged onto --preset (else `preset`), then --set and --device."""
    from kitlib.config import KitConfig

    base = KitConfig.preset(args.preset or preset)
    return _with_options(KitConfig.load(args.config, base) if args.config else base, args)


def _run_config(args: argparse.Namespace, run):
    """An existing run's config, unless --config / --preset replace it; then --set and --device."""
    if args.config or args.preset:
        return _new_config(args)
    return _with_options(run.load_config(), args)


def _with_options(cfg, args: argparse.Namespace):
    """`cfg` with the command line's --set overrides, then its --device (for training and prediction)."""
    from kitlib.config import parse_overrides

    cfg = cfg.override(parse_overrides(args.set), "--set")
    device = getattr(args, "device", None)
    if device is not None:
        cfg = cfg.override({"train": {"device": device}, "infer": {"device": device}}, "--device")
    return _with_data_options(cfg, args)


def _with_data_options(cfg, args: argparse.Namespace):
    """`cfg` with --extra and --labels-override (they apply to a resumed run too: they change what is trained and
    scored next, not how)."""
    extra, override = getattr(args, "extra", None), getattr(args, "labels_override", None)
    if extra is not None:
        cfg = cfg.override({"data": {"extra": [s for s in extra.split(",") if s]}}, "--extra")
    if override is not None:
        if not override.is_file():
            raise DataError(f"{override}: no such labels override file (make review's page exports one)")
        cfg = cfg.override({"data": {"labels_override": str(override)}}, "--labels-override")
    return cfg


def _data(args: argparse.Namespace):
    from kitlib.data.layout import CompetitionData, find_competition_root

    return CompetitionData(find_competition_root(args.data))


def _export(args: argparse.Namespace) -> int:
    from kitlib.data.export import export_fold
    from kitlib.data.folds import resolve_folds
    from kitlib.data.sources import load_training_labels

    cfg, data = _new_config(args), _data(args)
    labels = load_training_labels(data, cfg.data)
    folds, _ = resolve_folds(data.root, labels.records, cfg.tune.n_folds, cfg.tune.seed, args.folds)
    _check_fold(args.fold, folds)
    print(f"wrote {export_fold(data.root, args.out, args.fold, cfg, folds, labels.for_training)}")
    return 0


def _check_fold(fold: int, folds: dict[str, int]) -> None:
    known = sorted(set(folds.values()))
    if fold not in known:
        raise DataError(f"--fold {fold}: no such fold (the folds are {known})")


def _train(args: argparse.Namespace) -> int:
    from kitlib.infer.predictor import resolve_device
    from kitlib.run import new_run

    export = args.data / "dataset.yaml" if args.data.is_dir() else args.data
    is_export = export.name.endswith((".yaml", ".yml")) and export.is_file()
    if not is_export and args.fold is None:
        raise DataError(f"{args.data}: a competition folder needs --fold K (the fold to hold out); "
                        f"or pass a training export's dataset.yaml")
    changes = {"train": {}, "model": {}}
    if args.imgsz is not None:
        changes["model"]["imgsz"] = args.imgsz
    if args.batch is not None:
        changes["train"]["batch"] = args.batch
    if args.model:
        changes["model"]["scale"] = args.model.removeprefix("yolov8")
    if args.weights:
        changes["model"]["weights"] = str(args.weights)
    if args.epochs is not None:
        changes["train"].update(epochs=args.epochs, time_budget_s=None)
    if args.minutes is not None:
        changes["train"]["time_budget_s"] = 60.0 * args.minutes
    cfg = _new_config(args).override(changes, "command line")
    run, cfg = new_run(args.run, cfg, exist_ok=args.exist_ok, resume=args.resume)
    resolve_device(cfg.train.device, f"{run.config}: train.device")
    if is_export:
        from kitlib.model import train

        best = train(export, cfg, run.root, resume=args.resume)
    else:
        from kitlib.data.sources import load_training_labels
        from kitlib.evaluation.local_score import run_folds
        from kitlib.model import train_fold

        data = _data(args)
        labels = load_training_labels(data, cfg.data)
        folds = run_folds(data, labels.records, cfg, run, args.folds)
        _check_fold(args.fold, folds)
        best = train_fold(data, run, args.fold, cfg, folds, labels.for_training, resume=args.resume)
    print(f"best checkpoint: {best}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from kitlib.config import parse_overrides
    from kitlib.evaluation.test_split import describe_test_score, score_test_split
    from kitlib.infer.predictor import Predictor
    from kitlib.run import open_run

    if not args.run and not args.weights:
        raise DataError(f"predict: name a run (RUN=name / --run; runs: {_run_names()}) or --weights FILE ...")
    predictor = Predictor.from_run(args.weights or args.run, config=args.config, preset=args.preset,
                                   overrides=parse_overrides(args.set), presence=args.presence, device=args.device,
                                   tta=args.tta)
    out = args.out or (open_run(args.run).submission if args.run else Path("submission.csv"))
    print(predictor.describe(), flush=True)
    data = _data(args)
    path, candidates = predictor.predict_split(data, args.split, out, budget_s=args.budget)
    failed = int(candidates["error"].is_not_null().sum())
    print(f"wrote {path}: {len(candidates)} tomograms predicted, {failed} failed (-1)")
    test = score_test_split(data, path) if args.split == "test" else None
    if test:
        print(f"test split F2 against {data.test_solution}: {describe_test_score(test)}")
    if len(candidates) and failed == len(candidates):
        print(f"error: every tomogram failed: {candidates['error'][0]}", file=sys.stderr)
        return 1
    return 0


def _local_score(args: argparse.Namespace) -> int:
    from kitlib.evaluation.local_score import format_table, import_folds, local_score
    from kitlib.run import claim_run, new_run

    data = _data(args)
    name = args.run or data.root.name
    if args.from_folds:
        run = claim_run(name, exist_ok=args.exist_ok, resume=args.resume)
        import_folds(args.from_folds, run)
        cfg = _run_config(args, run)
        run.save_config(cfg)
    else:
        run, cfg = new_run(name, _new_config(args), exist_ok=args.exist_ok, resume=args.resume)
        if args.resume:
            cfg = _with_data_options(cfg, args)
            run.save_config(cfg)
    result = local_score(data, cfg, run, folds_path=args.folds, resume=args.resume or bool(args.from_folds),
                         train_missing=not args.from_folds)
    print(format_table(result))
    print(f"wrote {run.score}, {run.presence}; next: make predict RUN={run.name} DATA=...")
    return 0


def _z_error(args: argparse.Namespace) -> int:
    from kitlib.evaluation.z_error import format_z_table, z_error
    from kitlib.run import open_run

    run = open_run(args.run)
    result = z_error(_data(args), _run_config(args, run), run, folds_path=args.folds)
    print(format_z_table(result))
    print(f"wrote {run.z_error}, {result['plot']}")
    return 0


def _review(args: argparse.Namespace) -> int:
    from kitlib.evaluation.review import GROUPS, write_review
    from kitlib.run import open_run

    path, items = write_review(_data(args), open_run(args.run), out=args.out, top=args.top)
    counts = ", ".join(f"{sum(i.group == g for i in items)} {g}" for g in GROUPS)
    print(f"wrote {path} ({counts}): open it in a browser, mark the items, export labels_override.csv")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from kitlib.demo import run_demo

    run_demo(args.data, run=args.run, config=_new_config(args, preset="cpu"), exist_ok=args.exist_ok,
             resume=args.resume)
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from kitlib.release.bundle import DEFAULT_PLATFORMS
    from kitlib.release.commands import bundle_cmd
    from kitlib.run import open_run

    run = open_run(args.run).root if args.run else None
    return bundle_cmd(args.only, run=run, weights=args.weights, find_links=args.find_links,
                      python_tag=args.python_tag, platforms=args.platform or DEFAULT_PLATFORMS, prefix=args.prefix)


def _push_dataset(args: argparse.Namespace) -> int:
    from kitlib.release.commands import push_dataset_cmd

    return push_dataset_cmd(args.only, wait=not args.no_wait, timeout_s=args.timeout)


def _push_kernel(args: argparse.Namespace) -> int:
    from kitlib.release.commands import push_kernel_cmd

    return push_kernel_cmd(args.kernel, prefix=args.prefix, fold=args.fold, notebook=args.notebook)


def _kernel_status(args: argparse.Namespace) -> int:
    from kitlib.release.commands import kernel_status_cmd

    return kernel_status_cmd(args.kernel, wait=args.wait, timeout_s=args.timeout)


def _kernel_output(args: argparse.Namespace) -> int:
    from kitlib.release.commands import kernel_output_cmd

    return kernel_output_cmd(args.kernel, dest=args.out)


def _submit(args: argparse.Namespace) -> int:
    from kitlib.release.commands import submit_cmd

    return submit_cmd(args.kernel, version=args.version, message=args.message)


def _submissions(args: argparse.Namespace) -> int:
    from kitlib.release.commands import submissions_cmd

    return submissions_cmd()


def _runs(args: argparse.Namespace) -> int:
    from kitlib.release.runs import format_index, write_index

    rows, written = write_index(args.root)
    print(format_index(rows))
    print(f"wrote {', '.join(map(str, written))}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from kitlib.release.commands import download_cmd

    return download_cmd(dest=args.out, slug=args.slug)


def _dry_run(args: argparse.Namespace) -> int:
    from kitlib.release.dryrun import dry_run, format_result

    result = dry_run(args.kernel, bundles=args.bundles, out=args.out, reuse_venv=args.reuse_venv,
                     tiny=args.tiny_weights, n_test=args.n_test)
    print(format_result(result))
    return 0


def _run_names() -> str:
    from kitlib.run import DEFAULT_PROJECT

    names = sorted(p.parent.name for p in DEFAULT_PROJECT.glob("*/config.yaml"))
    return ", ".join(names) or "none yet"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motor-kit", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"motor-kit {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    p = command("synth", "write a synthetic dataset in the competition layout")
    p.add_argument("--out", type=Path, required=True, help="folder to write (must be new or a previous synth output)")
    p.add_argument("--n-train", type=int, default=24, help="train tomograms")
    p.add_argument("--n-test", type=int, default=8, help="test tomograms")
    p.add_argument("--size", choices=["tiny", "small", "fine", "real"], default="small",
                   help="tomogram sizes: tiny (tests), small (bin 4, the demo), fine (bin 2), real (the label file's shapes and "
                        "spacings, test tomograms 400x1400x1050)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--styles", default=None,
                   help="comma-separated appearance styles to draw from (clean, ctf, dose, thick; default: all; "
                        "kitlib/data/synth/style.py)")
    p.add_argument("--preview", action="store_true", help="also save PNGs of a slice through each motor")
    p.set_defaults(func=_synth)

    p = command("score", "score a submission CSV against a solution CSV with the competition metric")
    p.add_argument("--solution", type=Path, required=True, help="solution CSV (tomo_id, Motor axis 0..2, Voxel spacing)")
    p.add_argument("--submission", type=Path, required=True, help="submission CSV")
    p.set_defaults(func=_score)

    p = command("folds", "write the fold assignment every tool reads")
    _add_data(p)
    p.add_argument("--k", type=int, default=5, help="number of folds")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", type=Path, default=None, help="CSV to write (default: see kitlib.data.folds)")
    p.set_defaults(func=_folds)

    p = command("export", "write the training stacks (5-page TIFFs + pose labels with z) for one fold")
    _add_data(p)
    _add_data_options(p)
    _add_config(p)
    p.add_argument("--out", type=Path, required=True, help="export folder")
    p.add_argument("--fold", type=int, required=True, help="the held-out fold (becomes the validation split)")
    p.add_argument("--folds", type=Path, default=None, help="folds CSV (default: see kitlib.data.folds)")
    p.set_defaults(func=_export)

    p = command("train", "train one fold (a competition folder and --fold) or on a training export")
    p.add_argument("--data", type=Path, required=True, help="competition folder, or an export folder / dataset.yaml")
    p.add_argument("--fold", type=int, default=None, help="the fold to hold out (with a competition folder)")
    p.add_argument("--folds", type=Path, default=None, help="folds CSV (default: the run's, else see kitlib.data.folds)")
    _add_run(p, required=True)
    p.add_argument("--model", default=None, help="yolov8n / s / m / l / x (default: the config's)")
    p.add_argument("--weights", type=Path, default=None, help="local 3-channel YOLOv8 .pt to adapt to 5 channels")
    p.add_argument("--epochs", type=int, default=None, help="a fixed epoch count (replaces the config's time budget)")
    p.add_argument("--minutes", type=float, default=None, help="train this long instead: epochs are re-estimated")
    p.add_argument("--imgsz", type=int, default=None, help="training size (default: the config's model.imgsz)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    p.add_argument("--device", default=None, help="cpu, 0, or 0,1 for DDP (default: the config's)")
    _add_data_options(p)
    _add_config(p)
    p.set_defaults(func=_train)

    p = command("predict", "write a submission for a split with a run's fold models and presence rule")
    _add_data(p)
    p.add_argument("--run", default=None, help="run name or folder (its checkpoints, config.yaml, presence.json)")
    p.add_argument("--weights", type=Path, nargs="+", default=None, help="these checkpoints instead of the run's")
    p.add_argument("--split", choices=["train", "test"], default="test", help="which split to predict")
    p.add_argument("--presence", type=Path, default=None, help="presence rule JSON (default: the run's)")
    p.add_argument("--out", type=Path, default=None, help="submission CSV (default: the run's submission.csv)")
    p.add_argument("--tta", nargs="+", default=None, help="TTA view names (default: the config's infer.tta)")
    p.add_argument("--device", default=None, help="cpu, 0 or auto (default: the config's infer.device)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole split: shed views, widen step (0: the cheapest plan; omitted: no budget)")
    _add_config(p, "the run's config.yaml")
    p.set_defaults(func=_predict)

    p = command("local-score", "train per fold, predict held-out folds, tune presence, score OOF")
    _add_data(p)
    p.add_argument("--run", default=None, help="run name or folder (default: the data folder's name)")
    p.add_argument("--exist-ok", action="store_true", help="replace the files of an existing run of that name")
    p.add_argument("--resume", action="store_true", help="continue an existing run: finished folds are kept")
    p.add_argument("--from-folds", type=Path, nargs="+", default=None,
                   help="score fold checkpoints trained elsewhere (the train kernel's outputs: fold<k>.pt, "
                        "config.yaml, folds.csv) instead of training")
    p.add_argument("--folds", type=Path, default=None, help="folds CSV (default: the run's, else see kitlib.data.folds)")
    p.add_argument("--device", default=None, help="cpu or 0 for training and prediction (default: the config's)")
    _add_data_options(p)
    _add_config(p)
    p.set_defaults(func=_local_score)

    p = command("z-error", "out-of-fold |z error| of the run's fold models: z-head vs centre slice only")
    _add_data(p)
    p.add_argument("--run", required=True, help="run name or folder")
    p.add_argument("--folds", type=Path, default=None, help="folds CSV (default: the run's)")
    p.add_argument("--device", default=None, help="cpu or 0 (default: the run's infer.device)")
    _add_config(p, "the run's config.yaml")
    p.set_defaults(func=_z_error)

    p = command("review", "an offline page of the run's out-of-fold mistakes to check; exports labels_override.csv")
    _add_data(p)
    p.add_argument("--run", required=True, help="run name or folder (its oof.csv and config.yaml)")
    p.add_argument("--out", type=Path, default=None, help="HTML file to write (default: the run's review.html)")
    p.add_argument("--top", type=int, default=20, help="false positives (and far true positives) shown, worst first")
    p.set_defaults(func=_review)

    p = command("demo", "synthesise data (or use --data), local-score, predict test, score it")
    p.add_argument("--data", type=Path, default=None, help="competition folder (default: synthesise data/demo)")
    p.add_argument("--run", default="demo", help="run name or folder")
    p.add_argument("--exist-ok", action="store_true", help="replace the files of an existing run of that name")
    p.add_argument("--resume", action="store_true", help="continue an existing run: finished folds are kept")
    p.add_argument("--device", default=None, help="cpu or 0 (default: the preset's)")
    _add_config(p, "cpu")
    p.set_defaults(func=_demo)

    add_kaggle_commands(sub, command)
    return parser


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None, help="competition folder (default: under the Kaggle root)")


def _add_run(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--run", required=required, help="run name (runs/<name>) or folder")
    p.add_argument("--exist-ok", action="store_true", help="replace the files of an existing run of that name")
    p.add_argument("--resume", action="store_true", help="continue runs/<run>'s last.pt with its own config")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extra", default=None, metavar="DIR[,DIR...]",
                   help="extra training sources (competition layout; DIR:z_window=N:negatives=false sets its trust); "
                        "they train every fold and are never scored (default: the config's data.extra)")
    p.add_argument("--labels-override", type=Path, default=None, metavar="CSV",
                   help="labels_override.csv from make review, applied to training and scoring labels "
                        "(default: the config's data.labels_override)")


def _add_config(p: argparse.ArgumentParser, default: str = "default") -> None:
    p.add_argument("--preset", choices=["default", "cpu"], default=None,
                   help=f"config preset (when not given: {default})")
    p.add_argument("--config", type=Path, default=None, help="a config YAML, merged onto the preset (may be partial)")
    p.add_argument("--set", action="append", default=None, metavar="SECTION.KEY=VALUE",
                   help="override one setting, repeatable (e.g. --set infer.batch=8)")


def add_kaggle_commands(sub, command) -> None:
    datasets = ["src", "wheels", "weights"]
    p = command("bundle", "build the src / wheels / weights Kaggle datasets under build/datasets/")
    p.add_argument("--only", nargs="+", choices=datasets, default=datasets, help="which datasets")
    p.add_argument("--run", default=None, help="run name or folder: its fold checkpoints, presence.json, config.yaml")
    p.add_argument("--weights", type=Path, nargs="+", default=None, help="these checkpoints instead of the run's")
    p.add_argument("--find-links", type=Path, default=None, help="take wheels from this folder only (no package index)")
    p.add_argument("--python-tag", default="cp311", help="the kernel's Python, as a wheel tag")
    p.add_argument("--platform", action="append", default=None,
                   help="wheel platform tag, repeatable (default: manylinux_2_17_x86_64 and manylinux2014_x86_64)")
    p.add_argument("--prefix", default="motor-kit", help="dataset slugs <prefix>-src, <prefix>-wheels, <prefix>-weights")
    p.set_defaults(func=_bundle)

    p = command("push-dataset", "create or version the built datasets on Kaggle; wait until ready")
    p.add_argument("--only", nargs="+", choices=datasets, default=datasets, help="which datasets")
    p.add_argument("--no-wait", action="store_true", help="do not wait for 'ready'")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for 'ready'")
    p.set_defaults(func=_push_dataset)

    p = command("push-kernel", "render kernels/<kernel>/ metadata and push a new version")
    p.add_argument("kernel", help="folder under kernels/, e.g. infer")
    p.add_argument("--prefix", default="motor-kit", help="the datasets' slug prefix")
    p.add_argument("--fold", type=int, default=None,
                   help="train kernel: push that fold's own kernel (then name it <kernel>-fold<k> in kernel-status etc.)")
    p.add_argument("--notebook", action="store_true",
                   help="push the script as a notebook (cells at its '# %%%% ' lines), a kernel of its own: "
                        "name it <kernel>-notebook in kernel-status etc.")
    p.set_defaults(func=_push_kernel)

    p = command("download", "download the competition data into data/<slug>/ (skipped when already there)")
    p.add_argument("--out", type=Path, default=None, help="default: data/<slug>")
    p.add_argument("--slug", default=COMPETITION_SLUG, help="competition slug")
    p.set_defaults(func=_download)

    p = command("kernel-status", "status of the kernel's latest version (a failed run exits 1)")
    p.add_argument("kernel", help="folder under kernels/ (its last push) or owner/slug")
    p.add_argument("--wait", action="store_true", help="poll until it completes, fails or is cancelled")
    p.add_argument("--timeout", type=float, default=12 * 3600, help="seconds to wait")
    p.set_defaults(func=_kernel_status)

    p = command("kernel-output", "download the kernel's output files and log")
    p.add_argument("kernel", help="folder under kernels/ (its last push) or owner/slug")
    p.add_argument("--out", type=Path, default=None, help="default: build/kernels/<kernel>/output")
    p.set_defaults(func=_kernel_output)

    p = command("submit", "submit a kernel version (default: the last pushed, once complete)")
    p.add_argument("kernel", help="folder under kernels/ (its last push) or owner/slug with --version")
    p.add_argument("--version", type=int, default=None, help="kernel version (default: the last pushed)")
    p.add_argument("--message", default=None, help="submission description")
    p.set_defaults(func=_submit)

    p = command("submissions", "latest submissions with public and private scores (written into their runs)")
    p.set_defaults(func=_submissions)

    p = command("runs", "one line per run: date, commit, preset, data, OOF F2, wall time, kernel, leaderboard scores")
    p.add_argument("--root", type=Path, default=Path("runs"), help="the folder holding the run folders")
    p.set_defaults(func=_runs)

    p = command("dry-run", "run a kernel locally as Kaggle would (offline, simulated image), then score it")
    p.add_argument("kernel", nargs="?", default="infer", help="folder under kernels/")
    p.add_argument("--bundles", type=Path, default=Path("build/datasets"),
                   help="built datasets to use (missing ones are built for the dry run)")
    p.add_argument("--out", type=Path, default=None,
                   help="workspace (default: build/dryrun/<kernel>; must be new or an earlier dry run's)")
    p.add_argument("--reuse-venv", action="store_true", help="run the kernel with this venv instead of a fresh one")
    p.add_argument("--tiny-weights", action="store_true", help="an untrained tiny model even if weights are built")
    p.add_argument("--n-test", type=int, default=4, help="synthetic test tomograms")
    p.set_defaults(func=_dry_run)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error is one line on stderr and exit 2 (a Kaggle server error: exit 1)."""
    from kitlib.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KaggleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
