"""The architecture the tree promises (DEVELOPERS.md): no module imports from a higher floor, and the run folder's
file names are spelled out in one place, `kitlib/run.py`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

KITLIB = Path(__file__).resolve().parents[1] / "kitlib"
# Lower floors first; a unit may import only from strictly lower floors.
FLOORS = [
    {"config", "runtime", "version", "side_by_side"},
    {"preprocess", "metric"},
    {"data"},
    {"presence", "run", "kaggle"},
    {"model", "verify"},
    {"infer"},
    {"evaluation", "testing"},
    {"demo", "release"},
    {"kernel", "cli"},
    {"__main__"},
]
RUN_FILES = ("presence.json", "score.json", "oof.csv", "folds.csv", "best.pt", "last.pt", "z_error.json", "demo.json",
             "review.html", "run.json", "releases.json", "verifier.pt")


def floor_of(unit: str) -> int:
    return next(i for i, units in enumerate(FLOORS) if unit in units)


def unit_of(module: str) -> str:
    return module.split(".")[1] if "." in module else "kitlib"


def imports() -> list[tuple[str, str, Path]]:
    """(importing unit, imported unit, file) for every kitlib import between units, lazy ones included."""
    found = []
    for path in KITLIB.rglob("*.py"):
        parts = path.relative_to(KITLIB.parent).with_suffix("").parts
        src = unit_of(".".join(parts).removesuffix(".__init__"))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kitlib"):
                targets = [node.module] if node.module != "kitlib" else [f"kitlib.{a.name}" for a in node.names]
                found += [(src, unit_of(t), path) for t in targets if unit_of(t) != src]
    return found


def test_every_unit_has_a_floor():
    units = {unit_of(".".join(p.relative_to(KITLIB.parent).with_suffix("").parts).removesuffix(".__init__"))
             for p in KITLIB.rglob("*.py")}
    assert units - {"kitlib"} <= set().union(*FLOORS), units - set().union(*FLOORS)


def test_no_import_from_a_higher_floor():
    upward = [f"{path.relative_to(KITLIB.parent)}: {src} imports {dst}" for src, dst, path in imports()
              if floor_of(dst) >= floor_of(src)]
    assert not upward, upward


def test_the_run_layout_is_spelled_out_once():
    quoted = re.compile(r"[\"'][^\"'\n]*(" + "|".join(re.escape(f) for f in RUN_FILES) + r")[\"']")
    owners = {KITLIB / "run.py", KITLIB / "data" / "folds.py"}  # folds.py: the data folder's folds.csv, which runs reuse
    elsewhere = [f"{path.relative_to(KITLIB.parent)}:{n}" for path in KITLIB.rglob("*.py") if path not in owners
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if quoted.search(line.split("#")[0]) and '"""' not in line]
    assert not elsewhere, elsewhere


def test_every_folder_of_kitlib_is_a_package():
    """The kernel imports kitlib from a zipped wheel, where a folder without __init__.py (a namespace package) is not
    found."""
    folders = {p.parent for p in KITLIB.rglob("*.py") if "__pycache__" not in p.parts}
    assert not [str(f) for f in folders if not (f / "__init__.py").is_file()]
