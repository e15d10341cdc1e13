"""The bench result as a markdown table."""

from __future__ import annotations

import json
from pathlib import Path


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(result: dict) -> str:
    """One table of the headline figures, one row per pipeline run (CPU fp32, and CUDA fp16 when present)."""
    lines = [
        f"Inference bench ({'quick' if result['quick'] else 'full'}): {result['n_tomograms']} tomograms of "
        f"{'x'.join(map(str, result['shape']))}, {result['cpu_count']} CPU cores, torch {result['torch']}, "
        f"commit {result['git_commit']}. Model: {result['model']['note']}.",
        "",
        "| device | precision | s/tomo | read (bg) | wait | normalize | model | fusion | other | overhead ratio "
        "| peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in result["runs"]:
        s = run["stages_sec_per_tomo"]
        cells = [run["device_name"], "fp16" if run["half"] else "fp32", run["sec_per_tomo"], s["read"], s["wait"],
                 s["normalize"], s["model"], s["fusion"], s["other"], run["overhead_ratio"], run["peak_rss_mb"]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    lines += [
        "",
        f"Decode floor ({result['decode_floor_decoder']}, {result['decode_threads']} threads): "
        f"{result['decode_floor_sec']:.3f} s/tomo; host-baseline reader (PIL + per-slice np.percentile, one thread): "
        f"{result['baseline_reader_sec']:.3f} s/tomo. Overhead ratio = (s/tomo - model) / decode floor. "
        "Stages are per-tomogram means; read runs in the background (prefetch), wait is the part not hidden. "
        f"CPU pipeline memory above the loaded model: {result['pipeline_rss_over_tomo']:.2f}x the uint8 tomogram "
        f"({result['tomo_uint8_mb']:.0f} MB).",
    ]
    return "\n".join(lines) + "\n"


def write_results(out: Path, result: dict, report: str) -> None:
    """`<out>.json` and `<out>.md` (the report, also printed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(report)
    print(report)
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}")
