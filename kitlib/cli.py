"""`python -m kitlib <command>`: a thin argparse layer; each command calls one library function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kitlib.data.errors import DataError
from kitlib.kaggle.errors import KaggleError


def _synth(args: argparse.Namespace) -> int:
    from kitlib.data.synth import synthesize

    result = synthesize(args.out, args.n_train, args.n_test, size=args.size, seed=args.seed, preview=args.preview)
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
    from kitlib.data.layout import CompetitionData, find_competition_root

    data = CompetitionData(find_competition_root(args.data))
    folds, path = resolve_folds(data.root, load_labels(data.labels_csv), args.k, args.seed, args.out)
    print(f"{len(folds)} tomograms in {args.k} folds: {path}")
    return 0


def _config(args: argparse.Namespace):
    from kitlib.config import KitConfig

    return KitConfig.load(args.config) if args.config else KitConfig.preset(args.preset)


def _data(args: argparse.Namespace):
    from kitlib.data.layout import CompetitionData, find_competition_root

    return CompetitionData(find_competition_root(args.data))


def _export(args: argparse.Namespace) -> int:
    from kitlib.data.export import export_fold
    from kitlib.data.folds import resolve_folds
    from kitlib.data.labels import load_labels

    cfg, data = _config(args), _data(args)
    records = load_labels(data.labels_csv)
    folds, _ = resolve_folds(data.root, records, cfg.tune.n_folds, cfg.tune.seed, args.folds)
    print(f"wrote {export_fold(data.root, args.out, args.fold, cfg, folds, records)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from kitlib.model import train

    cfg = _config(args)
    for key in ("imgsz", "device", "batch"):
        if getattr(args, key) is not None:
            setattr(cfg.train, key, getattr(args, key))
    cfg.train.set_length(args.epochs, args.minutes)
    if args.model:
        cfg.model.scale = args.model.removeprefix("yolov8")
    if args.weights:
        cfg.model.weights = str(args.weights)
    data_yaml = args.data / "dataset.yaml" if args.data.is_dir() else args.data
    if not args.resume:
        cfg.save(Path(cfg.train.project) / args.run / "config.yaml")
    print(f"best checkpoint: {train(data_yaml, cfg, args.run, resume=args.resume)}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from kitlib.infer.predict import assumed_spacing_from_labels, load_detectors, predict_split
    from kitlib.infer.tta import parse_views
    from kitlib.presence import PresenceRule

    cfg, data = _config(args), _data(args)
    if args.device:
        cfg.infer.device = args.device
    cfg.preprocess.assumed_spacing = assumed_spacing_from_labels(data, cfg.preprocess.assumed_spacing)
    rule = PresenceRule.load(args.presence or Path(args.weights[0]).parent / "presence.json")
    views = parse_views(args.tta or cfg.infer.tta)
    path, candidates = predict_split(data, args.split, load_detectors(args.weights, cfg), rule, cfg, views, args.out,
                                     budget_s=args.budget)
    print(f"wrote {path}: {len(candidates)} tomograms predicted, {candidates['error'].is_not_null().sum()} unreadable")
    return 0


def _local_score(args: argparse.Namespace) -> int:
    from kitlib.evaluation.local_score import format_table, local_score

    result = local_score(_data(args), _config(args), args.run, weights=args.weights, folds_path=args.folds)
    print(format_table(result))
    print(f"wrote {Path(_config(args).train.project) / args.run / 'score.json'}")
    return 0


def _z_error(args: argparse.Namespace) -> int:
    from kitlib.config import KitConfig
    from kitlib.evaluation.z_error import format_z_table, z_error

    cfg = _config(args)
    run_dir = Path(cfg.train.project) / args.run
    saved = run_dir / "config.yaml"
    if not args.config and saved.is_file():
        cfg = KitConfig.load(saved)  # what trained the fold models
    if args.device:
        cfg.infer.device = args.device
    result = z_error(_data(args), cfg, run_dir, folds_path=args.folds)
    print(format_z_table(result))
    print(f"wrote {run_dir / 'z_error.json'}, {result['plot']}")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from kitlib.release.bundle import DEFAULT_PLATFORMS
    from kitlib.release.commands import bundle_cmd

    return bundle_cmd(args.only, run=args.run, weights=args.weights, find_links=args.find_links,
                      python_tag=args.python_tag, platforms=args.platform or DEFAULT_PLATFORMS, prefix=args.prefix)


def _push_dataset(args: argparse.Namespace) -> int:
    from kitlib.release.commands import push_dataset_cmd

    return push_dataset_cmd(args.only, wait=not args.no_wait, timeout_s=args.timeout)


def _push_kernel(args: argparse.Namespace) -> int:
    from kitlib.release.commands import push_kernel_cmd

    return push_kernel_cmd(args.kernel, prefix=args.prefix)


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


def _dry_run(args: argparse.Namespace) -> int:
    from kitlib.release.dryrun import dry_run, format_result

    result = dry_run(args.kernel, bundles=args.bundles, out=args.out, reuse_venv=args.reuse_venv,
                     tiny=args.tiny_weights, n_test=args.n_test)
    print(format_result(result))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from kitlib.demo import run_demo

    run_demo(args.data, run=args.run, preset=args.preset)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kitlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("synth", help="write a synthetic dataset in the competition layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--n-test", type=int, default=8)
    p.add_argument("--size", choices=["tiny", "small", "real"], default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preview", action="store_true", help="also save PNGs of a slice through each motor")
    p.set_defaults(func=_synth)

    p = sub.add_parser("score", help="score a submission CSV against a solution CSV with the competition metric")
    p.add_argument("--solution", type=Path, required=True)
    p.add_argument("--submission", type=Path, required=True)
    p.set_defaults(func=_score)

    p = sub.add_parser("folds", help="write the fold assignment every tool reads")
    p.add_argument("--data", type=Path, default=None, help="competition folder (default: under the Kaggle root)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=_folds)

    p = sub.add_parser("export", help="write the training stacks (5-page TIFFs + pose labels with z) for one fold")
    _add_common(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--fold", type=int, required=True, help="the held-out fold (becomes the validation split)")
    p.add_argument("--folds", type=Path, default=None, help="folds CSV (default: see kitlib.data.folds)")
    p.set_defaults(func=_export)

    p = sub.add_parser("train", help="train the 5-channel YOLOv8 z-head model on an export")
    p.add_argument("--data", type=Path, required=True, help="an export folder or its dataset.yaml")
    p.add_argument("--run", required=True, help="outputs go to runs/<run>/")
    p.add_argument("--model", default=None, help="yolov8n / s / m / l / x")
    p.add_argument("--weights", type=Path, default=None, help="local 3-channel YOLOv8 .pt to adapt to 5 channels")
    p.add_argument("--epochs", type=int, default=None, help="a fixed epoch count (replaces the config's time budget)")
    p.add_argument("--minutes", type=float, default=None, help="train this long instead: epochs are re-estimated")
    p.add_argument("--imgsz", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu, 0, or 0,1 for DDP")
    p.add_argument("--resume", action="store_true", help="continue runs/<run>/weights/last.pt")
    _add_config(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("predict", help="write a submission for a split")
    _add_common(p)
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--weights", type=Path, nargs="+", required=True, help="one checkpoint per fold (an ensemble)")
    p.add_argument("--presence", type=Path, default=None, help="presence rule (default: presence.json beside weights)")
    p.add_argument("--out", type=Path, default=Path("submission.csv"))
    p.add_argument("--tta", nargs="+", default=None, help="TTA view names (default: the config's)")
    p.add_argument("--device", default=None)
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole split: shed views, widen step")
    p.set_defaults(func=_predict)

    p = sub.add_parser("local-score", help="train per fold, predict held-out folds, tune presence, score OOF")
    _add_common(p)
    p.add_argument("--run", default="local")
    p.add_argument("--weights", type=Path, nargs="+", default=None, help="score these weights instead of training")
    p.add_argument("--folds", type=Path, default=None)
    p.set_defaults(func=_local_score)

    p = sub.add_parser("z-error", help="out-of-fold |z error| of the run's fold models: z-head vs centre slice only")
    _add_common(p)
    p.add_argument("--run", default="demo", help="runs/<run>/fold*/weights/best.pt; config.yaml there unless --config")
    p.add_argument("--folds", type=Path, default=None, help="folds CSV (default: the one the run's score.json names)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_z_error)

    p = sub.add_parser("demo", help="synthesise data (or use --data), local-score, predict test, score it")
    p.add_argument("--data", type=Path, default=None, help="competition folder (default: synthesise data/demo)")
    p.add_argument("--run", default="demo")
    p.add_argument("--preset", choices=["default", "cpu"], default="cpu")
    p.set_defaults(func=_demo)

    add_kaggle_commands(sub)
    return parser


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=["default", "cpu"], default="default", help="config preset")
    p.add_argument("--config", type=Path, default=None, help="a config YAML (overrides --preset)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None, help="competition folder (default: under the Kaggle root)")
    _add_config(p)


def add_kaggle_commands(sub) -> None:
    datasets = ["src", "wheels", "weights"]
    p = sub.add_parser("bundle", help="build the src / wheels / weights Kaggle datasets under build/datasets/")
    p.add_argument("--only", nargs="+", choices=datasets, default=datasets)
    p.add_argument("--run", type=Path, default=None, help="run folder: fold*/weights/best.pt, presence.json, config.yaml")
    p.add_argument("--weights", type=Path, nargs="+", default=None, help="these checkpoints instead of every fold's best.pt")
    p.add_argument("--find-links", type=Path, default=None, help="take wheels from this folder only (no package index)")
    p.add_argument("--python-tag", default="cp311", help="the kernel's Python, as a wheel tag")
    p.add_argument("--platform", action="append", default=None,
                   help="wheel platform tag, repeatable (default: manylinux_2_17_x86_64 and manylinux2014_x86_64)")
    p.add_argument("--prefix", default="motor-kit", help="dataset slugs <prefix>-src, <prefix>-wheels, <prefix>-weights")
    p.set_defaults(func=_bundle)

    p = sub.add_parser("push-dataset", help="create or version the built datasets on Kaggle; wait until ready")
    p.add_argument("--only", nargs="+", choices=datasets, default=datasets)
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for 'ready'")
    p.set_defaults(func=_push_dataset)

    p = sub.add_parser("push-kernel", help="render kernels/<kernel>/ metadata and push a new version")
    p.add_argument("kernel", help="folder under kernels/, e.g. infer")
    p.add_argument("--prefix", default="motor-kit", help="the datasets' slug prefix")
    p.set_defaults(func=_push_kernel)

    p = sub.add_parser("kernel-status", help="status of the kernel's latest version (a failed run exits 1)")
    p.add_argument("kernel", help="folder under kernels/ (its last push) or owner/slug")
    p.add_argument("--wait", action="store_true", help="poll until it completes, fails or is cancelled")
    p.add_argument("--timeout", type=float, default=12 * 3600)
    p.set_defaults(func=_kernel_status)

    p = sub.add_parser("kernel-output", help="download the kernel's output files and log")
    p.add_argument("kernel", help="folder under kernels/ (its last push) or owner/slug")
    p.add_argument("--out", type=Path, default=None, help="default: build/kernels/<kernel>/output")
    p.set_defaults(func=_kernel_output)

    p = sub.add_parser("submit", help="submit a kernel version (default: the last pushed, once complete)")
    p.add_argument("kernel", help="folder under kernels/ (its last push) or owner/slug with --version")
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--message", default=None)
    p.set_defaults(func=_submit)

    p = sub.add_parser("submissions", help="latest submissions with public and private scores")
    p.set_defaults(func=_submissions)

    p = sub.add_parser("dry-run", help="run a kernel locally as Kaggle would (offline, simulated image), then score it")
    p.add_argument("kernel", nargs="?", default="infer", help="folder under kernels/ (default: infer)")
    p.add_argument("--bundles", type=Path, default=Path("build/datasets"),
                   help="built datasets to use (missing ones are built for the dry run)")
    p.add_argument("--out", type=Path, default=None, help="workspace (default: build/dryrun/<kernel>, replaced)")
    p.add_argument("--reuse-venv", action="store_true", help="run the kernel with this venv instead of a fresh one")
    p.add_argument("--tiny-weights", action="store_true", help="an untrained tiny model even if weights are built")
    p.add_argument("--n-test", type=int, default=4, help="synthetic test tomograms")
    p.set_defaults(func=_dry_run)



def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KaggleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
