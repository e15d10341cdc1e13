"""No Kaggle command the kit wraps exits 0 when the server reported an error.

For every call the kit makes through the REAL kaggle 2.2.4 client (datasets status / create / version and their blob
uploads, kernels push / status / output, competition submit, submissions, competition download), the local server of
tests/kaggle_server.py answers
  (a) an HTTP 4xx/5xx error,
  (b) HTTP 200 with an error body, `{"code": 4xx, "message": ...}` and `{"error": ...}`,
  (c) HTTP 200 with a body missing the field the kit reads,
plus values the client does not know and transfers that fail while the client carries on. Each scenario runs the
command function in a fresh interpreter the way `python -m kitlib` does (KaggleError -> `error: <message>`, exit 1)
and checks: a non-zero exit, exactly one error line, naming what failed and carrying the server's message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from kaggle_server import Dataset, KaggleServer, run_python

from kitlib.config import COMPETITION_SLUG
from test_kaggle_api import DATASETS, kernel_tree
from test_kaggle_download import competition_zip

SRC = "tester/motor-kit-src"
KERNEL = "tester/motor-kit-infer"

# command -> what its error line names as failed (the line starts `error: <this>: `)
ACTIONS = {
    "push-dataset/create": f"create dataset {SRC}",
    "push-dataset/version": f"new version of dataset {SRC}",
    "push-dataset/status": f"status of dataset {SRC}",
    "push-kernel": f"push kernel {KERNEL}",
    "kernel-status": f"status of kernel {KERNEL}",
    "kernel-output": f"output of kernel {KERNEL}",
    "submit": f"submit {KERNEL} version 3",
    "submissions": f"submissions to {COMPETITION_SLUG}",
    "download": f"download of competition {COMPETITION_SLUG}",
}

RUNNER = """
import sys
from pathlib import Path
from kitlib.data.errors import DataError
from kitlib.kaggle.errors import KaggleError
from kitlib.release import commands
{prelude}
try:
    rc = {call}
except KaggleError as e:  # what kitlib.cli.main does
    print(f"error: {{e}}", file=sys.stderr)
    sys.exit(1)
except DataError as e:
    print(f"error: {{e}}", file=sys.stderr)
    sys.exit(2)
