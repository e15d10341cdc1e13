"""A kernel script's notebook form (`kitlib.release.notebook`): cells at `# %%` lines, valid nbformat v4, the script's
own code. nbformat (a test dependency) validates what the kit writes with the standard library."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest

from kitlib.data.errors import DataError
from kitlib.release import bundle
from kitlib.release.notebook import MARKER, has_cells, notebook_text, split_cells, to_notebook

INFER = bundle.REPO_ROOT / "kernels" / "infer" / "infer.py"


def code_of(notebook: dict) -> str:
    return "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")


def test_the_infer_notebook_is_valid_nbformat_v4_and_its_code_is_the_scripts():
    script = INFER.read_text()
    text = notebook_text(script, str(INFER))
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)  # raises on any schema violation
    raw = json.loads(text)
    assert (raw["nbformat"], raw["metadata"]["kernelspec"]["name"]) == (4, "python3")
    kinds = [c["cell_type"] for c in raw["cells"]]
    assert kinds.count("code") >= 4 and kinds.count("markdown") >= 3
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in raw["cells"] if c["cell_type"] == "code")
    # the same program (comments aside), and line for line the script's code without its cell markers
    assert ast.dump(ast.parse(code_of(raw))) == ast.dump(ast.parse(script))
    markdown = {line for c in raw["cells"] if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines()}
    kept = [line for line in script.splitlines() if line.strip() and not MARKER.match(line)
            and line.removeprefix("# ") not in markdown]
    assert [line for line in code_of(raw).splitlines() if line.strip()] == kept


def test_cells_split_at_markers_and_markdown_loses_its_comment_signs():
    script = "import os\n\n# %% [markdown]\n# ## Step 1\n#\n# says *why*\n\n# %% step one\nx = 1\n# a comment stays\n"
    assert has_cells(script) and not has_cells("x = 1  # %% not a marker\n")
    assert split_cells(script) == [("code", "import os"), ("markdown", "## Step 1\n\nsays *why*"),
                                   ("code", "x = 1\n# a comment stays")]
    cells = to_notebook(script)["cells"]
    assert [c["id"] for c in cells] == ["cell-0", "cell-1", "cell-2"]
    assert cells[2]["source"] == ["x = 1\n", "# a comment stays"]


def test_code_inside_a_markdown_cell_is_refused_naming_the_line():
    with pytest.raises(DataError, match=r"^kernels/x.py:3: code in a '# %% \[markdown\]' cell"):
        split_cells("# %% [markdown]\n# text\nprint('lost in a notebook')\n", "kernels/x.py")
