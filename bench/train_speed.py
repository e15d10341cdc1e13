"""`make train-speed`: seconds per training epoch of the cpu preset on a run's fold export, per training setting ->
bench/results/train_speed.{json,md}.

Each setting trains `--epochs` epochs from scratch on the same export (default: the demo's fold 0, so run `make
demo` first) and reports the mean epoch time after the first (which builds the dataloader) and the last epoch's
losses: a setting that only changes speed (the RAM cache) must give the same losses as the one without it.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from kitlib.config import KitConfig
from kitlib.model.trainer import train

from bench.report import write_results
from bench.run import ROOT, git_commit

SETTINGS = {  # name -> train section overrides on the cpu preset
    "no appearance, no cache": {"appearance": 0.0, "cache": False},
    "appearance 0.7 (the preset)": {"appearance": 0.7, "cache": False},
    "appearance 0.7, RAM cache": {"appearance": 0.7, "cache": True},
}
LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss", "train/z_loss")


def time_setting(data_yaml: Path, train_changes: dict, epochs: int, work: Path) -> dict:
    """Train one setting; epoch times from ultralytics' results.csv (its `time` column is cumulative seconds)."""
    cfg = KitConfig.preset("cpu").override({"train": {**train_changes, "epochs": epochs, "close_mosaic": 1}},
                                           "train-speed")
    started = time.perf_counter()
    train(data_yaml, cfg, work)
    wall = time.perf_counter() - started
    with (work / "results.csv").open() as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    clock = [float(r["time"]) for r in rows]
    per_epoch = [b - a for a, b in zip(clock, clock[1:])]
    return {"settings": train_changes, "epochs": len(rows), "wall_s": round(wall, 1),
            "s_per_epoch": round(sum(per_epoch) / len(per_epoch), 2) if per_epoch else None,
            "last_losses": {k.split("/")[1]: float(rows[-1][k]) for k in LOSSES}}


def markdown(result: dict) -> str:
    lines = [f"Training speed, cpu preset, {result['epochs']} epochs on {result['export']}, commit "
             f"{result['git_commit']}.", "",
             "| setting | s / epoch (after the first) | wall s | last losses (box, cls, dfl, z) |",
             "| --- | --- | --- | --- |"]
    for name, r in result["runs"].items():
        losses = ", ".join(f"{v:.4f}" for v in r["last_losses"].values())
        lines.append(f"| {name} | {r['s_per_epoch']} | {r['wall_s']} | {losses} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=ROOT / "runs" / "demo" / "export" / "fold0" / "dataset.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    if not args.export.is_file():
        raise SystemExit(f"{args.export}: no fold export: run `make demo` first, or pass --export DIR/dataset.yaml")
    result = {"git_commit": git_commit(), "export": str(args.export), "epochs": args.epochs, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, changes) in enumerate(SETTINGS.items()):
            print(f"== {name} ==")
            result["runs"][name] = time_setting(args.export, changes, args.epochs, Path(tmp) / f"setting{i}")
    write_results(ROOT / "bench" / "results" / "train_speed", result, markdown(result))


if __name__ == "__main__":
    main()
