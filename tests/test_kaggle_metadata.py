"""kernel-metadata.json rendering: the fields a code-competition kernel needs, and clear errors for bad templates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kitlib.config import COMPETITION_SLUG
from kitlib.data.errors import DataError
from kitlib.release.kernels import kernel_variant, render_kernel_metadata

DATASETS = ["tester/motor-kit-src", "tester/motor-kit-wheels", "tester/motor-kit-weights"]


def kernel_dir(tmp_path: Path, template: dict, code_file: str = "infer.py") -> Path:
    folder = tmp_path / "kernels" / "infer"
    folder.mkdir(parents=True)
    (folder / code_file).write_text("print('hi')\n")
    (folder / "kernel-metadata.template.json").write_text(json.dumps(template))
    return folder


BASE = {"id": "{username}/motor-kit-infer", "title": "Motor Kit: Infer", "code_file": "infer.py"}


def test_rendered_metadata_is_an_offline_private_gpu_script_with_competition_and_datasets(tmp_path):
    folder = kernel_dir(tmp_path, {**BASE, "machine_shape": "NvidiaTeslaT4"})
    out = tmp_path / "build"
    path = render_kernel_metadata(folder, "tester", DATASETS, out)
    meta = json.loads(path.read_text())
    assert path == out / "kernel-metadata.json"
    assert meta == {
        "id": "tester/motor-kit-infer",
        "title": "Motor Kit: Infer",
        "code_file": "infer.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": DATASETS,
        "competition_sources": [COMPETITION_SLUG],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": "NvidiaTeslaT4",
    }
    assert '"enable_internet": false' in path.read_text()  # written, not left to the client's default (true)
    assert (out / "infer.py").read_text() == "print('hi')\n"


def test_the_machine_shape_is_always_written(tmp_path):
    meta = json.loads(render_kernel_metadata(kernel_dir(tmp_path, BASE), "tester", DATASETS, tmp_path / "b").read_text())
    assert meta["machine_shape"] == "NvidiaTeslaT4"


def test_a_fold_gets_its_own_kernel_with_the_fold_in_its_script(tmp_path):
    folder = kernel_dir(tmp_path, {**BASE, "id": "{username}/motor-kit-train", "title": "motor-kit train",
                                   "code_file": "train.py"}, code_file="train.py")
    (folder / "train.py").write_text('import os\nFOLD = int(os.environ.get("KIT_FOLD", 0))\nprint(FOLD)\n')
    meta = json.loads(render_kernel_metadata(folder, "tester", DATASETS, tmp_path / "b", fold=3).read_text())
    assert (meta["id"], meta["title"]) == ("tester/motor-kit-train-fold3", "motor-kit train fold3")
    assert 'FOLD = int(os.environ.get("KIT_FOLD", 3))' in (tmp_path / "b" / "train.py").read_text()
    (folder / "train.py").write_text("print('no fold line')\n")
    with pytest.raises(DataError, match="needs exactly one line starting 'FOLD = '"):
        render_kernel_metadata(folder, "tester", DATASETS, tmp_path / "c", fold=1)


def test_notebook_code_file_gives_a_notebook_kernel(tmp_path):
    folder = kernel_dir(tmp_path, {**BASE, "code_file": "infer.ipynb"}, code_file="infer.ipynb")
    meta = json.loads(render_kernel_metadata(folder, "tester", DATASETS, tmp_path / "b").read_text())
    assert meta["kernel_type"] == "notebook"


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"kernel_type": "notebook"}, r"kernel_type 'notebook' does not match 'infer.py' \(script\)"),
        ({"enable_internet": True}, "enable_internet must be False"),
        ({"is_private": False}, "is_private must be True"),
        ({"title": "Motor kit inference"}, "title 'Motor kit inference' gives the slug 'motor-kit-inference', not"),
        ({"title": "abc"}, "title 'abc' must be 5-50 characters"),
        ({"id": "someone/motor-kit-infer"}, "id 'someone/motor-kit-infer' must be '{username}/<slug>'"),
        ({"id": "{username}/Motor_Kit"}, "id 'tester/Motor_Kit' must be"),
        ({"code_file": "missing.py"}, "code_file .*missing.py not found"),
        ({"code_file": "../infer.py"}, "code_file '../infer.py' must be the name of a file"),
        ({"dataset_sources": ["x/y"]}, r"unknown keys \['dataset_sources'\] \(sources are written by the kit\)"),
        ({"title": "{user}"}, r"unknown placeholder\(s\) \['user'\]"),
        ({"machine_shape": "NvidiaA100"}, r"machine_shape 'NvidiaA100' must be one of \['NvidiaTeslaT4', 'NvidiaTeslaP100'\]"),
    ],
)
def test_bad_templates_fail_with_the_template_path_and_the_problem(tmp_path, change, problem):
    folder = kernel_dir(tmp_path, {**BASE, **change})
    template = folder / "kernel-metadata.template.json"
    with pytest.raises(DataError, match=rf"^{re.escape(str(template))}: .*{problem}"):
        render_kernel_metadata(folder, "tester", DATASETS, tmp_path / "build")
    assert not (tmp_path / "build").exists()


def test_dataset_sources_must_be_owner_slug(tmp_path):
    folder = kernel_dir(tmp_path, BASE)
    with pytest.raises(DataError, match="dataset source 'motor-kit-src' must be 'owner/slug'"):
        render_kernel_metadata(folder, "tester", ["motor-kit-src"], tmp_path / "build")


def test_missing_template(tmp_path):
    with pytest.raises(DataError, match=r"kernel-metadata.template.json: template not found"):
        render_kernel_metadata(tmp_path, "tester", DATASETS, tmp_path / "build")


def test_the_notebook_form_is_a_kernel_of_its_own_holding_the_scripts_cells(tmp_path):
    folder = kernel_dir(tmp_path, {**BASE, "title": "motor-kit infer", "kernel_type": "script"})
    (folder / "infer.py").write_text("import os\n\n# %% [markdown]\n# ## Predict\n\n# %%\nprint(os.sep)\n")
    out = tmp_path / "build" / kernel_variant("infer", notebook=True)
    meta = json.loads(render_kernel_metadata(folder, "tester", DATASETS, out, notebook=True).read_text())
    assert out.name == "infer-notebook" and sorted(p.name for p in out.iterdir()) == ["infer.ipynb",
                                                                                      "kernel-metadata.json"]
    assert (meta["id"], meta["title"]) == ("tester/motor-kit-infer-notebook", "motor-kit infer notebook")
    assert (meta["code_file"], meta["kernel_type"]) == ("infer.ipynb", "notebook")
    assert meta["enable_internet"] is False and meta["dataset_sources"] == DATASETS
    cells = json.loads((out / "infer.ipynb").read_text())["cells"]
    assert [(c["cell_type"], "".join(c["source"])) for c in cells] == [
        ("code", "import os"), ("markdown", "## Predict"), ("code", "print(os.sep)")]


def test_a_fold_of_the_notebook_form_and_a_script_without_cells(tmp_path):
    folder = kernel_dir(tmp_path, {**BASE, "id": "{username}/motor-kit-train", "title": "motor-kit train",
                                   "code_file": "train.py"}, code_file="train.py")
    (folder / "train.py").write_text('import os\n# %%\nFOLD = int(os.environ.get("KIT_FOLD", 0))\n')
    meta = json.loads(render_kernel_metadata(folder, "tester", DATASETS, tmp_path / "b", fold=2, notebook=True)
                      .read_text())
    assert meta["id"] == "tester/motor-kit-train-fold2-notebook"
    assert kernel_variant("train", 2, notebook=True) == "train-fold2-notebook"
    assert 'KIT_FOLD", 2' in "".join(json.loads((tmp_path / "b" / "train.ipynb").read_text())["cells"][1]["source"])
    (folder / "train.py").write_text('FOLD = int(os.environ.get("KIT_FOLD", 0))\n')
    with pytest.raises(DataError, match=r"train.py: a notebook is made from a .py script split into cells by '# %%'"):
        render_kernel_metadata(folder, "tester", DATASETS, tmp_path / "c", notebook=True)
    assert not (tmp_path / "c").exists()
