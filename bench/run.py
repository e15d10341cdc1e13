"""`python -m bench.run [--quick]`: end-to-end inference seconds per tomogram and where they go.

Synthetic JPEG tomograms (300x960x928, or small ones with --quick) are read and located by the kit's own pipeline
(`kitlib.infer.predict.predict_tomograms`) with the default config on the CPU in fp32 (and on CUDA in fp16 when
present), next to the decode floor and the public host baseline's reader. Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from kitlib import runtime
from kitlib.config import KitConfig

from bench.data import bench_data
from bench.decode import baseline_reader_sec, decode_floor, tomogram_shape
from bench.pipeline import UNTRAINED, run_pipeline
from bench.report import markdown, write_results

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def bench_configs() -> list[KitConfig]:
    """The default config on the CPU in fp32, plus CUDA in fp16 when a GPU is present."""
    import torch

    default = KitConfig.preset("default")
    configs = [default.override({"infer": {"device": "cpu", "half": False}}, "bench")]
    if torch.cuda.is_available():
        configs.append(default.override({"infer": {"device": "0", "half": True}}, "bench"))
    return configs


def run_bench(cache: Path, size: str, n: int, quick: bool) -> dict:
    """Every measurement, CPU pipeline first so that the peak RSS is the pipeline's."""
    import torch

    runtime.prepare()
    data, tomo_ids = bench_data(cache, size, n)
    folders = [data.split_dir("test") / t for t in tomo_ids]
    configs = bench_configs()
    runs = [run_pipeline(data, tomo_ids, cfg, cache) for cfg in configs]
    floor = decode_floor(folders)
    shape = tomogram_shape(folders[0])
    tomo_mb = shape[0] * shape[1] * shape[2] / 2**20
    for run in runs:
        run["overhead_ratio"] = (run["sec_per_tomo"] - run["stages_sec_per_tomo"]["model"]) / floor["decode_floor_sec"]
    # peak RSS is the process's so far: only the first (CPU) run's is its own
    runs[0]["pipeline_rss_over_tomo"] = (runs[0]["peak_rss_mb"] - runs[0]["rss_before_mb"]) / tomo_mb
    infer = configs[0].infer
    return {
        **{k: runs[0][k] for k in ("sec_per_tomo", "overhead_ratio", "peak_rss_mb", "pipeline_rss_over_tomo", "device")},
        **floor,
        "baseline_reader_sec": baseline_reader_sec(folders),
        "stages_sec_per_tomo": runs[0]["stages_sec_per_tomo"],
        "quick": quick,
        "n_tomograms": len(tomo_ids),
        "shape": shape,
        "tomo_uint8_mb": tomo_mb,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "model": {"scale": configs[0].model.scale, "note": UNTRAINED, "imgsz": configs[0].model.imgsz,
                  "batch": infer.batch,
                  "slice_step": infer.slice_step, "tta": list(infer.tta), "decode_threads": infer.decode_threads},
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small tomograms, for development and tests")
    parser.add_argument("--size", choices=["tiny", "small", "real"], default=None, help="default: real (small if quick)")
    parser.add_argument("--n", type=int, default=None, help="tomograms (default: 4, 2 if quick)")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "bench", help="where the tomograms are cached")
    parser.add_argument("--out", type=Path, default=None, help="results stem (default: bench/results/latest or quick)")
    args = parser.parse_args(argv)
    size = args.size or ("small" if args.quick else "real")
    n = args.n or (2 if args.quick else 4)
    out = args.out or ROOT / "bench" / "results" / ("quick" if args.quick else "latest")
    result = run_bench(args.cache, size, n, args.quick)
    write_results(out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
