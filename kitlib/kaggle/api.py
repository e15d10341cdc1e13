"""The real `kaggle` package's Python API, with every failure turned into `KaggleError`.

The CLI prints server-reported errors (`Kernel push error: ...`, rejected sources, a failed upload) and exits 0,
and its parsed answers hide what the server did not say (an absent field reads as its default: a kernel status
`queued`, a submission ref 0, no files). Here every RPC answer is also seen as the JSON the server sent (a
`response_processor`, the client's hook for each answer): an error body (`{"code": 4xx, "message"}` or
`{"error": ...}`) or an answer without a field the kit reads (`_READS`) raises `KaggleError("<what failed>: <the
server's message>")`, one line. `kaggle` is imported only after credentials were found, so a missing setup raises
`KaggleSetupError` before anything is sent.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import json
import re
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from kitlib.config import COMPETITION_SLUG
from kitlib.data.errors import DataError
from kitlib.kaggle.credentials import Credentials, resolve
from kitlib.kaggle.errors import KaggleError, KaggleSetupError

KERNEL_TERMINAL = ("complete", "error", "cancel_requested", "cancel_acknowledged")

# What the kit reads from each RPC's answer ("a or b": either). The client fills a missing field with its default
# (status QUEUED, ref 0, no files), so a missing field is an error here, never a value.
_READS: dict[str, tuple[str, ...]] = {
    "GetDatasetStatus": ("status",),
    "StartBlobUpload": ("token", "createUrl"),
    "CreateDataset": ("status",),
    "CreateDatasetVersion": ("status",),
    "SaveKernel": ("versionNumber",),
    "GetKernelSessionStatus": ("status",),
    "ListKernelSessionOutput": ("files or log",),
    "CreateCodeSubmission": ("ref",),
    "ListSubmissions": ("submissions",),
}
# Protobuf JSON leaves empty lists out: a bare `{}` from these is an empty list, not a missing field.
_EMPTY_IS_EMPTY_LIST = ("ListSubmissions",)
_MAX_MESSAGE = 300


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


def _one_line(text: object, limit: int = _MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_json(raw: bytes | str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _error_text(error: Any) -> Any:
    """An `error` field's words: itself, or the `message` of an error object."""
    return (error.get("message") or json.dumps(error)) if isinstance(error, dict) else error


def _body_message(response: Any) -> str:
    """The server's own words in an answer: JSON `message` / `error`, an XML `<Message>` (cloud storage), or text."""
    content_type = response.headers.get("Content-Type", "")
    if not any(kind in content_type for kind in ("json", "text", "xml")):
        return ""
    with contextlib.suppress(Exception):
        text = response.text
        body = _parse_json(text)
        if isinstance(body, dict):
            return _one_line(body.get("message") or _error_text(body.get("error")) or text)
        m = re.search(r"<Message>(.*?)</Message>", text, re.S)
        return _one_line(m.group(1) if m else text, 200)
    return ""


@dataclass
class _Answer:
    """One RPC answer as the server sent it."""

    method: str  # the RPC name (`SaveKernel`), or the last path segment of a followed redirect (a download)
    body: Any  # the parsed JSON; None when the answer is not JSON
    text: str  # its start, for messages
    request: Any  # the parsed JSON request


@dataclass
class _Answers:
    """What the server answered since the last `clear()`: every RPC answer (seen through the client's
    `response_processor` hook, before it parses them into objects that hide what was missing) and every blob
    upload or output download that failed although the client carried on."""

    answers: list[_Answer] = field(default_factory=list)
    failed: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # url -> (kind, file name, message)
    processor: Callable[[Any], None] | None = None  # the client's own processor (its version check)

    def clear(self) -> None:
        self.answers.clear()
        self.failed.clear()

    def __call__(self, response: Any) -> None:
        if self.processor is not None:
            self.processor(response)
        content_type = response.headers.get("Content-Type", "")
        text = response.text if ("json" in content_type or content_type.startswith("text/")) else ""
        request = _parse_json(getattr(response.request, "body", None))
        method = urlsplit(response.url).path.rstrip("/").rsplit("/", 1)[-1]
        self.answers.append(_Answer(method, _parse_json(text), text[:200], request))

    def last(self) -> _Answer | None:
        return self.answers[-1] if self.answers else None

    def transfer(self, kind: str, url: str, name: str, response: Any, ok: bool) -> None:
        """Note the outcome of an upload (PUT) or a download (GET) that the client does not check itself."""
        key = url.split("?")[0]
        if ok:
            self.failed.pop(key, None)  # a retry of the same transfer went through
            return
        message = _body_message(response)
        self.failed[key] = (kind, name, f"HTTP {response.status_code}" + (f": {message}" if message else ""))

    def upload_name(self, url: str) -> str:
        key = url.split("?")[0]
        for answer in self.answers:
            if answer.method == "StartBlobUpload" and isinstance(answer.body, dict):
                if str(answer.body.get("createUrl", "")).split("?")[0] == key:
                    return str((answer.request or {}).get("name") or key)
        return key

    def problem(self) -> str | None:
        """The first thing the server reported as failed (or left out), as one line; None when all went well."""
        for answer in self.answers:
            found = _server_error(answer.body) or _lacks(answer)
            if found:
                return found
        if self.failed:
            kinds = sorted({kind for kind, _, _ in self.failed.values()})
            names = [name for _, name, _ in self.failed.values()]
            messages = "; ".join(dict.fromkeys(message for _, _, message in self.failed.values()))
            return _one_line(f"{' and '.join(kinds)} failed for {names} ({messages})")
        return None


