"""Metadata templates: JSON files whose string values may hold `{name}` placeholders (e.g. `"{username}/{slug}"`).

Only string values are rendered, so JSON braces and other text need no escaping; an unknown placeholder is an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from kitlib.data.errors import DataError

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def _render(value: Any, values: Mapping[str, str], path: Path) -> Any:
    if isinstance(value, str):
        unknown = sorted(set(_PLACEHOLDER.findall(value)) - set(values))
        if unknown:
            raise DataError(f"{path}: unknown placeholder(s) {unknown} in {value!r}; known: {sorted(values)}")
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
    if isinstance(value, list):
        return [_render(v, values, path) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, values, path) for k, v in value.items()}
    return value


def render_template(path: Path, values: Mapping[str, str]) -> dict[str, Any]:
    """Load the JSON object at `path` and fill its placeholders from `values`."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: template not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: a metadata template must be a JSON object")
    return _render(data, values, path)


def write_json(path: Path, data: Any) -> Path:
    """Write `data` as indented JSON (creating parent folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
