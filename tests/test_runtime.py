"""kitlib.runtime.prepare(): offline env, writable config dir, fonts, settings, threads (fresh processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os, sys
from kitlib import runtime
runtime.prepare({args})
runtime.prepare()  # idempotent: the second call keeps the first choices
import torch
import ultralytics.utils as uu
import ultralytics.utils.torch_utils as utu
print(json.dumps({{
    "config_dir": str(runtime.config_dir()),
    "user_config_dir": str(uu.USER_CONFIG_DIR),
    "env": {{k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR", "OMP_NUM_THREADS")}},
    "online": uu.ONLINE,
    "settings": {{k: uu.SETTINGS[k] for k in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "wandb", "tensorboard")}},
    "fonts": sorted(p.name for p in uu.USER_CONFIG_DIR.glob("*.ttf")),
    "threads": torch.get_num_threads(),
    "ul_threads": utu.NUM_THREADS,
    "font_check": str(__import__("ultralytics.utils.checks", fromlist=["check_font"]).check_font("Arial.ttf")),
}}))
"""


def probe(args: str, env: dict | None = None, cwd=None) -> dict:
    full_env = {k: v for k, v in os.environ.items() if k not in {"YOLO_CONFIG_DIR", "OMP_NUM_THREADS"}}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_prepare_sets_offline_env_fonts_settings_and_threads(tmp_path):
    out = probe(f"config_dir={str(tmp_path / 'cfg')!r}, threads=2", cwd=tmp_path)
    assert out["config_dir"] == str(tmp_path / "cfg")
    assert out["user_config_dir"].startswith(str(tmp_path / "cfg"))
    assert out["env"] == {
        "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "OMP_NUM_THREADS": "2",
    }
    assert out["online"] is False
    assert not any(out["settings"].values())
    assert {"Arial.ttf", "Arial.Unicode.ttf"} <= set(out["fonts"])
    assert out["font_check"].startswith(str(tmp_path / "cfg"))  # found locally: never downloaded
    assert out["threads"] == 2 and out["ul_threads"] == 2  # not the 1 ultralytics forces
    settings = json.loads((tmp_path / "cfg" / "Ultralytics" / "settings.json").read_text())
    assert settings["sync"] is False


def test_prepare_falls_back_to_a_temp_dir_when_home_is_not_writable(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    if os.access(home, os.W_OK):  # root ignores permissions: use a path that cannot be a directory
        home.chmod(0o700)
        home = tmp_path / "a-file"
        home.write_text("")
    out = probe("", env={"HOME": str(home)}, cwd=tmp_path)
    assert not out["config_dir"].startswith(str(home))
    assert os.path.isdir(out["config_dir"])
    assert {"Arial.ttf", "Arial.Unicode.ttf"} <= set(out["fonts"])


def test_prepare_rejects_an_unwritable_config_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run(
        [sys.executable, "-c", f"from kitlib import runtime; runtime.prepare(config_dir={str(blocker / 'sub')!r})"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0 and "not writable" in proc.stderr


@pytest.mark.parametrize("threads", [1, 3])
def test_prepare_in_process_is_idempotent_and_applies_threads(threads):
    import torch

    from kitlib import runtime

    before_threads = torch.get_num_threads()
    runtime.prepare()
    before_dir = runtime.config_dir()
    try:
        runtime.prepare(threads=threads)
        assert runtime.config_dir() == before_dir
        assert torch.get_num_threads() == threads and os.environ["OMP_NUM_THREADS"] == str(threads)
    finally:
        runtime.prepare(threads=before_threads)