def _server_error(body: Any) -> str | None:
    """The error an answer carries: `{"code": >=400, "message"}` (Kaggle's error shape) or a non-empty `error`."""
    if not isinstance(body, dict):
        return None
    error = _error_text(body.get("error"))
    if error:
        return _one_line(error)
    code = body.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and code >= 400:
        return _one_line(f"HTTP {code}: {body.get('message') or 'no message'}")
    return None


def _lacks(answer: _Answer) -> str | None:
    reads = _READS.get(answer.method)
    if not reads:
        return None
    body = answer.body
    if not isinstance(body, dict):
        return _one_line(f"Kaggle's {answer.method} answer is not a JSON object: {answer.text or 'empty'}")
    if not body and answer.method in _EMPTY_IS_EMPTY_LIST:
        return None
    missing = [k for want in reads if all(body.get(k) is None for k in want.split(" or ")) for k in want.split(" or ")]
    if not missing:
        return None
    return _one_line(f"Kaggle's {answer.method} answer lacks {' and '.join(map(repr, missing))}: {json.dumps(body)}")


_ANSWERS = _Answers()


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
    _watch(api)
    return api


def _watch(api: Any) -> None:
    """Let `_ANSWERS` see what the client receives (hooks of kaggle 2.2.4's `KaggleApi`, each used only if present).

    - `get_response_processor`: the callback every RPC client calls with each successful HTTP answer;
    - `_is_upload_successful(response)`: the client's test of a blob PUT (it then only prints "Upload unsuccessful");
    - `download_needed(response, outfile, quiet)`: asked before writing each kernel output file, whose GET the
      client never checks (an error page would be saved as the file): here an HTTP error skips the file and is noted.
    """
    if hasattr(api, "get_response_processor"):
        _ANSWERS.processor = api.get_response_processor()
        api.get_response_processor = lambda: _ANSWERS
    upload_ok = getattr(api, "_is_upload_successful", None)
    if upload_ok is not None:

        def is_upload_successful(response: Any) -> bool:
            ok = bool(upload_ok(response))
            _ANSWERS.transfer("upload", response.url, _ANSWERS.upload_name(response.url), response, ok)
            return ok

        api._is_upload_successful = is_upload_successful

    def download_needed(response: Any, outfile: str, quiet: bool = True) -> bool:
        ok = response.status_code < 400
        _ANSWERS.transfer("download", response.url, Path(outfile).name, response, ok)
        return ok

    api.download_needed = download_needed


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
        message = _body_message(response) or message
    code = _http_code(e)
    return _one_line(f"HTTP {code}: {message}" if code else message)


def _client_version() -> str:
    try:
        return f"kaggle {importlib.metadata.version('kaggle')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "the kaggle client"


def _unreadable(e: Exception) -> str:
    """Why the client could not read an answer (it raised while turning the JSON into its objects)."""
    answer = _ANSWERS.last()
    seen = f"{answer.method} answer: {answer.text or 'empty'}" if answer else "no answer recorded"
    if isinstance(e, KeyError) and e.args:
        return f"Kaggle answered {e.args[0]!r}, a value {_client_version()} does not know ({seen})"
    return f"Kaggle's answer does not fit {_client_version()} ({type(e).__name__}: {e}; {seen})"


