"""What a kernel checks of the datasets it is given, shared by the kernel and the dry run: the wheels bundle's pins
(against `kitlib.version.installed_version`), a bundle's manifest of sha256 sums."""

from __future__ import annotations

import json
from pathlib import Path

from kitlib.data.errors import DataError
from kitlib.release.bundle import MANIFEST_FILE, sha256


def read_requirements(folder: Path) -> dict[str, str]:
    """name -> version of the `name==version` lines of a wheels bundle's requirements.txt."""
    path = folder / "requirements.txt"
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and line[0] != "#"]
        return dict(line.split("==") for line in lines)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a list of name==version pins ({e}); rebuild the wheels bundle") from e


def verify_manifest(folder: Path) -> None:
    """Every file the dataset's manifest.json lists exists with its recorded sha256 (DataError naming the file)."""
    path = folder / MANIFEST_FILE
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: unreadable manifest ({e}); rebuild the bundle") from e
    for entry in files:
        file = folder / entry["name"]
        if not file.is_file():
            raise DataError(f"{file}: listed in {path} but missing")
        if sha256(file) != entry["sha256"]:
            raise DataError(f"{file}: corrupt (sha256 differs from {path}; {file.stat().st_size} bytes, "
                            f"expected {entry['bytes']})")
