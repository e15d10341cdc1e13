"""The kit's version: the installed package's, and `git describe` of the source tree it runs from."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parents[1]  # the folder holding kitlib/ (a checkout, or site-packages)


def package_version() -> str:
    """The installed kitlib distribution's version (`0+unknown` from a bare source tree)."""
    try:
        return importlib.metadata.version("kitlib")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


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
