"""The offline Kaggle kernels (kernels/), run against a temporary Kaggle root (KIT_KAGGLE_ROOT), and `make dry-run`.

Everything is real: the kernel script, the three bundles as `kitlib.release.bundle` builds them, JPEG tomograms,
an (untrained) z-head checkpoint. One stand-in: the wheels bundle is built from this venv's installed distributions
re-packed as wheels (`wheels_from_venv`), because tests never reach the package index. The kernel runs with this
venv (which already holds those pins, so it installs nothing); the fresh-venv dry run, which installs them from the
bundle, is opt-in: KIT_TEST_FRESH_VENV=1 (20-70 s on 2 cores, depending on load).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kitlib.config import COMPETITION_SLUG, KitConfig
from kitlib.data.submission import SUBMISSION_COLUMNS, read_submission
from kitlib import kernel
from kitlib.release import bundle
from kitlib.release.dryrun import NOTEBOOK_RUNNER, OWNER, dry_run, stage_root, wheels_from_venv
from kitlib.release.notebook import notebook_text, split_cells
from kitlib.testing import tiny_run

SCRIPT = bundle.REPO_ROOT / "kernels" / "infer" / "infer.py"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    """build/datasets-like folder: src (this tree), wheels (re-packed from this venv), weights (untrained, tiny)."""
    out = tmp_path_factory.mktemp("bundles")
    bundle.build_src(OWNER, out / "src")
    bundle.build_wheels(OWNER, out / "wheels", find_links=wheels_from_venv(out / "links"))
    bundle.build_weights(OWNER, out / "weights", tiny_run(out / "run"))
    return out


def make_root(tmp_path: Path, bundles: Path, legacy: bool = False, n_test: int = 3) -> Path:
    found = {name: bundles / name for name in bundle.DATASET_NAMES}
    return stage_root(tmp_path / "kaggle", found, n_test=n_test, legacy=legacy)


def competition(root: Path) -> Path:
    return next(p for p in (root / "input" / "competitions" / COMPETITION_SLUG, root / "input" / COMPETITION_SLUG)
                if p.is_dir())


def sample_ids(root: Path) -> list[str]:
    return pl.read_csv(competition(root) / "sample_submission.csv")["tomo_id"].to_list()


def run_script(root: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "KIT_KAGGLE_ROOT": str(root), "KIT_TTA_VIEWS": "1", **env}
    return subprocess.run([sys.executable, str(SCRIPT)], cwd=root / "working", env=full_env, capture_output=True,
                          text=True, timeout=300)


def check_complete(root: Path) -> pl.DataFrame:
    """working/submission.csv has exactly one row per sample-submission id, in its order."""
    submission = read_submission(root / "working" / "submission.csv")
    assert submission["tomo_id"].to_list() == sample_ids(root)
    return submission


def test_infer_script_happy_path_writes_every_row(bundles, tmp_path):
    root = make_root(tmp_path, bundles)
    proc = run_script(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_complete(root)
    assert "installed nothing; already present" in proc.stdout  # this venv holds the pins
    report = json.loads((root / "working" / kernel.REPORT_FILE).read_text())
    assert report["status"] == "ok" and report["rows"] == 3 and report["unreadable"] == []


def test_settings_that_are_not_numbers_are_said_and_replaced(bundles, tmp_path):
    root = make_root(tmp_path, bundles)
    proc = run_script(root, KIT_BUDGET_S="abc", KIT_TTA_VIEWS="abc")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KIT_BUDGET_S='abc' is not a number >= 0" in proc.stderr
    assert "KIT_TTA_VIEWS='abc' is not an integer >= 1" in proc.stderr
    check_complete(root)


def test_corrupt_weights_give_a_full_fallback_and_name_the_file(bundles, tmp_path):
    root = make_root(tmp_path, bundles)
    weights = root / "input" / "datasets" / OWNER / "motor-kit-weights" / "fold0.pt"
    weights.write_bytes(weights.read_bytes()[: 1000])
    proc = run_script(root)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the commit run shows ERROR: never submitted by mistake
    assert f"{weights}: corrupt" in proc.stderr and "writing the fallback submission" in proc.stderr
    assert (check_complete(root)["Motor axis 0"] == -1).all()
    assert "status FALLBACK" in proc.stdout

    rerun = run_script(root, KAGGLE_IS_COMPETITION_RERUN="1")  # the scoring rerun: the fallback file is scored
    assert rerun.returncode == 0 and f"{weights}: corrupt" in rerun.stderr


def test_missing_src_dataset_still_writes_the_fallback_with_the_standard_library(bundles, tmp_path):
    root = make_root(tmp_path, bundles)
    shutil.rmtree(root / "input" / "datasets" / OWNER / "motor-kit-src")
    proc = run_script(root)
    assert proc.returncode == 1
    assert "no motor-kit-src dataset with a kitlib-*.whl attached" in proc.stderr
    assert (check_complete(root)["Motor axis 0"] == -1).all()


def run_in_process(monkeypatch, root: Path, **kw) -> kernel.InferReport:
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(root))
    return kernel.run_infer(**{"n_views": 1, "progress": False, **kw})


def test_corrupt_tomogram_gets_minus_one_and_a_warning_naming_it(bundles, tmp_path, monkeypatch):
    root = make_root(tmp_path, bundles)
    bad = sample_ids(root)[1]
    (competition(root) / "test" / bad / "slice_0003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.warns(UserWarning, match=rf"{bad}/slice_0003.jpg: truncated JPEG .* no motor for {bad}"):
        report = run_in_process(monkeypatch, root)
    assert report.status == "ok" and report.unreadable == [bad]
    submission = check_complete(root)
    assert submission.filter(pl.col("tomo_id") == bad)["Motor axis 0"].item() == -1
    assert sum(report.views.values()) == 2  # the other two were predicted


@pytest.mark.parametrize("legacy", [False, True], ids=["competitions-datasets", "legacy-input-slug"])
def test_both_mount_layouts(bundles, tmp_path, monkeypatch, legacy):
    root = make_root(tmp_path, bundles, legacy=legacy)
    report = run_in_process(monkeypatch, root)
    assert report.status == "ok", report.error
    check_complete(root)


@pytest.mark.parametrize("budget_s", [0.01, "0"], ids=["shorter-than-the-setup", "zero"])
def test_tiny_budget_sheds_views_and_widens_the_step_but_keeps_every_row(bundles, tmp_path, monkeypatch, capsys,
                                                                         budget_s):
    """The set-up (loading the models included) is budgeted: what is left is nothing, so every tomogram, the first
    too, gets the cheapest plan; 0 means the cheapest plan, not "unlimited"."""
    root = make_root(tmp_path, bundles, n_test=4)
    report = run_in_process(monkeypatch, root, budget_s=budget_s, n_views=2)
    out = capsys.readouterr().out
    assert report.status == "ok" and report.plan == (2, 4)
    assert report.views == {1: 4} and report.slice_steps == {32: 4}
    assert "s left after the set-up" in out
    assert "time budget: shed views on 4 tomogram(s), widened the slice step on 4" in out
    check_complete(root)


def test_dry_run_reusing_this_venv(bundles, tmp_path, capsys):
    result = dry_run("infer", bundles=bundles, out=tmp_path / "dry", reuse_venv=True, n_test=3,
                     env={"KIT_TTA_VIEWS": "1"})
    out = capsys.readouterr().out
    assert result.summary["n_tomograms"] == 3
    assert "network: none (" in out and "status OK" in result.log.read_text()
    assert not (result.root / "input" / "competitions" / COMPETITION_SLUG / "test_solution.csv").exists()
    # then the notebook form, as pushed, in the same root with a fresh working/ (the script's output moved aside)
    assert result.notebook_summary["n_tomograms"] == 3 and "status OK" in result.notebook_log.read_text()
    assert json.loads((tmp_path / "dry" / "notebook" / "kernel-metadata.json").read_text())["kernel_type"] == "notebook"
    assert (tmp_path / "dry" / "script-working" / "submission.csv").is_file()


def run_notebook(folder: Path, script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`script`'s notebook form run as the dry run runs it (`NOTEBOOK_RUNNER`: its code cells in one interpreter)."""
    notebook, runner = folder / "kernel.ipynb", folder / "notebook_runner.py"
    notebook.write_text(notebook_text(script))
    runner.write_text(NOTEBOOK_RUNNER)
    return subprocess.run([sys.executable, str(runner), str(notebook)], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def test_the_notebook_executor_shares_one_namespace_and_fails_a_cell_that_exits_even_with_0(tmp_path):
    script = "x = 1\n# %%\nimport sys\nprint(x + 1)\nsys.exit(0)\n# %%\nprint('never')\n"
    proc = run_notebook(tmp_path, script, tmp_path)
    assert proc.returncode == 1 and proc.stdout == "2\n"
    assert "notebook cell 2 of 3 failed: SystemExit: 0" in proc.stderr


def test_the_notebook_form_fails_in_its_last_cell_except_in_the_scoring_rerun(bundles, tmp_path):
    root = make_root(tmp_path, bundles)
    weights = root / "input" / "datasets" / OWNER / "motor-kit-weights" / "fold0.pt"
    weights.write_bytes(weights.read_bytes()[: 1000])
    env = {"KIT_KAGGLE_ROOT": str(root), "KIT_TTA_VIEWS": "1"}
    proc = run_notebook(tmp_path, SCRIPT.read_text(), root / "working", **env)
    n = sum(kind == "code" for kind, _ in split_cells(SCRIPT.read_text()))
    assert proc.returncode == 1 and f"notebook cell {n} of {n} failed: SystemExit: 1" in proc.stderr, proc.stderr
    assert f"{weights}: corrupt" in proc.stderr and (check_complete(root)["Motor axis 0"] == -1).all()
    rerun = run_notebook(tmp_path, SCRIPT.read_text(), root / "working", KAGGLE_IS_COMPETITION_RERUN="1", **env)
    assert rerun.returncode == 0 and "notebook cell" not in rerun.stderr, rerun.stderr


@pytest.mark.skipif(not os.environ.get("KIT_TEST_FRESH_VENV"), reason="opt-in: KIT_TEST_FRESH_VENV=1 (builds a venv)")
def test_dry_run_in_a_fresh_venv_installs_the_wheels_bundle(bundles, tmp_path):
    result = dry_run("infer", bundles=bundles, out=tmp_path / "dry", n_test=3, env={"KIT_TTA_VIEWS": "1"})
    log = result.log.read_text()
    assert "installed ['ultralytics==" in log and "status OK" in log
    assert result.summary["n_tomograms"] == 3


def test_default_views_are_the_runs_own(bundles, tmp_path, monkeypatch):
    """The presence threshold was tuned on scores fused over the run's TTA views, so the kernel uses those."""
    root = make_root(tmp_path, bundles)
    weights = next((root / "input").glob(f"**/{kernel.dataset_slug('weights', kernel.DEFAULT_PREFIX)}"))
    run_views = KitConfig.load(weights / "config.yaml").infer.tta
    report = run_in_process(monkeypatch, root, n_views=None)
    assert report.plan[0] == len(run_views) and set(report.views) == {len(run_views)}


# --- a broken input never leaves the kernel without a submission ------------------------------------------------------


def sample_file(root: Path) -> Path:
    return competition(root) / "sample_submission.csv"


def submitted_rows(root: Path) -> list[list[str]]:
    """working/submission.csv's rows read verbatim (an empty id stays ""), after checking its header."""
    with open(root / "working" / "submission.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == SUBMISSION_COLUMNS
    return rows


def check_fallback(root: Path, proc: subprocess.CompletedProcess, ids: list[str], problem: str) -> None:
    """Exit 1, `problem` said in one line, a report saying "fallback" with it, and -1 for each of `ids`."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert any(line.startswith("ERROR: ") and problem in line for line in proc.stderr.splitlines()), proc.stderr
    report = json.loads((root / "working" / kernel.REPORT_FILE).read_text())
    assert report["status"] == "fallback" and problem in report["error"] and report["rows"] == len(ids)
    rows = submitted_rows(root)
    assert [r[0] for r in rows] == ids and all(float(v) == -1 for r in rows for v in r[1:])


def test_a_sample_submission_of_binary_garbage_still_gives_a_submission(bundles, tmp_path):
    root = make_root(tmp_path, bundles)
    garbage = np.random.default_rng(0).bytes(2000)
    sample_file(root).write_bytes(garbage)
    proc = run_script(root)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"ERROR: DataError: {sample_file(root)}: " in proc.stderr  # cannot be read, or no tomo_id column
    report = json.loads((root / "working" / kernel.REPORT_FILE).read_text())
    assert report["status"] == "fallback" and str(sample_file(root)) in report["error"]
    rows = submitted_rows(root)  # whatever ids could be read: here, a garbage id per garbage line, at most
    assert len(rows) == report["rows"] < len(garbage.splitlines()) and all(r[1:] == ["-1.0"] * 3 for r in rows)

    rerun = run_script(root, KAGGLE_IS_COMPETITION_RERUN="1")  # the scoring rerun scores the fallback file
    assert rerun.returncode == 0 and (root / "working" / "submission.csv").is_file()


def test_a_sample_submission_without_a_tomo_id_column_falls_back_to_its_first_column(bundles, tmp_path):
    root = make_root(tmp_path, bundles)
    ids = sample_ids(root)
    sample = sample_file(root)
    sample.write_text(sample.read_text().replace("tomo_id", "id", 1))
    check_fallback(root, run_script(root), ids, f"{sample}: no tomo_id column")


def test_an_empty_tomo_id_in_the_sample_submission_is_kept_in_the_fallback(bundles, tmp_path):
    root = make_root(tmp_path, bundles)
    ids = sample_ids(root)
    sample = sample_file(root)
    header, *lines = sample.read_text().splitlines()
    sample.write_text("\n".join([header, lines[0], ",-1,-1,-1", *lines[1:]]) + "\n")
    check_fallback(root, run_script(root), [ids[0], "", *ids[1:]], f"{sample}: empty tomo_id on line(s) [3]")


@pytest.mark.parametrize("sample, expected", [
    ("\ufefftomo_id,Motor axis 0\n{0},-1\n{1},-1\n{2},-1\n", "ids"),  # a UTF-8 BOM before the header
    ("\ufeffid,Motor axis 0\n{0},-1\n{1},-1\n{2},-1\n", "ids"),  # no tomo_id header: the first column
    ("\ufefftomo_id\n007\n 7 \n{0}\n", ["007", " 7 ", "{0}"]),  # ids taken verbatim, not parsed or stripped
    ("", []),  # nothing to read: a header-only file
], ids=["bom", "bom-no-tomo_id-header", "verbatim", "empty"])
def test_without_the_src_dataset_the_standard_library_reads_the_sample_tolerantly(bundles, tmp_path, sample,
                                                                                   expected):
    root = make_root(tmp_path, bundles)
    ids = sample_ids(root)
    shutil.rmtree(root / "input" / "datasets" / OWNER / "motor-kit-src")
    sample_file(root).write_text(sample.format(*ids), encoding="utf-8")
    expected = ids if expected == "ids" else [i.format(*ids) for i in expected]
    check_fallback(root, run_script(root), expected, "no motor-kit-src dataset with a kitlib-*.whl attached")


def weights_dir(root: Path) -> Path:
    return root / "input" / "datasets" / OWNER / "motor-kit-weights"


def replace_in_weights(root: Path, name: str, content: bytes | None) -> None:
    """Replace (None: remove) a weights dataset file and its manifest entry: the manifest check passes, and what
    reads the file meets the change."""
    manifest_path = weights_dir(root) / bundle.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = [f for f in manifest["files"] if f["name"] != name]
    path = weights_dir(root) / name
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
        manifest["files"].append({"name": name, "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()})
    manifest_path.write_text(json.dumps(manifest))


def tomogram_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (competition(root) / "test").iterdir() if p.is_dir())


def rewrite_sample(root: Path, text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    sample_file(root).write_bytes(data)


def sample_text(root: Path) -> str:
    return sample_file(root).read_text()


def make_file(folder: Path) -> None:
    """`folder` replaced by a file of the same name."""
    shutil.rmtree(folder)
    folder.write_text("x")


# Each kind of broken input: what it does to the staged Kaggle root, and the ids the submission must then hold (None:
# the sample submission's, as they were). Not all need the fallback: a -1 row for what cannot be read does.
BROKEN_INPUTS: dict = {}


def broken(kind: str):
    def register(damage):
        BROKEN_INPUTS[kind] = damage
        return damage
    return register


@broken("sample-empty-file")
def _(root):
    rewrite_sample(root, b"")
    return []


@broken("sample-a-directory")  # as if absent: the test folders
def _(root):
    sample_file(root).unlink()
    sample_file(root).mkdir()
    return [p.name for p in tomogram_dirs(root)]


@broken("sample-header-only")
def _(root):
    rewrite_sample(root, sample_text(root).splitlines()[0] + "\n")
    return []


@broken("sample-utf8-bom")
def _(root):
    rewrite_sample(root, "\ufeff" + sample_text(root))


@broken("sample-latin1-byte")  # not UTF-8: the fallback still reads every id
def _(root):
    rewrite_sample(root, sample_text(root).replace("\n", " caf\xe9\n").encode("latin-1"))


@broken("sample-ragged-row")
def _(root):
    rewrite_sample(root, sample_text(root).rstrip("\n") + ",extra\n")


@broken("sample-duplicate-ids")
def _(root):
    rewrite_sample(root, sample_text(root) + sample_text(root).splitlines()[1] + "\n")


@broken("sample-crlf-lines")
def _(root):
    rewrite_sample(root, sample_text(root).replace("\n", "\r\n"))


@broken("sample-id-without-folder")
def _(root):
    rewrite_sample(root, sample_text(root) + "tomo_absent,-1,-1,-1\n")
    return sample_ids(root)


@broken("test-folder-missing")
def _(root):
    shutil.rmtree(competition(root) / "test")


@broken("test-folder-a-file")
def _(root):
    make_file(competition(root) / "test")


@broken("test-folder-empty")
def _(root):
    for folder in tomogram_dirs(root):
        shutil.rmtree(folder)


@broken("tomogram-folder-a-file")
def _(root):
    make_file(tomogram_dirs(root)[0])


@broken("tomogram-folder-empty")
def _(root):
    for path in tomogram_dirs(root)[0].iterdir():
        path.unlink()


@broken("slice-a-directory")
def _(root):
    path = tomogram_dirs(root)[0] / "slice_0000.jpg"
    path.unlink()
    path.mkdir()


@broken("every-slice-garbage")
def _(root):
    for path in (competition(root) / "test").glob("*/slice_*.jpg"):
        path.write_bytes(b"\xff\xd8junk")


@broken("train-labels-garbage")
def _(root):
    (competition(root) / "train_labels.csv").write_bytes(b"\x00\xff garbage")


@broken("weights-dataset-missing")
def _(root):
    shutil.rmtree(weights_dir(root))


@broken("weights-checkpoint-missing")
def _(root):
    (weights_dir(root) / "fold0.pt").unlink()


@broken("weights-without-presence-json")
def _(root):
    replace_in_weights(root, "presence.json", None)


@broken("weights-presence-json-garbage")
def _(root):
    replace_in_weights(root, "presence.json", b"{not json")


@broken("weights-config-yaml-invalid")
def _(root):
    replace_in_weights(root, "config.yaml", b"infer: [unclosed\n  : :")


@broken("weights-config-unknown-key")
def _(root):
    replace_in_weights(root, "config.yaml", b"infer:\n  no_such_key: 1\n")


@broken("weights-manifest-garbage")
def _(root):
    (weights_dir(root) / bundle.MANIFEST_FILE).write_bytes(b"\x89 garbage")


@broken("wheels-dataset-missing")
def _(root):
    shutil.rmtree(root / "input" / "datasets" / OWNER / "motor-kit-wheels")


@broken("stale-submission-in-working")
def _(root):
    (root / "working" / "submission.csv").write_text("tomo_id\nold_one\n")


BROKEN_SETTINGS = {"budget-negative": {"KIT_BUDGET_S": "-5"}, "budget-nan": {"KIT_BUDGET_S": "nan"},
                   "views-zero": {"KIT_TTA_VIEWS": "0"}}


@pytest.mark.parametrize("kind", [*BROKEN_INPUTS, *BROKEN_SETTINGS])
def test_every_kind_of_broken_input_leaves_a_complete_submission(bundles, tmp_path, kind):
    root = make_root(tmp_path, bundles, n_test=2)
    ids = sample_ids(root)
    expected = BROKEN_INPUTS[kind](root) if kind in BROKEN_INPUTS else None
    proc = run_script(root, **BROKEN_SETTINGS.get(kind, {}))
    assert [r[0] for r in submitted_rows(root)] == (ids if expected is None else expected), proc.stderr
    report = json.loads((root / "working" / kernel.REPORT_FILE).read_text())
    assert proc.returncode == (0 if report["status"] == "ok" else 1), proc.stdout + proc.stderr
