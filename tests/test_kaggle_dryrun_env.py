"""`make dry-run` gives the simulated kernel a clean environment like Kaggle's: the user's KAGGLE_KEY, tokens and
keys stay out (kitlib.release.dryrun.kernel_environment; no dry run is executed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kitlib.data.errors import DataError
from kitlib.release import dryrun

SECRETS = {
    "KAGGLE_KEY": "kaggle-secret-key",
    "KAGGLE_USERNAME": "alice",
    "KAGGLE_API_TOKEN": "kaggle-api-token",
    "KAGGLE_CONFIG_DIR": "/home/alice/.kaggle",
    "GITLAB_TOKEN": "glpat-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "OPENAI_API_KEY": "sk-secret",
    "KIT_API_KEY": "kit-secret",
}
PARENT = {
    **SECRETS,
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/home/alice",
    "LANG": "en_GB.UTF-8",
    "TMPDIR": "/scratch/tmp",
    "PYTHONPATH": "/home/alice/src",
    "VIRTUAL_ENV": "/home/alice/.venv",
    "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
    "KIT_BUDGET_S": "600",
    "KIT_TTA_VIEWS": "2",
}


def build(tmp_path: Path, parent=PARENT, **kw) -> dict[str, str]:
    python = tmp_path / "venv" / "bin" / "python"
    return dryrun.kernel_environment(python, tmp_path / "kaggle", tmp_path / "work", "infer",
                                     {"PYTHONPATH": "/guard"}, parent=parent, **kw)


def test_kernel_environment_is_built_from_scratch(tmp_path):
    env = build(tmp_path, env={"KIT_TTA_VIEWS": "1"})
    assert env == {
        "PATH": f"{tmp_path / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / "work" / "home"),
        "LANG": "en_GB.UTF-8",
        "TMPDIR": "/scratch/tmp",
        "PYTHONPATH": "/guard",  # the network guard's, not the user's
        "KIT_BUDGET_S": "600",
        "KIT_TTA_VIEWS": "1",  # `env` has the last word
        "KIT_KAGGLE_ROOT": str(tmp_path / "kaggle"),
        "YOLO_CONFIG_DIR": str(tmp_path / "work" / "config"),
    }
    assert (tmp_path / "work" / "home").is_dir() and not any((tmp_path / "work" / "home").iterdir())
    assert not any("KAGGLE_" in name and name != "KIT_KAGGLE_ROOT" for name in env)
    values = "\n".join(env.values())
    assert not any(secret in values for secret in SECRETS.values())
    assert build(tmp_path, parent={"PATH": "/bin"})["LANG"] == "C.UTF-8"


def test_kaggle_key_of_the_parent_is_not_visible_to_the_kernel_process(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "from-the-shell")
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    env = dryrun.kernel_environment(Path(sys.executable), tmp_path / "kaggle", tmp_path / "work", "train", {})
    assert env["KIT_PRESET"] == "cpu" and env["KIT_EPOCHS"] == "1"  # the train kernel's dry-run settings
    code = "import os; print(sorted(k for k in os.environ if 'KAGGLE' in k), os.environ['HOME'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['KIT_KAGGLE_ROOT']", str(tmp_path / "work" / "home")]


def test_dry_run_starts_the_kernel_with_that_environment(tmp_path, monkeypatch):
    """dry_run's plumbing replaced by stubs up to the kernel's start: the environment it is given is the clean one."""
    monkeypatch.setenv("KAGGLE_KEY", "from-the-shell")
    code = tmp_path / "code"
    code.mkdir()
    (code / "kernel-metadata.json").write_text(json.dumps({"code_file": "infer.py"}))
    seen = {}

    def run_streamed(cmd, cwd, env, log, timeout_s):
        seen.update(env)
        return 3

    monkeypatch.setattr(dryrun, "resolve_bundles", lambda *a, **k: {"src": tmp_path, "wheels": tmp_path})
    monkeypatch.setattr(dryrun, "stage_root", lambda root, *a, **k: root)
    monkeypatch.setattr(dryrun.bundle, "read_manifest", lambda folder: {"dataset": "dry-run/x"})
    monkeypatch.setattr(dryrun, "render_kernel_metadata", lambda *a: code / "kernel-metadata.json")
    monkeypatch.setattr(dryrun, "read_requirements", lambda folder: {})
    monkeypatch.setattr(dryrun, "network_guard", lambda work: ([], {"PYTHONPATH": "/guard"}, "guarded"))
    monkeypatch.setattr(dryrun, "_run_streamed", run_streamed)
    with pytest.raises(DataError, match="the kernel exited with code 3"):
        dryrun.dry_run("infer", out=tmp_path / "dry", reuse_venv=True)
    assert "KAGGLE_KEY" not in seen and seen["PYTHONPATH"] == "/guard"
    assert seen["HOME"] == str((tmp_path / "dry" / "home").resolve())
