"""Fold jobs side by side on the CPU: each in a spawned process with an equal share of this process's threads (the
kit's small models use two cores better as two 1-thread processes than as one 2-thread one)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any


def run_folds_side_by_side(work: Callable[..., Any], jobs: dict[Hashable, tuple], parallel: int, what: str,
                           done: Callable[[Any], str], name: Callable[[Any], str] = "fold {}".format) -> dict:
    """`work(*jobs[key], threads=n)` for every job (a fold, or what `name` calls it), `parallel` at a time, each in a
    fresh spawned interpreter (no torch thread pool inherited); key -> result. Prints a line when they start
    (`what`) and one per job as it finishes (`done(result)`); a failure is raised when the others are done."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    threads = max(1, torch.get_num_threads() // parallel)
    print(f"{what}: {', '.join(map(name, jobs))} side by side ({parallel} at a time, {threads} "
          f"thread{'s' if threads > 1 else ''} each)", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(work, *args, threads=threads) for key, args in jobs.items()}
        results = {}
        for key, future in futures.items():
            results[key] = future.result()
            print(f"{name(key)}: {done(results[key])} ({time.perf_counter() - started:.0f} s)", flush=True)
    return results