print("EXIT", rc)
sys.exit(rc)
"""


def _dataset_build(tmp_path: Path) -> Path:
    build = tmp_path / "build"
    folder = build / "datasets" / "src"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "manifest.json").write_text(json.dumps({"kit_version": "abc", "files": []}))
    meta = {"id": SRC, "title": "motor-kit-src", "licenses": [{"name": "CC0-1.0"}]}
    (folder / "dataset-metadata.json").write_text(json.dumps(meta))
    return build


def _push_dataset(server: KaggleServer, tmp_path: Path, exists: bool) -> str:
    build = _dataset_build(tmp_path)
    server.state.polls_until_ready = 0
    if exists:
        server.state.datasets[SRC] = Dataset(version=1, polls_until_ready=0)
    return f"commands.push_dataset_cmd(['src'], timeout_s=30, build=Path({str(build)!r}))"


def _push_kernel(server: KaggleServer, tmp_path: Path) -> str:
    for ref in DATASETS:
        server.state.datasets[ref] = Dataset(version=1, polls_until_ready=0)
    kernels = kernel_tree(tmp_path)
    return (f"commands.push_kernel_cmd('infer', kernels=Path({str(kernels)!r}), "
            f"build=Path({str(tmp_path / 'build')!r}))")


def _kernel_output(server: KaggleServer, tmp_path: Path) -> str:
    server.state.outputs = {"submission.csv": b"tomo_id,Motor axis 0\n", "timing.json": b"{}"}
    server.state.log = "done\n"
    return f"commands.kernel_output_cmd({KERNEL!r}, dest=Path({str(tmp_path / 'out')!r}))"


def _download(server: KaggleServer, tmp_path: Path) -> str:
    server.state.competition_files[COMPETITION_SLUG] = competition_zip()
    return f"commands.download_cmd(dest=Path({str(tmp_path / 'data' / COMPETITION_SLUG)!r}))"


SETUPS: dict[str, Callable[[KaggleServer, Path], str]] = {
    "push-dataset/create": lambda srv, tmp: _push_dataset(srv, tmp, exists=False),
    "push-dataset/version": lambda srv, tmp: _push_dataset(srv, tmp, exists=True),
    "push-dataset/status": lambda srv, tmp: _push_dataset(srv, tmp, exists=True),
    "push-kernel": _push_kernel,
    "kernel-status": lambda srv, tmp: f"commands.kernel_status_cmd({KERNEL!r})",
    "kernel-output": _kernel_output,
    "submit": lambda srv, tmp: f"commands.submit_cmd({KERNEL!r}, version=3)",
    "submissions": lambda srv, tmp: "commands.submissions_cmd()",
    "download": _download,
}


@dataclass(frozen=True)
class Scenario:
    command: str  # a key of SETUPS
    method: str  # the RPC that misbehaves, or PUT (blob uploads) / GET (downloads)
    kind: str  # http (a), code-body / error-body (b), missing (c), unknown-value, transfer
    status: int = 0  # http, code-body, transfer
    body: Any = None  # missing, unknown-value: the whole HTTP 200 body
    expect: str | tuple[str, ...] = ""  # in the error line besides the action and the server's message
    prelude: str = ""  # code run before the command

    @property
    def id(self) -> str:
        return f"{self.command}-{self.method}-{self.kind}{self.status or ''}"

    @property
    def message(self) -> str:
        return f"server says no ({self.id})"


def abc(command: str, method: str, missing: Any, expect: str, http: int = 500, code: int = 403) -> list[Scenario]:
    """(a) HTTP `http`, (b) `{"code": code, "message"}` and `{"error"}` at HTTP 200, (c) `missing` at HTTP 200."""
    return [
        Scenario(command, method, "http", status=http),
        Scenario(command, method, "code-body", status=code),
        Scenario(command, method, "error-body"),
        Scenario(command, method, "missing", body=missing, expect=expect),
    ]


NO_SLEEP = "import time; time.sleep = lambda s: None  # the client backs off between retries: skip the waits"

SCENARIOS: list[Scenario] = [
    # datasets status: GetDatasetStatus, then GetDataset for the version (both in `dataset_state`)
    *abc("push-dataset/status", "GetDatasetStatus", {}, "lacks 'status'"),
    Scenario("push-dataset/status", "GetDatasetStatus", "unknown-value", body={"status": "PAUSED_FOREVER"},
             expect="'PAUSED_FOREVER', a value kaggle 2.2.4 does not know"),
    *abc("push-dataset/status", "GetDataset", {"ref": SRC}, "lacks 'currentVersionNumber' for a ready dataset"),
    # datasets create / version, and the blob uploads both make
    *abc("push-dataset/create", "CreateDataset", {"ref": SRC}, "lacks 'status'", http=409),
    *abc("push-dataset/version", "CreateDatasetVersion", {"ref": SRC}, "lacks 'status'", http=409),
    *abc("push-dataset/version", "StartBlobUpload", {}, "lacks 'token' and 'createUrl'", code=429),
    Scenario("push-dataset/version", "PUT", "transfer", status=403,
             expect=("upload failed for [", "'a.txt'", "(HTTP 403:")),
    Scenario("push-dataset/create", "PUT", "transfer", status=500,
             expect=("upload failed for [", "'a.txt'", "(HTTP 500:")),
    # kernels push / status / output
    *abc("push-kernel", "SaveKernel", {"url": "https://www.kaggle.com/code/x"}, "lacks 'versionNumber'"),
    *abc("kernel-status", "GetKernelSessionStatus", {"failureMessage": None}, "lacks 'status'", http=503),
    Scenario("kernel-status", "GetKernelSessionStatus", "http", status=403,
             expect="(the kaggle client: Cannot access kernel"),
    Scenario("kernel-status", "GetKernelSessionStatus", "unknown-value", body={"status": "PAUSED"},
             expect="'PAUSED', a value kaggle 2.2.4 does not know"),
    *abc("kernel-output", "ListKernelSessionOutput", {}, "lacks 'files' and 'log'"),
    Scenario("kernel-output", "GET", "transfer", status=404, expect="download failed for ["),
    # competition submit, submissions
    *abc("submit", "CreateCodeSubmission", {"message": "Your submission was successfully saved"}, "lacks 'ref'",
         http=400),
    *abc("submissions", "ListSubmissions", {"nextPageToken": "p2"}, "lacks 'submissions'"),
    Scenario("submissions", "ListSubmissions", "unknown-value",
             body={"submissions": [{"ref": 1, "status": "RESCORING"}]},
             expect="'RESCORING', a value kaggle 2.2.4 does not know"),
    # competition download: DownloadDataFiles (a redirect to the archive), then the archive's GET
    *abc("download", "DownloadDataFiles", {"url": "https://storage.example/x.zip"}, "instead of the data archive",
         http=403),
    Scenario("download", "GET", "transfer", status=404, prelude=NO_SLEEP),
    Scenario("download", "GET", "transfer", status=500, prelude=NO_SLEEP),
]


def arrange(server: KaggleServer, s: Scenario) -> None:
    if s.kind in ("http", "transfer"):
        server.fail(s.method, s.message, status=s.status)
    elif s.kind == "code-body":
        server.override(s.method, {"code": s.status, "message": s.message})
    elif s.kind == "error-body":
        server.override(s.method, {"error": s.message})
    else:
        server.override(s.method, s.body)


def error_line(proc) -> str:
    """The run failed with exactly one line of error (no traceback): that line."""
    assert proc.returncode != 0, f"exited 0: {proc.stdout}{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.id)
def test_server_error_exits_nonzero_with_one_line_naming_the_call_and_the_message(s, tmp_path):
    with KaggleServer(lifetime_s=120) as server:
        call = SETUPS[s.command](server, tmp_path)
        arrange(server, s)
        proc = run_python(RUNNER.format(prelude=s.prelude, call=call), server.env(tmp_path / "home"), timeout_s=90)
        assert [r for r in server.calls() if s.method in (r.method, r.verb)], f"{s.method} was never called"
    line = error_line(proc)
    assert line.startswith(f"error: {ACTIONS[s.command]}: "), line
    if s.kind in ("http", "code-body", "error-body", "transfer"):
        assert s.message in line, line
    if s.kind in ("http", "code-body"):
        assert f"HTTP {s.status}: " in line, line
    for expected in (s.expect,) if isinstance(s.expect, str) else s.expect:
        assert expected in line, line


def test_every_wrapped_call_is_tried_with_an_http_error_an_error_body_and_a_missing_field():
    kinds: dict[str, set[str]] = {}
    for s in SCENARIOS:
        kinds.setdefault(s.method, set()).add(s.kind)
    rpcs = ["GetDatasetStatus", "GetDataset", "CreateDataset", "CreateDatasetVersion", "StartBlobUpload", "SaveKernel",
            "GetKernelSessionStatus", "ListKernelSessionOutput", "CreateCodeSubmission", "ListSubmissions",
            "DownloadDataFiles"]
    for rpc in rpcs:
        assert {"http", "code-body", "error-body", "missing"} <= kinds[rpc], rpc
    assert {"PUT", "GET"} <= set(kinds)
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS) == 53


def test_submit_never_reports_submission_0(tmp_path):
    """The issue's case: `{"ref": 0}` (or no ref) used to print `submitted ... (submission 0)` and exit 0."""
    with KaggleServer(lifetime_s=60) as server:
        server.override("CreateCodeSubmission", {"ref": 0, "message": "saved?"})
        proc = run_python(RUNNER.format(prelude="", call=f"commands.submit_cmd({KERNEL!r}, version=3)"),
                          server.env(tmp_path / "home"))
    line = error_line(proc)
    assert "Kaggle returned no submission ref (saved?)" in line and "submission 0" not in proc.stdout


def test_an_empty_submissions_answer_is_no_submissions(tmp_path):
    """Protobuf JSON leaves an empty list out: a bare `{}` is an empty list (any other body without `submissions`
    is an error, above)."""
    with KaggleServer(lifetime_s=60) as server:
        server.override("ListSubmissions", {})
        proc = run_python(RUNNER.format(prelude="", call="commands.submissions_cmd()"), server.env(tmp_path / "home"))
    assert proc.returncode == 0 and "no submissions yet" in proc.stdout, proc.stderr
