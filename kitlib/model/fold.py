"""One fold's model: export the fold's stacks, then train on the other folds. `train`, `local-score` and the train
kernel all train folds through `train_fold`; `train_folds` trains several, side by side on the CPU when
`train.parallel_folds` asks for it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord
from kitlib.data.layout import CompetitionData
from kitlib.run import RunDir

PROGRESS_EVERY_S = 30.0  # how often side-by-side training prints where each fold is


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
    from kitlib.model.trainer import train

    job = _prepare_fold(data, run, fold, cfg, folds, records, resume, export_dir)
    if job is None:
        return run.fold_checkpoint(fold)
    data_yaml, resume_it = job
    return train(data_yaml, cfg, run.fold_dir(fold), resume=resume_it)


def train_folds(
    data: CompetitionData,
    run: RunDir,
    fold_ids: Sequence[int],
    cfg: KitConfig,
    folds: dict[str, int],
    records: list[TomoRecord],
    resume: bool = False,
) -> dict[int, Path]:
    """`train_fold` for each of `fold_ids`; fold -> best checkpoint.

    On the CPU, `cfg.train.parallel_folds` folds train at once, each in its own process with an equal share of this
    process's threads and its output in `<fold dir>/train.log`; a line every 30 s says which epoch each has reached.
    Exports are written first, here, one fold after another (they share the run's stack store).
    """
    parallel = min(cfg.train.folds_at_once(), len(fold_ids))
    if parallel <= 1:
        return {fold: train_fold(data, run, fold, cfg, folds, records, resume) for fold in fold_ids}
    import torch

    jobs = {fold: _prepare_fold(data, run, fold, cfg, folds, records, resume, None) for fold in fold_ids}
    todo = {fold: job for fold, job in jobs.items() if job is not None}
    threads = max(1, torch.get_num_threads() // parallel)
    trained = _train_side_by_side(run, todo, cfg, parallel, threads) if todo else {}
    return {fold: trained.get(fold, run.fold_checkpoint(fold)) for fold in fold_ids}


def _prepare_fold(data: CompetitionData, run: RunDir, fold: int, cfg: KitConfig, folds: dict[str, int],
                  records: list[TomoRecord], resume: bool, export_dir: Path | None) -> tuple[Path, bool] | None:
    """What training fold `fold` takes: None when its finished checkpoint is kept (`resume`), else its export's
    dataset.yaml (exported now unless an interrupted training resumes on it) and whether to resume."""
    from kitlib.data.export import export_fold
    from kitlib.model.trainer import check_tensorboard

    check_tensorboard(cfg.train)  # before any export
    best, last = run.fold_checkpoint(fold), run.fold_last(fold)
    export = Path(export_dir) if export_dir is not None else run.export_dir(fold)
    if resume and is_finished(best):
        print(f"fold {fold}: finished checkpoint {best} kept (--resume)", flush=True)
        return None
    if resume and last.is_file() and (export / "dataset.yaml").is_file():
        print(f"fold {fold}: resuming {last}", flush=True)
        return export / "dataset.yaml", True
    cache = run.export_stacks if export_dir is None else None  # one store for all the run's folds
    return export_fold(data.root, export, fold, cfg, folds, records, cache=cache), False


def _train_side_by_side(run: RunDir, jobs: dict[int, tuple[Path, bool]], cfg: KitConfig, parallel: int,
                        threads: int) -> dict[int, Path]:
    """Train `jobs` (fold -> (dataset.yaml, resume)) in `parallel` spawned processes of `threads` threads each;
    fold -> best checkpoint."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    logs = {fold: run.fold_dir(fold) / "train.log" for fold in jobs}
    print(f"training folds {', '.join(map(str, jobs))} side by side ({parallel} at a time, {threads} "
          f"thread{'s' if threads > 1 else ''} each); their output: {', '.join(map(str, logs.values()))}", flush=True)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch thread pool inherited
    with ProcessPoolExecutor(parallel, mp_context=context) as pool:
        futures = {pool.submit(_train_logged, data_yaml, cfg, run.fold_dir(fold), resume, threads, logs[fold]): fold
                   for fold, (data_yaml, resume) in jobs.items()}
        pending, state, last_line = set(futures), {}, ""
        while pending:
            done, pending = wait(pending, timeout=PROGRESS_EVERY_S)
            for future in done:
                fold, error = futures[future], future.exception()
                state[fold] = "done" if error is None else "failed"
                if error is not None:  # the others train on: a finished fold is kept by a resume
                    print(f"fold {fold}: training failed: {error} (its log: {logs[fold]}); the other folds finish "
                          f"first, and a resume (RESUME=1, --resume) keeps them", flush=True)
            line = " · ".join(f"fold {fold}: {state.get(fold) or _epochs(run.fold_dir(fold), cfg)}" for fold in jobs)
            if line != last_line:
                print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
                last_line = line
    failed = [(fold, future.exception()) for future, fold in futures.items() if future.exception() is not None]
    if failed:
        fold, error = failed[0]
        kind = DataError if isinstance(error, DataError) else RuntimeError
        raise kind(f"fold {fold}: training failed: {error} (its log: {logs[fold]})") from error
    return {fold: future.result() for future, fold in futures.items()}


def _epochs(fold_dir: Path, cfg: KitConfig) -> str:
    """'epoch 12/85': the rows of ultralytics' results.csv (one per finished epoch) against the planned count."""
    results = fold_dir / "results.csv"
    epochs = max(len(results.read_text().splitlines()) - 1, 0) if results.is_file() else 0
    planned = "" if cfg.train.time_budget_s is not None else f"/{cfg.train.epochs}"
    return f"epoch {epochs}{planned}"


def _train_logged(data_yaml: Path, cfg: KitConfig, save_dir: Path, resume: bool, threads: int, log: Path) -> Path:
    """A worker process's training, with `threads` torch threads and its stdout and stderr in `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a" if resume else "w", buffering=1) as f:  # a resumed training's log goes on
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            os.dup2(f.fileno(), stream.fileno())
        from kitlib import runtime

        runtime.prepare(threads=threads)
        from kitlib.model.trainer import train

        best = train(data_yaml, cfg, save_dir, resume=resume)
        sys.stdout.flush()
        sys.stderr.flush()
        return best
