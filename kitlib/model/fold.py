"""One fold's model: export the fold's stacks, then train on the other folds. `train`, `local-score` and the train
kernel all train folds through `train_fold`."""

from __future__ import annotations

from pathlib import Path

from kitlib.config import KitConfig
from kitlib.data.labels import TomoRecord
from kitlib.data.layout import CompetitionData
from kitlib.run import RunDir


def is_finished(checkpoint: Path) -> bool:
    """The checkpoint is a finished training's (the trainer adds a top-level `kit_meta` key only at the end)."""
    from kitlib.model.build import read_checkpoint

    return Path(checkpoint).is_file() and "kit_meta" in read_checkpoint(checkpoint)


def train_fold(
    data: CompetitionData,
    run: RunDir,
    fold: int,
    cfg: KitConfig,
    folds: dict[str, int],
    records: list[TomoRecord],
    resume: bool = False,
    export_dir: Path | None = None,
) -> Path:
    """Train the model that holds `fold` out into `run.fold_dir(fold)`; its best checkpoint.

    `resume`: a finished fold is kept as it is; an interrupted one continues from its `last.pt` when its export is
    still there; otherwise the fold trains from the start. The export goes to `export_dir` (default
    `run.export_dir(fold)`).
    """
    from kitlib.data.export import export_fold
    from kitlib.model.trainer import check_tensorboard, train

    check_tensorboard(cfg.train)  # before any export
    best, last = run.fold_checkpoint(fold), run.fold_last(fold)
    export = Path(export_dir) if export_dir is not None else run.export_dir(fold)
    if resume and is_finished(best):
        print(f"fold {fold}: finished checkpoint {best} kept (--resume)", flush=True)
        return best
    if resume and last.is_file() and (export / "dataset.yaml").is_file():
        print(f"fold {fold}: resuming {last}", flush=True)
        return train(export / "dataset.yaml", cfg, run.fold_dir(fold), resume=True)
    cache = run.export_stacks if export_dir is None else None  # one store for all the run's folds
    data_yaml = export_fold(data.root, export, fold, cfg, folds, records, cache=cache)
    return train(data_yaml, cfg, run.fold_dir(fold))
