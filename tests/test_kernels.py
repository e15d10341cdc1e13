"""The offline Kaggle kernels (kernels/), run against a temporary Kaggle root (KIT_KAGGLE_ROOT), and `make dry-run`.

Everything is real: the kernel script, the three bundles as `kitlib.release.bundle` builds them, JPEG tomograms,
an (untrained) z-head checkpoint. One stand-in: the wheels bundle is built from this venv's installed distributions
re-packed as wheels (`wheels_from_venv`), because tests never reach the package index. The kernel runs with this
venv (which already holds those pins, so it installs nothing); the fresh-venv dry run, which installs them from the
bundle, is opt-in: KIT_TEST_FRESH_VENV=1 (20-70 s on 2 cores, depending on load).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from kitlib.config import COMPETITION_SLUG, KitConfig
from kitlib.data.submission import read_submission
from kitlib import kernel
from kitlib.release import bundle
from kitlib.release.dryrun import OWNER, dry_run, stage_root, wheels_from_venv
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
    assert "KIT_BUDGET_S='abc' is not a positive float" in proc.stderr
    assert "KIT_TTA_VIEWS='abc' is not a positive int" in proc.stderr
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


def test_tiny_budget_sheds_views_and_widens_the_step_but_keeps_every_row(bundles, tmp_path, monkeypatch, capsys):
    root = make_root(tmp_path, bundles, n_test=4)
    report = run_in_process(monkeypatch, root, budget_s=0.01, n_views=2)
    out = capsys.readouterr().out
    assert report.status == "ok" and report.plan == (2, 4)
    assert report.views == {2: 1, 1: 3} and report.slice_steps == {4: 1, 32: 3}  # the first tomogram sets the pace
    assert "time budget: shed views on 3 tomogram(s), widened the slice step on 3" in out
    check_complete(root)


def test_dry_run_reusing_this_venv(bundles, tmp_path, capsys):
    result = dry_run("infer", bundles=bundles, out=tmp_path / "dry", reuse_venv=True, n_test=3,
                     env={"KIT_TTA_VIEWS": "1"})
    out = capsys.readouterr().out
    assert result.summary["n_tomograms"] == 3
    assert "network: none (" in out and "status OK" in result.log.read_text()
    assert not (result.root / "input" / "competitions" / COMPETITION_SLUG / "test_solution.csv").exists()


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