@contextlib.contextmanager
def _errors(action: str) -> Iterator[None]:
    """Run kaggle client calls: whatever the server reported as failed (an HTTP error, an error body, a missing
    field, a failed transfer) or the client raised becomes `KaggleError(f"{action}: {the server's message}")`."""
    import requests

    _ANSWERS.clear()
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # requests' errors are OSErrors
        reported = _ANSWERS.problem()  # what the server said first explains what the client tripped over later
        if reported:
            raise KaggleError(f"{action}: {reported}") from e
        if isinstance(e, requests.HTTPError):
            message = _http_message(e)
        elif isinstance(e, requests.ConnectionError):
            message = f"could not reach Kaggle: {e}"
        elif isinstance(e, OSError):  # a broken transfer, or a local file the client could not write
            message = f"{type(e).__name__}: {e}"
        elif isinstance(e, ValueError) and isinstance(e.__context__, requests.HTTPError):
            # the client replaces some HTTP errors (401/403) by its own guess of the cause: keep both
            message = f"{_http_message(e.__context__)} (the kaggle client: {str(e).split('. ')[0]})"
        elif isinstance(e, ValueError) and not isinstance(e, json.JSONDecodeError):
            message = str(e)  # the client's own checks of the request
        else:
            message = _unreadable(e)
        raise KaggleError(f"{action}: {_one_line(message)}") from e
    reported = _ANSWERS.problem()
    if reported:
        raise KaggleError(f"{action}: {reported}")


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
    action = f"status of dataset {ref}"
    with _errors(action):
        try:
            raw = api.dataset_status(ref, format="json(status,current_version_number)")
        except requests.HTTPError as e:
            if _http_code(e) == 404:
                return None
            raise
        state = json.loads(raw)
    status, version = state["status"], state.get("current_version_number")
    if status == "ready" and not version:
        answer = next((a for a in _ANSWERS.answers if a.method == "GetDataset"), None)
        raise KaggleError(_one_line(f"{action}: Kaggle's GetDataset answer lacks 'currentVersionNumber' for a ready "
                                    f"dataset: {answer.text if answer else 'no answer'}"))
    return status, version


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
    failed = re.findall(r"^Upload unsuccessful: (.+)$", printed.getvalue(), re.M)
    if failed:  # what the hooks did not see (the client printed an exception and gave up)
        raise KaggleError(f"{action}: upload failed for {failed}; the version lacks them, push again")
    if result is None or (result.status or "").lower() != "ok":
        raise KaggleError(_one_line(f"{action}: {getattr(result, 'error', None) or 'no response'}"))
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
        raise KaggleError(_one_line(f"push kernel {ref}: {getattr(result, 'error', None) or 'no response'}"))
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
    """Download the latest version's output files and its log (`<slug>.log`) into `dest`.

    A file whose download fails is not written (the client would save the error page as the file) and raises."""
    dest.mkdir(parents=True, exist_ok=True)
    action = f"output of kernel {ref}"
    with _errors(action):
        # force=False: the client then asks `download_needed` (hooked in `_watch`) about each file's answer
        files, _ = _api().kernels_output(ref, str(dest), force=False, quiet=True)
    if not files:
        raise KaggleError(f"{action}: Kaggle listed no output files and no log (has the latest version run? "
                          "see `make kernel-status`)")
    return [Path(f) for f in files]


# --- competition -------------------------------------------------------------------------------------------------


def submit(kernel_ref: str, version: int, message: str, file_name: str = "submission.csv") -> Submitted:
    """Submit version `version` of kernel `owner/slug` to the competition (a code submission: the kernel reruns)."""
    action = f"submit {kernel_ref} version {version}"
    if version < 1:
        raise KaggleError(f"submit {kernel_ref}: a kernel version number is required (got {version})")
    with _errors(action):
        response = _api().competition_submit_code(file_name, message, COMPETITION_SLUG, kernel_ref, version, quiet=True)
    if not response.ref:
        said = response.message or "no message"
        raise KaggleError(_one_line(f"{action}: Kaggle returned no submission ref ({said})"))
    return Submitted(int(response.ref), response.message or "")


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
    """A text table: date, description (cut to `width`), status, public and private score, and the error Kaggle
    gave a failed submission."""
    if not rows:
        return "no submissions yet"
    header = ("date", "description", "status", "public", "private", "error")
    cells = [header] + [
        (r["date"], _cut(r["description"], width), r["status"], r["public_score"], r["private_score"],
         _cut(r["error"], 2 * width))
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def download_competition(dest: Path, slug: str = COMPETITION_SLUG) -> Path:
    """Download the competition's data archive into folder `dest` (the client's `competition_download_files`, i.e.
    `kaggle competitions download`, which prints its progress); return the archive's path.

    Kaggle answers `DownloadDataFiles` with a redirect to the archive; an error, a JSON answer instead of the
    archive, a broken transfer or a file that is not a zip raises, and what the client wrote into `dest` is removed.
    The competition's rules must have been accepted on kaggle.com (else HTTP 403)."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.rglob("*"))
    action = f"download of competition {slug}"
    try:
        with _errors(action):
            _api().competition_download_files(slug, path=str(dest), force=True, quiet=False)
        answer = _ANSWERS.last()
        if answer is not None and answer.body is not None:
            raise KaggleError(_one_line(f"{action}: Kaggle answered {answer.text} instead of the data archive"))
        written = sorted(p for p in dest.rglob("*") if p.is_file() and p not in before)
        archives = [p for p in written if zipfile.is_zipfile(p)]
        if len(archives) != 1:
            sizes = [f"{p.name} ({p.stat().st_size} bytes)" for p in written]
            raise KaggleError(f"{action}: Kaggle sent no zip archive (received: {sizes or 'nothing'})")
    except BaseException:
        for path in sorted(set(dest.rglob("*")) - before, reverse=True):  # deepest first: files, then their folders
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
        raise
    return archives[0]
