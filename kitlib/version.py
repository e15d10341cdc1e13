"""The kit's version (the installed package's, and `git describe` of the source tree it runs from) and the machine
it runs on: what a measured figure needs beside it."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parents[1]  # the folder holding kitlib/ (a checkout, or site-packages)


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_version() -> str:
    """The installed kitlib distribution's version (`0+unknown` from a bare source tree)."""
    return installed_version("kitlib") or "0+unknown"


def version_stamp(root: Path = KIT_ROOT) -> str:
    """`git describe --always --dirty` of `root` (e.g. `0217dbb1a2c3-dirty`) when it is a git checkout, else
    `unknown`."""
    if not (Path(root) / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root, capture_output=True, text=True, timeout=30, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def cpu_model() -> str:
    """The CPU's model name (`/proc/cpuinfo`; elsewhere what `platform` knows)."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.is_file() else []
    return models[0] if models else platform.processor() or platform.machine()


def machine_stamp() -> dict:
    """What this process computes on: the CPU model and cores, torch's CPU kernels (AVX2 and AVX-512 round
    differently, so a model trained on one differs in its last bits, then in its figures, from one trained on the
    other), the torch and ultralytics versions and any CUDA GPUs."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "ultralytics": installed_version("ultralytics"), "gpus": gpus}


def describe_machine(stamp: dict) -> str:
    """One line of `machine_stamp()`: `AMD EPYC, 2 cores, AVX512 kernels, torch 2.14.1, no GPU`."""
    return (f"{stamp['cpu']}, {stamp['cores']} cores, {stamp['cpu_kernels']} kernels, torch {stamp['torch']}, "
            f"{', '.join(stamp['gpus']) or 'no GPU'}")
