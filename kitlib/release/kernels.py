"""Render `kernels/<name>/kernel-metadata.template.json` into a pushable folder.

Template format (JSON; `{username}` is the only placeholder):

    {"id": "{username}/motor-kit-infer", "title": "motor-kit infer", "code_file": "infer.py"}

Optional keys: `kernel_type` (must match the code file), `machine_shape` (default `NvidiaTeslaT4`, Kaggle's 2×T4
machine; or `NvidiaTeslaP100`), `keywords`, `docker_image_pinning_type`.
The kit writes the rest and refuses templates that contradict it: `language: python`, `kernel_type` from the code
file (.py script, .ipynb notebook), `is_private: true`, `enable_gpu: true`, `enable_internet: false` (written
explicitly: the client defaults it to TRUE, and a code competition rejects internet), `competition_sources:
[COMPETITION_SLUG]` and `dataset_sources` (the three bundles).

Variants of a kernel are kernels of their own, named `<kernel>[-fold<k>][-notebook]` (`kernel_variant`; the slug
and title take the same suffixes): a train kernel per fold, and the notebook form of a script whose cells are
marked with `# %%` lines (`kitlib.release.notebook`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kitlib.config import COMPETITION_SLUG
from kitlib.data.errors import DataError
from kitlib.release.notebook import has_cells, notebook_text
from kitlib.release.templates import render_template, write_json

TEMPLATE_FILE = "kernel-metadata.template.json"
METADATA_FILE = "kernel-metadata.json"
KERNEL_TYPES = {".py": "script", ".ipynb": "notebook"}
FIXED: dict[str, Any] = {"language": "python", "is_private": True, "enable_gpu": True, "enable_internet": False}
OPTIONAL = {"kernel_type", "machine_shape", "keywords", "docker_image_pinning_type"}
# Written explicitly (a kernel pushed without one gets whatever Kaggle defaults to): kagglesdk lists these GPU shapes;
# Kaggle's T4 machine carries two T4s, which inference uses both of.
MACHINE_SHAPES = ("NvidiaTeslaT4", "NvidiaTeslaP100")
DEFAULT_MACHINE_SHAPE = "NvidiaTeslaT4"
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_REF = re.compile(r"[A-Za-z0-9_-]+/[a-z0-9]+(-[a-z0-9]+)*")
_FOLD_LINE = re.compile(r"^FOLD = .*$", re.M)


def _check(meta: dict[str, Any], kernel_dir: Path, username: str) -> list[str]:
    from slugify import slugify  # the client's own slug rule (python-slugify, a kaggle dependency)

    problems = []
    unknown = sorted(set(meta) - {"id", "title", "code_file"} - OPTIONAL - set(FIXED))
    if unknown:
        problems.append(f"unknown keys {unknown} (sources are written by the kit)")
    problems += [f"{k} must be {v!r} for a code-competition kernel" for k, v in FIXED.items() if meta.get(k, v) != v]
    ref, title = str(meta.get("id", "")), str(meta.get("title", ""))
    owner, _, slug = ref.partition("/")
    if owner != username or not _SLUG.fullmatch(slug) or not 5 <= len(slug) <= 50:
        problems.append(f"id {ref!r} must be '{{username}}/<slug>' with a slug of 5-50 of a-z, 0-9, single hyphens")
    if not 5 <= len(title) <= 50:
        problems.append(f"title {title!r} must be 5-50 characters")
    elif slugify(title) != slug:
        problems.append(f"title {title!r} gives the slug {slugify(title)!r}, not the id's {slug!r}")
    code_file = str(meta.get("code_file", ""))
    kernel_type = KERNEL_TYPES.get(Path(code_file).suffix)
    if not code_file or Path(code_file).name != code_file:
        problems.append(f"code_file {code_file!r} must be the name of a file in {kernel_dir}")
    elif not (kernel_dir / code_file).is_file():
        problems.append(f"code_file {kernel_dir / code_file} not found")
    elif kernel_type is None:
        problems.append(f"code_file {code_file!r} must end in .py (script) or .ipynb (notebook)")
    elif meta.get("kernel_type", kernel_type) != kernel_type:
        problems.append(f"kernel_type {meta['kernel_type']!r} does not match {code_file!r} ({kernel_type})")
    if meta.get("machine_shape", DEFAULT_MACHINE_SHAPE) not in MACHINE_SHAPES:
        problems.append(f"machine_shape {meta['machine_shape']!r} must be one of {list(MACHINE_SHAPES)}")
    return problems


def _suffixes(fold: int | None, notebook: bool) -> list[str]:
    return ([] if fold is None else [f"fold{fold}"]) + (["notebook"] if notebook else [])


def kernel_variant(kernel: str, fold: int | None = None, notebook: bool = False) -> str:
    """The name a variant is recorded under (`build/kernels/<it>/`) and that kernel-status, kernel-output and submit
    take: `infer-notebook`, `train-fold3`."""
    return "-".join([kernel, *_suffixes(fold, notebook)])


def render_kernel_metadata(
    kernel_dir: Path, username: str, datasets: list[str], out_dir: Path, fold: int | None = None,
    notebook: bool = False,
) -> Path:
    """Write `out_dir/kernel-metadata.json` and a copy of the code file; return the metadata path.

    `fold`: a kernel of its own for that fold (slug `<slug>-fold<k>`, title `<title> fold<k>`), whose copied code
    file has the fold written into its `FOLD = ...` line: Kaggle passes no arguments or environment to a kernel.
    `notebook`: the script pushed as a notebook kernel of its own (slug `<slug>-notebook`, title `<title> notebook`),
    its code file `<stem>.ipynb` made from the script's `# %%` cells.
    """
    template = kernel_dir / TEMPLATE_FILE
    meta = render_template(template, {"username": username})
    for suffix in _suffixes(fold, notebook):
        meta["id"], meta["title"] = f"{meta.get('id', '')}-{suffix}", f"{meta.get('title', '')} {suffix}"
    problems = _check(meta, kernel_dir, username)
    problems += [f"dataset source {d!r} must be 'owner/slug'" for d in datasets if not _REF.fullmatch(d)]
    if problems:
        raise DataError(f"{template}: " + "; ".join(problems))
    script = kernel_dir / meta["code_file"]
    text = script.read_text() if fold is None else _with_fold(script, int(fold))
    if notebook and (script.suffix != ".py" or not has_cells(text)):
        raise DataError(f"{script}: a notebook is made from a .py script split into cells by '# %%' lines")
    code_file, code = (f"{script.stem}.ipynb", notebook_text(text, str(script))) if notebook else (script.name, text)
    rendered = {
        "id": meta["id"],
        "title": meta["title"],
        "code_file": code_file,
        "language": "python",
        "kernel_type": KERNEL_TYPES[Path(code_file).suffix],
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": list(datasets),
        "competition_sources": [COMPETITION_SLUG],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": meta.get("machine_shape", DEFAULT_MACHINE_SHAPE),
        **{k: meta[k] for k in sorted(OPTIONAL - {"kernel_type", "machine_shape"}) if k in meta},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / code_file).write_text(code)
    return write_json(out_dir / METADATA_FILE, rendered)


def _with_fold(script: Path, fold: int) -> str:
    """The script's text with its one `FOLD = ...` line defaulting to `fold` (KIT_FOLD still overrides it)."""
    text, n = _FOLD_LINE.subn(f'FOLD = int(os.environ.get("KIT_FOLD", {fold}))', script.read_text())
    if n != 1:
        raise DataError(f"{script}: needs exactly one line starting 'FOLD = ' to take a fold (found {n})")
    return text
