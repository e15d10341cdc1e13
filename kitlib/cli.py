"""`python -m kitlib <command>`: a thin argparse layer; each command calls one library function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kitlib.data.errors import DataError


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
