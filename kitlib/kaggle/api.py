"""The real `kaggle` package's Python API, with every failure turned into `KaggleError`.

The CLI prints server-reported errors (`Kernel push error: ...`, rejected sources, a failed upload) and exits 0;
here they raise, carrying the server's message. `kaggle` is imported only after credentials were found, so a
missing setup raises `KaggleSetupError` before anything is sent.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kitlib.config import COMPETITION_SLUG
from kitlib.data.errors import DataError
from kitlib.kaggle.credentials import Credentials, resolve
from kitlib.kaggle.errors import KaggleError, KaggleSetupError

KERNEL_TERMINAL = ("complete", "error", "cancel_requested", "cancel_acknowledged")


@dataclass(frozen=True)
class KernelVersion:
    """A pushed kernel version."""

    ref: str
    version: int
    url: str


@dataclass(frozen=True)
class Submitted:
    """A code submission as Kaggle acknowledged it."""

    ref: int
    message: str


@functools.cache
def _credentials() -> Credentials:
    return resolve()


@functools.cache
def _api() -> Any:
    """An authenticated `KaggleApi` (imported here: `import kaggle` authenticates and prints at import time)."""
    creds = _credentials()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
        except SystemExit:
            raise KaggleSetupError(
                f"the kaggle package did not accept the credentials from {creds.source}:\n{printed.getvalue().strip()}"
            ) from None
    return api


def username() -> str:
    """The Kaggle user the credentials belong to (asks the server only for an access token without a name)."""
    name = _credentials().username or _api().get_config_value("username")
    if not name:
        raise KaggleSetupError("the Kaggle username is unknown: export KAGGLE_USERNAME")
    return name


def _http_code(e: Exception) -> int | None:
    response = getattr(e, "response", None)
    if response is None:
        return None
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("code"), int):
            return body["code"]
    return response.status_code


def _http_message(e: Exception) -> str:
    message = str(e)
    response = getattr(e, "response", None)
    if response is not None:
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict) and body.get("message"):
                message = str(body["message"])
    code = _http_code(e)
    return f"HTTP {code}: {message}" if code else message


@contextlib.contextmanager
def _errors(action: str) -> Iterator[None]:
    """Re-raise what the kaggle client raises as `KaggleError(f"{action}: {server message}")`."""
    import requests

    try:
        yield
    except requests.HTTPError as e:
        raise KaggleError(f"{action}: {_http_message(e)}") from e
    except requests.RequestException as e:
        raise KaggleError(f"{action}: could not reach Kaggle: {e}") from e
    except ValueError as e:  # the client's own checks, and responses that are not the JSON it expects
        raise KaggleError(f"{action}: {e}") from e


class _Tee(io.TextIOBase):
    """Echo to a stream and keep a copy (the client reports failed uploads only by printing)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        return self.copy.write(s)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def _printed() -> Iterator[io.StringIO]:
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield tee.copy


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e


# --- datasets ----------------------------------------------------------------------------------------------------


def dataset_state(ref: str) -> tuple[str, int | None] | None:
    """(status, current version) of dataset `owner/slug`, e.g. ("ready", 3); None when it does not exist."""
    import requests

    api = _api()
    with _errors(f"status of dataset {ref}"):
        try:
            raw = api.dataset_status(ref, format="json(status,current_version_number)")
        except requests.HTTPError as e:
            if _http_code(e) == 404:
                return None
            raise
        state = json.loads(raw)
    return state["status"], state.get("current_version_number")


def wait_dataset_ready(ref: str, after_version: int, timeout_s: float = 600, poll_s: float = 5.0) -> int | None:
    """Poll (backing off) until `ref` is `ready` with a version above `after_version`; return that version."""
    deadline = time.monotonic() + timeout_s
    delay, last = poll_s, "not found"
    while True:
        state = dataset_state(ref)
        if state is not None:
            status, version = state
            last = f"{status}, version {version}"
            if status in ("failed", "deleted"):
                raise KaggleError(f"dataset {ref}: processing ended {status!r} (https://www.kaggle.com/datasets/{ref})")
            if status == "ready" and (version is None or version > after_version):
                return version
        if time.monotonic() + delay > deadline:
            raise KaggleError(f"dataset {ref}: not ready after {timeout_s:g} s (last: {last})")
        time.sleep(delay)
        delay = min(delay * 1.5, 60.0)


