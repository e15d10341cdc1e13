"""Credentials are found where the kaggle package looks, and their absence is explained before anything is sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kitlib.kaggle.credentials import Credentials, config_dir, resolve
from kitlib.kaggle.errors import KaggleSetupError

VARS = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    return home


def write_json(path: Path, data: dict, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    path.chmod(mode)
    return path


def package_config_file(env: dict[str, str]) -> str:
    """Where the real kaggle package reads kaggle.json in this environment (decided at import)."""
    code = "from kaggle.api.kaggle_api_extended import KaggleApi; print(KaggleApi.config)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_env_credentials(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    creds = resolve()
    assert (creds.username, creds.source) == ("alice", "KAGGLE_USERNAME/KAGGLE_KEY")


@pytest.mark.parametrize("layout", ["dot_kaggle", "xdg_default", "xdg_env", "config_dir_env"])
def test_kaggle_json_is_read_from_the_same_folder_as_the_package(home, monkeypatch, layout):
    where = {
        "dot_kaggle": home / ".kaggle",
        "xdg_default": home / ".config" / "kaggle",
        "xdg_env": home / "xdg" / "kaggle",
        "config_dir_env": home / "elsewhere",
    }[layout]
    if layout == "xdg_env":
        monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    if layout == "config_dir_env":
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(where))
        (home / ".kaggle").mkdir()  # exists, but KAGGLE_CONFIG_DIR wins
    kaggle_json = write_json(where / "kaggle.json", {"username": "bob", "key": "k"})
    assert resolve() == Credentials("bob", str(kaggle_json))
    assert config_dir() == where
    assert package_config_file(dict(os.environ)) == str(kaggle_json)


def test_an_existing_dot_kaggle_shadows_config_kaggle(home):
    (home / ".kaggle").mkdir()
    write_json(home / ".config" / "kaggle" / "kaggle.json", {"username": "bob", "key": "k"})
    with pytest.raises(KaggleSetupError) as e:
        resolve()
    assert f"{home / '.kaggle' / 'kaggle.json'} (missing)" in str(e.value)
    assert package_config_file(dict(os.environ)) == str(home / ".kaggle" / "kaggle.json")


def test_environment_overrides_kaggle_json_fields(home, monkeypatch):
    write_json(home / ".kaggle" / "kaggle.json", {"username": "bob", "key": "k"})
    monkeypatch.setenv("KAGGLE_USERNAME", "carol")
    assert resolve().username == "carol"


def test_readable_kaggle_json_warns_to_chmod_600(home):
    path = write_json(home / ".kaggle" / "kaggle.json", {"username": "bob", "key": "k"}, mode=0o644)
    with pytest.warns(UserWarning, match=f"chmod 600 {path}"):
        resolve()


def test_broken_kaggle_json_is_named(home):
    path = home / ".kaggle" / "kaggle.json"
    path.parent.mkdir()
    path.write_text("{username: bob")
    path.chmod(0o600)
    with pytest.raises(KaggleSetupError, match=f"^{path}: not a valid kaggle.json"):
        resolve()


def test_access_token_file_is_accepted(home):
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "access_token").write_text("KGAT_123\n")
    creds = resolve()
    assert creds.username is None and creds.source == f"access token from {home / '.kaggle' / 'access_token'}"


def test_missing_credentials_message_names_every_place_and_the_fix(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "dave")
    with pytest.raises(KaggleSetupError) as e:
        resolve()
    message = str(e.value)
    expected = home / ".config" / "kaggle" / "kaggle.json"  # ~/.kaggle does not exist
    for text in [
        "nothing was sent to Kaggle",
        "KAGGLE_API_TOKEN (unset",
        f"{home / '.kaggle' / 'access_token'} (missing)",
        f"{expected} (missing)",
        "KAGGLE_USERNAME (set), KAGGLE_KEY (unset)",
        "$KAGGLE_CONFIG_DIR",
        "~/.config/kaggle",
        f"{home / '.kaggle' / 'credentials.json'} (missing)",
        "found a username or a key but not both (username: dave)",
        f"chmod 600 {expected}",
        "kaggle.json.example",
    ]:
        assert text in message, text
