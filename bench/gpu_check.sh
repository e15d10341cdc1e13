#!/usr/bin/env bash
# `make gpu-check`: on a machine with a CUDA GPU, from a fresh checkout, in about 5-8 minutes. Makes its own
# real-size synthetic tomograms and runs (1) the inference bench at real size, CPU fp32 then CUDA fp16 (bench.run),
# (2) the rehearsal on CUDA (bench.rehearse --device cuda): a short default-preset training on GPU 0, then inference
# over every visible GPU through Predictor (a worker per GPU). Writes bench/results/gpu_check.{json,md} naming the
# device(s), beside gpu_bench.* and gpu_rehearse.*. PY=python: an environment with the kit installed instead of
# `make setup`'s .venv (which needs PyPI). Without a visible CUDA device it refuses in one line (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no CUDA device visible (nvidia-smi finds none): run it on a GPU machine" >&2
  exit 1
fi
if [ -z "${PY:-}" ]; then make setup; PY=.venv/bin/python; fi
if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check: torch sees no CUDA device (CUDA_VISIBLE_DEVICES, the driver, or a CPU-only torch)" >&2
  exit 1
fi
export PYTHONUNBUFFERED=1
OUT=bench/results
START=$(date +%s)
"$PY" -m bench.run --n 4 --out "$OUT/gpu_bench"
"$PY" -m bench.rehearse --device cuda --n-train 4 --n-test 4 --epochs 3 --max-stacks 64 --out "$OUT/gpu_rehearse"
"$PY" - "$OUT" "$START" <<'EOF'
import json, subprocess, sys, time
from pathlib import Path

import torch

out, start = Path(sys.argv[1]), float(sys.argv[2])
smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip().splitlines()
names = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
bench, rehearse = (json.loads((out / f"gpu_{n}.json").read_text()) for n in ("bench", "rehearse"))
result = {"devices": names, "nvidia_smi": smi, "wall_sec": time.time() - start, "git_commit": bench["git_commit"],
          "bench_cuda": [r for r in bench["runs"] if r["device"] != "cpu"], "bench_cpu": bench["runs"][0],
          "train_sec_per_stack": rehearse["train_sec_per_stack"], "infer_sec_per_tomo": rehearse["infer_sec_per_tomo"],
          "infer_devices": rehearse["stages"]["predict"]["devices"], "rehearse": rehearse}
(out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
head = (f"GPU check, MEASURED on {', '.join(names)} ({'; '.join(smi)}), commit {bench['git_commit']}, "
        f"{result['wall_sec']:.0f} s in all.\n\n")
reports = [(out / f"gpu_{n}.md").read_text() for n in ("bench", "rehearse")]
(out / "gpu_check.md").write_text(head + "\n".join(reports))
print(head + f"wrote {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
EOF
