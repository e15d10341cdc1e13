"""A local stand-in for Kaggle that the UNMODIFIED kaggle 2.2.4 client talks to.

With `KAGGLE_API_ENVIRONMENT=LOCALHOST` the client calls `http://localhost/api/v1/<service>/<Method>`; with
`HTTP_PROXY=http://127.0.0.1:<port>` (NO_PROXY unset) those requests, the blob PUTs and the downloads reach this
server, which reads the target from the absolute request URI. It records every request, answers like Kaggle
(camelCase JSON; errors as `{"code", "message"}`), can be told to fail a method (an HTTP error), to answer it with any
body at HTTP 200 (an error body, a body missing a field), or to cut downloads short, and stops itself after
`lifetime_s`.

`DownloadDataFiles` (competition download) answers, like Kaggle, with a 302 redirect to the archive
(`GET http://localhost/download/<competition>.zip`, served from `state.competition_files`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Request:
    """One request as the server saw it."""

    verb: str
    path: str
    method: str  # the RPC name (`SaveKernel`), or the path for blob PUTs and downloads
    body: Any  # parsed JSON for RPCs, raw bytes otherwise
    headers: dict[str, str]


@dataclass
class Dataset:
    version: int
    polls_until_ready: int  # GetDatasetStatus answers "blobs received" this many more times


@dataclass
class State:
    datasets: dict[str, Dataset] = field(default_factory=dict)
    kernel_versions: dict[str, int] = field(default_factory=dict)
    kernel_statuses: list[tuple[str, str | None]] = field(default_factory=list)  # served in order, last repeats
    outputs: dict[str, bytes] = field(default_factory=dict)
    log: str = ""
    submissions: list[dict[str, Any]] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    polls_until_ready: int = 1
    competition_files: dict[str, bytes] = field(default_factory=dict)  # competition slug -> its data archive (zip)
    truncate_downloads: bool = False  # GETs announce the full length, send half and close (a broken transfer)


@dataclass(frozen=True)
class Redirect:
    """An RPC answer that is an HTTP 302 to `url` (Kaggle's `HttpRedirect`)."""

    url: str


class KaggleServer:
    """Threaded fake Kaggle on 127.0.0.1 (random port). Use as a context manager."""

    def __init__(self, lifetime_s: float = 120.0) -> None:
        self.state = State()
        self.requests: list[Request] = []
        self._failures: dict[str, tuple[int, str]] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def __enter__(self) -> "KaggleServer":
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """Environment for a process running the real client against this server (credentials via env).

        `home` (created) is HOME and TMPDIR, so no file outside it is read or written; `extra` adds or overrides.
        """
        home.mkdir(parents=True, exist_ok=True)
        base = {
            "HOME": str(home),
            "TMPDIR": str(home),
            "PATH": "/usr/bin:/bin",
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": f"http://127.0.0.1:{self.port}",
            "http_proxy": f"http://127.0.0.1:{self.port}",
            "KAGGLE_USERNAME": "tester",
            "KAGGLE_KEY": "secret-key",
            "PYTHONUNBUFFERED": "1",
        }
        return {**base, **extra}

    # --- test controls ---

    def fail(self, method: str, message: str, status: int = 400) -> None:
        """Answer every later call of `method` with HTTP `status` and `{"code": status, "message": message}`.

        `method` is an RPC name (`SaveKernel`), `PUT` for every blob upload or `GET` for every download (kernel
        output files, the competition archive)."""
        self._failures[method] = (status, message)

    def override(self, method: str, body: dict[str, Any]) -> None:
        """Answer every later call of RPC `method` with HTTP 200 and `body` (e.g. one carrying `error`)."""
        self._overrides[method] = body

    def calls(self, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    # --- handlers: request JSON -> response JSON ---

    def _dataset_status(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ds = self.state.datasets.get(f"{body['ownerSlug']}/{body['datasetSlug']}")
        if ds is None:
            return 404, {"code": 404, "message": "Dataset not found"}
        if ds.polls_until_ready > 0:
            ds.polls_until_ready -= 1
            return 200, {"status": "BLOBS_RECEIVED"}
        return 200, {"status": "READY"}

    def _get_dataset(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ref = f"{body['ownerSlug']}/{body['datasetSlug']}"
        ds = self.state.datasets.get(ref)
        if ds is None:
            return 404, {"code": 404, "message": "Dataset not found"}
        # The version number moves on only once the new version is processed.
        version = ds.version - (1 if ds.polls_until_ready > 0 else 0)
        return 200, {"ref": ref, "currentVersionNumber": version}

    def _start_blob(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token = f"blob{len(self.state.blobs)}-{body['name']}"
        self.state.blobs[token] = b""
        return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}

    def _create_dataset(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ref = f"{body['ownerSlug']}/{body['slug']}"
        self.state.datasets[ref] = Dataset(1, self.state.polls_until_ready)
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"}

    def _create_version(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ref = f"{body['ownerSlug']}/{body['datasetSlug']}"
        ds = self.state.datasets.get(ref)
        if ds is None:
            return 404, {"code": 404, "message": "Dataset not found"}
        ds.version += 1
        ds.polls_until_ready = self.state.polls_until_ready
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"}

    def _save_kernel(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        slug = body["slug"]
        version = self.state.kernel_versions.get(slug, 0) + 1
        self.state.kernel_versions[slug] = version
        return 200, {"ref": f"/code/{slug}", "url": f"https://www.kaggle.com/code/{slug}", "versionNumber": version}

    def _kernel_status(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        statuses = self.state.kernel_statuses or [("COMPLETE", None)]
        status, failure = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return 200, {"status": status, **({"failureMessage": failure} if failure else {})}

    def _kernel_output(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        files = [{"url": f"http://localhost/output/{name}", "fileName": name} for name in self.state.outputs]
        return 200, {"files": files, "log": self.state.log}

    def _code_submission(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Refs 4242, 4243, ...; each new submission is listed first by ListSubmissions, pending (a test scores it
        by setting its `publicScore` / `privateScore`)."""
        ref = 4241 + sum(r.method == "CreateCodeSubmission" for r in self.requests)  # this call is counted
        listed = {"ref": ref, "date": "2025-06-03T10:00:00.000Z", "description": body.get("submissionDescription", ""),
                  "status": "PENDING"}
        self.state.submissions.insert(0, listed)
        return 200, {"message": "Your submission was successfully saved", "ref": ref}

    def _submissions(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"submissions": self.state.submissions}

    def _download_data_files(self, body: dict[str, Any]) -> tuple[int, dict[str, Any] | Redirect]:
        name = body.get("competitionName", "")
        if name not in self.state.competition_files:
            return 404, {"code": 404, "message": f"Competition {name!r} not found"}
        return 302, Redirect(f"http://localhost/download/{name}.zip")

    def _download(self, path: str) -> bytes | None:
        """The bytes a GET of `path` serves (kernel outputs, competition archives), None when there is none."""
        name = path.rsplit("/", 1)[-1]
        if path.startswith("/output/"):
            return self.state.outputs.get(name)
        if path.startswith("/download/") and name.endswith(".zip"):
            return self.state.competition_files.get(name.removesuffix(".zip"))
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        rpcs = {
            "GetDatasetStatus": server._dataset_status,
            "GetDataset": server._get_dataset,
            "StartBlobUpload": server._start_blob,
            "CreateDataset": server._create_dataset,
            "CreateDatasetVersion": server._create_version,
            "SaveKernel": server._save_kernel,
            "GetKernelSessionStatus": server._kernel_status,
            "ListKernelSessionOutput": server._kernel_output,
            "CreateCodeSubmission": server._code_submission,
            "ListSubmissions": server._submissions,
            "DownloadDataFiles": server._download_data_files,
        }

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _record(self, method: str, body: Any) -> None:
                request = Request(self.command, urlsplit(self.path).path, method, body, dict(self.headers))
                with server._lock:
                    server.requests.append(request)

            def _read(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                method = path.rsplit("/", 1)[-1] if path.startswith("/api/v1/") else path
                raw = self._read()
                body = json.loads(raw or b"{}")
                self._record(method, body)
                with server._lock:
                    if method in server._failures:
                        status, message = server._failures[method]
                        answer = {"code": status, "message": message}
                    elif method in server._overrides:
                        status, answer = 200, server._overrides[method]
                    elif method in rpcs:
                        status, answer = rpcs[method](body)
                    else:
                        status, answer = 404, {"code": 404, "message": f"no such method {method}"}
                if isinstance(answer, Redirect):
                    self.send_response(status)
                    self.send_header("Location", answer.url)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._reply(status, json.dumps(answer).encode())

            def do_PUT(self) -> None:
                path = urlsplit(self.path).path
                data = self._read()
                self._record(path, data)
                token = path.rsplit("/", 1)[-1]
                with server._lock:
                    if "PUT" in server._failures:
                        status, message = server._failures["PUT"]
                        self._reply(status, json.dumps({"code": status, "message": message}).encode())
                        return
                    known = token in server.state.blobs
                    if known:
                        server.state.blobs[token] = data
                self._reply(200 if known else 404, b"{}")

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                self._record(path, b"")
                with server._lock:
                    failure = server._failures.get("GET")
                    data = server._download(path)
                    truncate = server.state.truncate_downloads
                if failure:
                    status, message = failure
                    self._reply(status, json.dumps({"code": status, "message": message}).encode())
                elif data is None:
                    self._reply(404, b"not found", "text/plain")
                elif truncate:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/zip")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                else:
                    self._reply(200, data, "application/octet-stream")

        return Handler


def run_python(code: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Run `code` with the project's interpreter in the repository root (as `python -m kitlib` would run)."""
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s
    )
