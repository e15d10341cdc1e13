"""A kernel script as a Jupyter notebook, so the script stays the one source of both forms.

Cells begin at `# %%` lines (the percent format VS Code, Spyder and jupytext read; text after `# %%` is a title and
is dropped with the line); a `# %% [markdown]` cell is a block of comment lines, written without their `# `. The
code cells, joined, are the script's code: only marker lines, markdown blocks and blank lines at cell edges differ.
The notebook is nbformat v4 JSON with a python3 kernelspec, written with the standard library.
"""

from __future__ import annotations

import json
import re

from kitlib.data.errors import DataError

MARKER = re.compile(r"^# %%(?P<markdown>\s*\[markdown\])?(?:\s.*)?$")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def has_cells(script: str) -> bool:
    """The script marks notebook cells (`# %%` lines)."""
    return any(MARKER.match(line) for line in script.splitlines())


def split_cells(script: str, where: str = "<script>") -> list[tuple[str, str]]:
    """(cell_type, source) of each non-empty cell of `script`, in order (text before the first marker: a code cell).
    DataError "<where>:<line>: ..." for code inside a markdown cell (the notebook would lose it)."""
    cells: list[tuple[str, list[str]]] = [("code", [])]
    for n, line in enumerate(script.splitlines(), 1):
        marker = MARKER.match(line)
        if marker:
            cells.append(("markdown" if marker["markdown"] else "code", []))
        elif cells[-1][0] == "markdown":
            if line.strip() and not line.startswith("#"):
                raise DataError(f"{where}:{n}: code in a '# %% [markdown]' cell: start a code cell above it ('# %%')")
            cells[-1][1].append(re.sub(r"^#( |$)", "", line))
        else:
            cells[-1][1].append(line)
    out = [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]
    return [(kind, source) for kind, source in out if source.strip()]


def to_notebook(script: str, where: str = "<script>") -> dict:
    """The nbformat v4 notebook of `script` (`split_cells`), outputs empty."""
    cells = []
    for i, (kind, source) in enumerate(split_cells(script, where)):
        cell = {"cell_type": kind, "id": f"cell-{i}", "metadata": {}, "source": source.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def notebook_text(script: str, where: str = "<script>") -> str:
    """`to_notebook(script)` as the text of an .ipynb file."""
    return json.dumps(to_notebook(script, where), indent=1, ensure_ascii=False) + "\n"
