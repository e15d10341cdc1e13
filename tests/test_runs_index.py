"""`make runs` (kitlib.release.runs): the index of run folders, run.json, and a submission traced back to its run
through bundle -> push-dataset -> push-kernel -> submit -> submissions with the REAL kaggle client against
tests/kaggle_server.py (subprocesses, as in test_kaggle_api.py)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from kaggle_server import Dataset, KaggleServer, run_python

from kitlib.cli import main
from kitlib.config import KitConfig
from kitlib.release import runs
from kitlib.run import RunDir, claim_run
from kitlib.version import version_stamp

KERNELS = Path(__file__).resolve().parents[1] / "kernels"


def scored_run(project: Path, name: str, f2: float, preset: str = "cpu", **score) -> RunDir:
    """A run made by `claim_run` with a config and a score.json as local-score writes them (no training)."""
    run = claim_run(name, project)
    run.save_config(KitConfig.preset(preset).override({"train": {"epochs": 3}}, "test"))
    record = {"f2": f2, "f2_ci": [f2 - 0.1, f2 + 0.05], "rule": "threshold", "threshold": 0.25,
              "per_fold_epochs": {"0": 3, "1": 3}, "sources": [], "data": "/data/comp", "wall_s": 90.0, **score}
    run.score.write_text(json.dumps(record))
    return run


def submitted(run: RunDir, public: float | None, version: int = 1) -> None:
    """The ledger entries make submit and make submissions leave."""
    entry = {"event": "submission", "at": "2999-01-01T00:00:00+00:00", "kernel": "tester/motor-kit-infer",
             "version": version, "ref": 4242 + version, "description": f"v{version}", "status": "complete",
             "public_score": public, "private_score": None}
    run.save_releases([*run.load_releases(), entry])


def read_index(project: Path) -> dict[str, dict[str, str]]:
    with (project / runs.INDEX_FILE).open() as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def test_index_has_a_line_per_run_folder(tmp_path, capsys):
    project = tmp_path / "runs"
    scored_run(project, "a", 0.8, sources=[{"name": "cryoet", "path": "/x", "tomograms": 4}])
    bare = RunDir(project / "b")  # an unscored run made before run.json existed
    bare.save_config(KitConfig.preset("default"))
    (project / "notes").mkdir()  # not a run
    stale = scored_run(project, "c", 0.5)
    submitted(stale, 0.7)
    stale.save_releases([{**e, "at": "2000-01-01T00:00:00+00:00"} for e in stale.load_releases()])  # older run's

    assert main(["runs", "--root", str(project)]) == 0
    rows = read_index(project)
    assert list(rows) == ["a", "b", "c"]
    a = rows["a"]
    assert a["commit"] == version_stamp() and a["preset"] == "cpu+1" and a["data"] == "/data/comp"
    assert (a["extra"], a["folds"], a["epochs"], a["rule"], a["wall_s"]) == ("cryoet", "2", "3", "threshold", "90.0")
    assert (float(a["oof_f2"]), float(a["f2_low"]), float(a["f2_high"])) == (0.8, 0.8 - 0.1, 0.8 + 0.05)
    assert a["public"] == a["kernel"] == ""
    b = rows["b"]
    assert (b["preset"], b["commit"], b["oof_f2"], b["folds"]) == ("default", "", "", "")
    assert rows["c"]["public"] == ""  # a submission from before the run was (re)created is not its
    out = capsys.readouterr().out
    assert "2x3" in out and "0.8000 [0.700, 0.850]" in out and "1.5 min" in out
    assert not (project / runs.PLOT_FILE).exists()


def test_oof_vs_lb_plot_needs_two_runs_with_both(tmp_path):
    project = tmp_path / "runs"
    submitted(scored_run(project, "a", 0.80), 0.71)
    scored_run(project, "b", 0.85)  # scored, never submitted
    rows, written = runs.write_index(project)
    assert written == [project / runs.INDEX_FILE] and not (project / runs.PLOT_FILE).exists()
    assert rows[0]["public"] == 0.71 and rows[0]["kernel_version"] == 1

    submitted(RunDir(project / "b"), None)  # submitted, not scored yet: still one run with both
    assert runs.write_index(project)[1] == [project / runs.INDEX_FILE]
    submitted(RunDir(project / "b"), 0.74, version=2)
    _, written = runs.write_index(project)
    assert written == [project / runs.INDEX_FILE, project / runs.PLOT_FILE]
    assert (project / runs.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_index(project)["b"]["kernel_version"] == "2"


def test_an_empty_project_is_a_one_line_error(tmp_path, capsys):
    assert main(["runs", "--root", str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_run_json_records_creation_and_a_resume_keeps_it(tmp_path):
    run = claim_run("x", tmp_path)
    info = run.load_info()
    assert info["git"] == version_stamp() and info["kit_version"] and info["created"].endswith("+00:00")
    run.save_config(KitConfig.preset("cpu"))
    run.info.write_text(json.dumps({**info, "created": "2000-01-01T00:00:00+00:00"}))
    run.save_releases([{"event": "bundle", "at": "2000-01-02T00:00:00+00:00"}])
    assert claim_run("x", tmp_path, resume=True).load_info()["created"] == "2000-01-01T00:00:00+00:00"
    assert claim_run("x", tmp_path, exist_ok=True).load_info()["created"] > "2000-01-01T00:00:00+00:00"
    assert run.load_releases() == [{"event": "bundle", "at": "2000-01-02T00:00:00+00:00"}]  # the ledger is kept


# --- bundle -> push -> submit -> submissions against the local Kaggle ---


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def commands_code(*calls: str) -> str:
    return "from pathlib import Path; from kitlib.release import commands\n" + "\n".join(calls)


def test_a_submission_is_traced_to_its_run_and_its_scores_reach_the_index(tmp_path):
    from kitlib.testing import tiny_run

    project, build = tmp_path / "runs", tmp_path / "build"
    kernels = shutil.copytree(KERNELS, tmp_path / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    x, y = (tiny_run(claim_run(name, project).root, seed=seed) for name, seed in (("x", 0), ("y", 1)))
    RunDir(x).score.write_text(json.dumps({"f2": 0.9, "f2_ci": [0.8, 0.95], "per_fold_epochs": {"0": 2}}))
    paths = f"build=Path({str(build)!r})"
    bundle = "commands.bundle_cmd(['weights'], run=Path({!r}), " + paths + ")"
    push_kernel = f"commands.push_kernel_cmd('infer', kernels=Path({str(kernels)!r}), {paths})"
    with KaggleServer(lifetime_s=300) as server:
        server.state.polls_until_ready = 0
        for name in ("src", "wheels"):
            server.state.datasets[f"tester/motor-kit-{name}"] = Dataset(version=1, polls_until_ready=0)
        env = server.env(tmp_path / "home")
        out = ok(run_python(commands_code(
            bundle.format(str(x)), f"commands.push_dataset_cmd(['weights'], {paths})", push_kernel,
            f"commands.submit_cmd('infer', {paths}, project=Path({str(project)!r}))"), env, timeout_s=300))
        assert "submitted tester/motor-kit-infer version 1 (submission 4242)" in out
        assert f"recorded in {RunDir(x).releases}" in out

        # y's bundle is built but never pushed: Kaggle still has x's weights, so kernel version 2 is nobody's
        out = ok(run_python(commands_code(bundle.format(str(y)), push_kernel), env, timeout_s=300))
        assert "is not the bundle of" in out and "never pushed" in out
        pushed = json.loads((build / "kernels" / "infer" / "pushed.json").read_text())
        assert pushed["version"] == 2 and pushed["weights"] is None

        server.state.submissions[0].update(status="COMPLETE", publicScore="0.8123", privateScore="0.8011")
        out = ok(run_python(commands_code(f"commands.submissions_cmd(Path({str(project)!r}))"), env))
        assert "submission 4242 (tester/motor-kit-infer v1) complete, public 0.8123, private 0.8011" in out

    ledger = RunDir(x).load_releases()
    assert [e["event"] for e in ledger] == ["bundle", "dataset", "kernel", "submission"]
    bundle_id = ledger[0]["bundle"]
    assert {e.get("bundle") for e in ledger[:3]} == {bundle_id} and ledger[1]["version"] == ledger[2]["dataset_version"]
    assert ledger[3]["ref"] == 4242 and ledger[3]["public_score"] == 0.8123
    (y_bundle,) = RunDir(y).load_releases()
    assert y_bundle["event"] == "bundle" and y_bundle["bundle"] != bundle_id  # other weights, another id

    runs.write_index(project)
    row = read_index(project)["x"]
    assert (row["kernel"], row["kernel_version"], row["public"], row["private"]) == (
        "tester/motor-kit-infer", "1", "0.8123", "0.8011")
    assert read_index(project)["y"]["public"] == ""


@pytest.mark.parametrize("preset", ["default", "cpu"])
def test_a_preset_is_its_own_nearest(preset):
    assert runs.nearest_preset(KitConfig.preset(preset)) == preset