def push_dataset(folder: Path, message: str, wait: bool = True, timeout_s: float = 600, poll_s: float = 5.0) -> str:
    """Create dataset `folder` (when Kaggle does not know it) or add a version noted `message`; return its id.

    With `wait`, return only once Kaggle reports the new version `ready`.
    """
    ref = _read_json(folder / "dataset-metadata.json").get("id")
    if not isinstance(ref, str) or ref.count("/") != 1:
        raise DataError(f"{folder / 'dataset-metadata.json'}: id must be 'owner/slug' (got {ref!r})")
    api = _api()
    before = dataset_state(ref)
    action = f"create dataset {ref}" if before is None else f"new version of dataset {ref}"
    with _errors(action), _printed() as printed:
        if before is None:
            result = api.dataset_create_new(str(folder), public=False, quiet=False)
        else:
            result = api.dataset_create_version(str(folder), message, quiet=False)
    if result is None or (result.status or "").lower() != "ok":
        raise KaggleError(f"{action}: {getattr(result, 'error', None) or 'no response'}")
    failed = re.findall(r"^Upload unsuccessful: (.+)$", printed.getvalue(), re.M)
    if failed:
        raise KaggleError(f"{action}: upload failed for {failed}; the version lacks them, push again")
    if result.invalidTags:
        raise KaggleError(f"{action}: Kaggle rejected the keywords {list(result.invalidTags)}")
    if wait:
        previous_version = (before[1] or 0) if before else 0
        wait_dataset_ready(ref, previous_version, timeout_s, poll_s)
    return ref


# --- kernels -----------------------------------------------------------------------------------------------------


def push_kernel(folder: Path) -> KernelVersion:
    """Push the kernel in `folder` (kernel-metadata.json + code file): a new version starts running on Kaggle."""
    ref = _read_json(folder / "kernel-metadata.json").get("id")
    api = _api()
    with _errors(f"push kernel {ref}"), _printed():
        result = api.kernels_push(str(folder))
    if result is None or result.error:
        raise KaggleError(f"push kernel {ref}: {getattr(result, 'error', None) or 'no response'}")
    rejected = {
        kind: list(values)
        for kind, values in (
            ("dataset", result.invalidDatasetSources),
            ("competition", result.invalidCompetitionSources),
            ("kernel", result.invalidKernelSources),
            ("model", result.invalidModelSources),
            ("keyword", result.invalidTags),
        )
        if values
    }
    if rejected:
        raise KaggleError(f"push kernel {ref}: Kaggle rejected sources, the kernel would run without them: {rejected}")
    if not result.versionNumber:
        raise KaggleError(f"push kernel {ref}: Kaggle returned no version number ({result.url or 'no url'})")
    return KernelVersion(str(ref), int(result.versionNumber), result.url)


def kernel_status(ref: str) -> tuple[str, str | None]:
    """(status, failure message) of the kernel's latest version: queued, running, complete, error, ..."""
    with _errors(f"status of kernel {ref}"):
        response = _api().kernels_status(ref)
    return response.status.name.lower(), response.failure_message or None


def wait_kernel(ref: str, timeout_s: float, poll_s: float = 30.0) -> tuple[str, str | None]:
    """Poll `kernel_status` (backing off) until the kernel completes, fails or is cancelled."""
    deadline = time.monotonic() + timeout_s
    delay = poll_s
    while True:
        status, failure = kernel_status(ref)
        if status in KERNEL_TERMINAL:
            return status, failure
        if time.monotonic() + delay > deadline:
            raise KaggleError(f"kernel {ref}: still {status} after {timeout_s:g} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 300.0)


def kernel_output(ref: str, dest: Path) -> list[Path]:
    """Download the latest version's output files and its log (`<slug>.log`) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with _errors(f"output of kernel {ref}"):
        files, _ = _api().kernels_output(ref, str(dest), force=True, quiet=True)
    return [Path(f) for f in files]


# --- competition -------------------------------------------------------------------------------------------------


def submit(kernel_ref: str, version: int, message: str, file_name: str = "submission.csv") -> Submitted:
    """Submit version `version` of kernel `owner/slug` to the competition (a code submission: the kernel reruns)."""
    if version < 1:
        raise KaggleError(f"submit {kernel_ref}: a kernel version number is required (got {version})")
    with _errors(f"submit {kernel_ref} version {version}"):
        response = _api().competition_submit_code(file_name, message, COMPETITION_SLUG, kernel_ref, version, quiet=True)
    return Submitted(int(response.ref), response.message)


def submissions() -> list[dict[str, Any]]:
    """The latest 20 submissions to the competition, newest first."""
    with _errors(f"submissions to {COMPETITION_SLUG}"):
        items = _api().competition_submissions(COMPETITION_SLUG) or []
    return [
        {
            "ref": s.ref,
            "date": s.date.strftime("%Y-%m-%d %H:%M") if s.date else "",
            "description": s.description or "",
            "status": s.status.name.lower(),
            "public_score": s.public_score or "",
            "private_score": s.private_score or "",
            "error": s.error_description or "",
        }
        for s in items
        if s is not None
    ]


def format_submissions(rows: list[dict[str, Any]], width: int = 48) -> str:
    """A text table: date, description (cut to `width`), status, public and private score."""
    if not rows:
        return "no submissions yet"
    header = ("date", "description", "status", "public", "private")
    cells = [header] + [
        (r["date"], _cut(r["description"], width), r["status"], r["public_score"], r["private_score"]) for r in rows
    ]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
