"""Find Kaggle credentials the way the `kaggle` 2.2.4 package does, without importing it (it authenticates at import).

The package tries, in order (kaggle/api/kaggle_api_extended.py `authenticate`, kagglesdk/kaggle_env.py):
1. an access token: `KAGGLE_API_TOKEN` (the token, or a path to a file holding it), else `~/.kaggle/access_token`
   (or `access_token.txt`);
2. a legacy API key: ONE kaggle.json, in `$KAGGLE_CONFIG_DIR` if set, else `~/.kaggle` if that folder exists, else
   `$XDG_CONFIG_HOME/kaggle` (default `~/.config/kaggle`); `KAGGLE_USERNAME` / `KAGGLE_KEY` override its fields;
3. OAuth credentials from `kaggle auth login`: `~/.kaggle/credentials.json`.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from kitlib.kaggle.errors import KaggleSetupError


@dataclass(frozen=True)
class Credentials:
    """Where credentials were found. `username` is None for an access token (the server names the user)."""

    username: str | None
    source: str


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def config_dir() -> Path:
    """The one folder whose kaggle.json the package reads (decided when `kaggle` is first imported)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = _home() / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config") / "kaggle"
    return legacy


def _token_files() -> list[Path]:
    return [_home() / ".kaggle" / "access_token", _home() / ".kaggle" / "access_token.txt"]


def _holds_token(path: Path) -> bool:
    return path.is_file() and bool(path.read_text().strip())


def _access_token_source() -> str | None:
    value = os.environ.get("KAGGLE_API_TOKEN")
    if value:
        if not Path(value).exists():
            return "KAGGLE_API_TOKEN"
        return f"KAGGLE_API_TOKEN={value}" if _holds_token(Path(value)) else None
    return next((str(path) for path in _token_files() if _holds_token(path)), None)


def _read_kaggle_json(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    if os.name != "nt" and path.stat().st_mode & 0o044:
        warnings.warn(f"{path} is readable by other users: run chmod 600 {path}", stacklevel=3)
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError) as e:
        raise KaggleSetupError(f"{path}: not a valid kaggle.json ({e}); see kaggle.json.example") from e
    if not isinstance(data, dict):
        raise KaggleSetupError(f"{path}: not a valid kaggle.json (expected an object); see kaggle.json.example")
    return data


def _has_refresh_token(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and bool(data.get("refresh_token"))


def resolve() -> Credentials:
    """Credentials the `kaggle` package will use, or `KaggleSetupError` naming every place looked and the fix."""
    token = _access_token_source()
    if token:
        return Credentials(os.environ.get("KAGGLE_USERNAME") or None, f"access token from {token}")
    kaggle_json = config_dir() / "kaggle.json"
    values = _read_kaggle_json(kaggle_json)
    username = os.environ.get("KAGGLE_USERNAME") or values.get("username")
    key = os.environ.get("KAGGLE_KEY") or values.get("key")
    if username and key:
        from_env = "KAGGLE_USERNAME" in os.environ and "KAGGLE_KEY" in os.environ
        return Credentials(username, "KAGGLE_USERNAME/KAGGLE_KEY" if from_env else str(kaggle_json))
    oauth = _home() / ".kaggle" / "credentials.json"
    if _has_refresh_token(oauth):
        return Credentials(os.environ.get("KAGGLE_USERNAME") or None, f"OAuth credentials {oauth}")
    raise KaggleSetupError(_missing_message(kaggle_json, username, key, oauth))


def _file_state(path: Path, empty: str) -> str:
    return empty if path.exists() else "missing"


def _env_state(name: str) -> str:
    return "set" if os.environ.get(name) else "unset"


def _missing_message(kaggle_json: Path, username: str | None, key: str | None, oauth: Path) -> str:
    tokens = ", ".join(f"{p} ({_file_state(p, 'empty')})" for p in _token_files())
    lines = [
        "No Kaggle credentials found; nothing was sent to Kaggle. Looked for, in the kaggle package's order:",
        f"  - access token: KAGGLE_API_TOKEN ({_env_state('KAGGLE_API_TOKEN')}, no token), {tokens}",
        f"  - API key: {kaggle_json} ({_file_state(kaggle_json, 'no username/key')}), "
        f"KAGGLE_USERNAME ({_env_state('KAGGLE_USERNAME')}), KAGGLE_KEY ({_env_state('KAGGLE_KEY')})",
        "    (the package reads kaggle.json from $KAGGLE_CONFIG_DIR if set, else ~/.kaggle if that folder exists,",
        "    else $XDG_CONFIG_HOME/kaggle, default ~/.config/kaggle)",
        f"  - OAuth login (`kaggle auth login`): {oauth} ({_file_state(oauth, 'no refresh token')})",
    ]
    if bool(username) != bool(key):
        lines.append(f"  found a username or a key but not both (username: {username or 'none'})")
    lines += [
        "Fix: on https://www.kaggle.com/settings/api create a legacy API key, save the downloaded kaggle.json as",
        f"  {kaggle_json}  (format: kaggle.json.example) and run: chmod 600 {kaggle_json}",
        "or export KAGGLE_USERNAME and KAGGLE_KEY, or export KAGGLE_API_TOKEN=<token> (and KAGGLE_USERNAME).",
    ]
    return "\n".join(lines)
