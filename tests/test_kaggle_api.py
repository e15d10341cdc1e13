"""kitlib.kaggle.api and .commands through the REAL kaggle 2.2.4 client, in subprocesses, against tests/kaggle_server.

Every scenario runs the kit's code in a fresh interpreter whose environment points the client at the local server
(KAGGLE_API_ENVIRONMENT=LOCALHOST + HTTP_PROXY), exactly as a user's shell would; the server records what arrived.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from kaggle_server import KaggleServer, run_python

from kitlib.config import COMPETITION_SLUG

DATASETS = ["tester/motor-kit-src", "tester/motor-kit-wheels", "tester/motor-kit-weights"]
KERNELS = Path(__file__).resolve().parents[1] / "kernels"  # the real kernel folders


@pytest.fixture
def server():
    with KaggleServer(lifetime_s=120) as srv:
        yield srv


def dataset_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    meta = {"id": "tester/motor-kit-src", "title": "motor-kit-src", "licenses": [{"name": "CC0-1.0"}]}
    (folder / "dataset-metadata.json").write_text(json.dumps(meta))
    return folder


def kernel_tree(tmp_path: Path) -> Path:
    """A copy of the repository's kernels/ (infer and train)."""
    return shutil.copytree(KERNELS, tmp_path / "kernels", ignore=shutil.ignore_patterns("__pycache__"))


def push_dataset_code(folder: Path, message: str, **kw: object) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in {"poll_s": 0.02, **kw}.items())
    return (
        "from pathlib import Path; from kitlib.kaggle import api\n"
        f"print('REF', api.push_dataset(Path({str(folder)!r}), {message!r}, {args}))"
    )


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def failed(proc) -> str:
    """The last stderr line of a run that must have failed (the uncaught error, as a CLI would show it)."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc.stderr.strip().splitlines()[-1]


# --- (a) datasets ---


def test_new_dataset_is_created_uploaded_and_awaited_then_versioned(server, tmp_path):
    folder = dataset_folder(tmp_path / "ds", {"a.txt": b"alpha", "b.bin": bytes(range(256))})
    env = server.env(tmp_path / "home")
    assert "REF tester/motor-kit-src" in ok(run_python(push_dataset_code(folder, "first"), env))

    methods = [r.method for r in server.calls() if r.verb == "POST"]
    assert methods[0] == "GetDatasetStatus"  # 404: a new dataset
    create = methods.index("CreateDataset")
    assert methods[1:create].count("StartBlobUpload") == 2
    assert "GetDatasetStatus" in methods[create:]  # waited for ready after creating
    puts = {r.path: r.body for r in server.calls() if r.verb == "PUT"}
    assert sorted(puts.values()) == sorted([b"alpha", bytes(range(256))])
    body = server.calls("CreateDataset")[0].body
    assert body["ownerSlug"] == "tester" and body["slug"] == "motor-kit-src" and body["isPrivate"] is True
    assert sorted(f["token"] for f in body["files"]) == sorted(p.rsplit("/", 1)[-1] for p in puts)
    auth = server.calls("CreateDataset")[0].headers["Authorization"]
    assert base64.b64decode(auth.split()[1]) == b"tester:secret-key"
    # polled until the server said READY (it answers BLOBS_RECEIVED once first)
    assert server.state.datasets["tester/motor-kit-src"].polls_until_ready == 0

    ok(run_python(push_dataset_code(folder, "motor-kit 0217dbb-dirty"), env))
    assert len(server.calls("CreateDataset")) == 1
    (version,) = server.calls("CreateDatasetVersion")
    assert version.body["body"]["versionNotes"] == "motor-kit 0217dbb-dirty"
    assert len(version.body["body"]["files"]) == 2
    assert server.state.datasets["tester/motor-kit-src"].version == 2


def test_push_dataset_cmd_versions_with_the_kit_version_and_prints_ready(server, tmp_path):
    build = tmp_path / "build"
    dataset_folder(build / "datasets" / "src", {"x.txt": b"x"})
    (build / "datasets" / "src" / "manifest.json").write_text(json.dumps({"kit_version": "abc123-dirty", "files": []}))
    server.state.datasets["tester/motor-kit-src"] = server_dataset(version=3)
    server.state.polls_until_ready = 0  # the command polls every few seconds: be ready at once
    code = (
        "from pathlib import Path; from kitlib.release import commands\n"
        f"commands.push_dataset_cmd(['src'], timeout_s=30, build=Path({str(build)!r}))"
    )
    out = ok(run_python(code, server.env(tmp_path / "home")))
    assert "tester/motor-kit-src: ready (motor-kit abc123-dirty)" in out
    assert server.calls("CreateDatasetVersion")[0].body["body"]["versionNotes"] == "motor-kit abc123-dirty"


def server_dataset(version: int):
    from kaggle_server import Dataset

    return Dataset(version=version, polls_until_ready=0)


# --- (b) kernels ---


def push_ready_kernel(server, tmp_path: Path, kernel: str, **kw: object) -> tuple[str, Path]:
    """Push `kernel` (a copy of kernels/) with the three datasets ready; (its output, the build folder)."""
    for ref in DATASETS:
        server.state.datasets[ref] = server_dataset(1)
    kernels, build = kernel_tree(tmp_path), tmp_path / "build"
    args = "".join(f", {k}={v!r}" for k, v in kw.items())
    code = (
        "from pathlib import Path; from kitlib.release import commands\n"
        f"commands.push_kernel_cmd({kernel!r}, kernels=Path({str(kernels)!r}), build=Path({str(build)!r}){args})"
    )
    return ok(run_python(code, server.env(tmp_path / "home"))), build


@pytest.mark.parametrize("kernel", ["infer", "train"])
def test_push_kernel_sends_offline_gpu_kernel_with_competition_and_three_datasets(server, tmp_path, kernel):
    out, build = push_ready_kernel(server, tmp_path, kernel)
    assert f"pushed tester/motor-kit-{kernel} version 1" in out

    (save,) = server.calls("SaveKernel")
    body = save.body
    assert body["slug"] == f"tester/motor-kit-{kernel}" and body["newTitle"] == f"motor-kit {kernel}"
    assert body["enableInternet"] is False and body["enableGpu"] is True and body["isPrivate"] is True
    assert body["competitionDataSources"] == [COMPETITION_SLUG]
    assert body["datasetDataSources"] == DATASETS
    assert body["text"] == (KERNELS / kernel / f"{kernel}.py").read_text()
    assert body["kernelType"] == "script" and body["language"] == "python"
    # the three datasets were checked for `ready` before the push
    assert {f"{r.body['ownerSlug']}/{r.body['datasetSlug']}" for r in server.calls("GetDatasetStatus")} == set(DATASETS)
    pushed = json.loads((build / "kernels" / kernel / "pushed.json").read_text())
    assert pushed["ref"] == f"tester/motor-kit-{kernel}" and pushed["version"] == 1


def test_push_kernel_notebook_sends_the_scripts_cells_as_a_notebook_kernel_of_its_own(server, tmp_path):
    from kitlib.release.notebook import split_cells

    out, build = push_ready_kernel(server, tmp_path, "infer", notebook=True)
    assert "pushed tester/motor-kit-infer-notebook version 1" in out
    (save,) = server.calls("SaveKernel")
    assert (save.body["slug"], save.body["newTitle"]) == ("tester/motor-kit-infer-notebook", "motor-kit infer notebook")
    assert save.body["kernelType"] == "notebook" and save.body["enableInternet"] is False
    cells = json.loads(save.body["text"])["cells"]  # the client sends each cell's source as one string
    assert [(c["cell_type"], c["source"]) for c in cells] == split_cells((KERNELS / "infer" / "infer.py").read_text())
    assert json.loads((build / "kernels" / "infer-notebook" / "pushed.json").read_text())["version"] == 1


def test_push_kernel_refuses_when_a_dataset_is_missing(server, tmp_path):
    server.state.datasets[DATASETS[0]] = server_dataset(1)
    kernels, build = kernel_tree(tmp_path), tmp_path / "build"
    code = (
        "from pathlib import Path; from kitlib.release import commands\n"
        f"commands.push_kernel_cmd('infer', kernels=Path({str(kernels)!r}), build=Path({str(build)!r}))"
    )
    assert "dataset tester/motor-kit-wheels is missing" in failed(run_python(code, server.env(tmp_path / "home")))
    assert server.calls("SaveKernel") == []


# --- (c) server-side errors ---


def push_kernel_folder(tmp_path: Path) -> Path:
    from kitlib.release.kernels import render_kernel_metadata

    out = tmp_path / "build" / "kernels" / "infer"
    render_kernel_metadata(kernel_tree(tmp_path) / "infer", "tester", DATASETS, out)
    return out


def test_kernel_push_error_in_the_response_body_raises_with_the_server_message(server, tmp_path):
    folder = push_kernel_folder(tmp_path)
    server.override("SaveKernel", {"error": "Notebook slug already in use by another user"})
    env = server.env(tmp_path / "home")
    code = f"from pathlib import Path; from kitlib.kaggle import api; api.push_kernel(Path({str(folder)!r}))"
    last = failed(run_python(code, env))
    assert last.startswith("kitlib.kaggle.errors.KaggleError")
    assert "Notebook slug already in use by another user" in last

    # the trap this guards against: the real CLI prints the same error and exits 0
    cli = run_python(f"import sys; sys.argv = ['kaggle', 'kernels', 'push', '-p', {str(folder)!r}]; "
                     "from kaggle.cli import main; main()", env)
    assert cli.returncode == 0 and "Kernel push error: Notebook slug already in use" in cli.stdout


def test_rejected_dataset_source_is_an_error(server, tmp_path):
    folder = push_kernel_folder(tmp_path)
    server.override("SaveKernel", {"versionNumber": 7, "url": "u", "invalidDatasetSources": [DATASETS[2]]})
    code = f"from pathlib import Path; from kitlib.kaggle import api; api.push_kernel(Path({str(folder)!r}))"
    last = failed(run_python(code, server.env(tmp_path / "home")))
    assert "rejected" in last and DATASETS[2] in last


def test_http_error_carries_status_and_server_message(server, tmp_path):
    folder = dataset_folder(tmp_path / "ds", {"a.txt": b"a"})
    server.state.datasets["tester/motor-kit-src"] = server_dataset(1)
    server.fail("CreateDatasetVersion", "Dataset is locked by another upload", status=409)
    last = failed(run_python(push_dataset_code(folder, "m"), server.env(tmp_path / "home")))
    assert "new version of dataset tester/motor-kit-src: HTTP 409: Dataset is locked by another upload" in last


def test_failed_upload_is_an_error_although_the_client_carries_on(server, tmp_path):
    folder = dataset_folder(tmp_path / "ds", {"a.txt": b"a"})
    server.fail("PUT", "signature expired", status=403)
    last = failed(run_python(push_dataset_code(folder, "m"), server.env(tmp_path / "home")))
    assert "upload failed for ['a.txt'] (HTTP 403: signature expired)" in last  # the server's words, not only "failed"
    assert server.calls("CreateDataset")[0].body.get("files", []) == []  # what the client sent regardless


def test_dataset_processing_failure_and_timeout_raise(server, tmp_path):
    folder = dataset_folder(tmp_path / "ds", {"a.txt": b"a"})
    env = server.env(tmp_path / "home")
    server.state.polls_until_ready = 10_000
    last = failed(run_python(push_dataset_code(folder, "m", timeout_s=0.5), env))
    assert "tester/motor-kit-src: not ready after 0.5 s (last: blobs_received" in last

    server.override("GetDatasetStatus", {"status": "FAILED"})
    last = failed(run_python(push_dataset_code(folder, "m"), env))
    assert "processing ended 'failed'" in last


def test_status_error_exits_nonzero_with_failure_message(server, tmp_path):
    server.state.kernel_statuses = [("ERROR", "CUDA out of memory")]
    code = "from kitlib.release import commands; commands.kernel_status_cmd('tester/motor-kit-infer')"
    proc = run_python(code, server.env(tmp_path / "home"))
    assert "tester/motor-kit-infer: error (CUDA out of memory)" in proc.stdout
    assert "kernel tester/motor-kit-infer ended error: CUDA out of memory" in failed(proc)

    server.fail("GetKernelSessionStatus", "backend unavailable", status=503)
    assert "HTTP 503: backend unavailable" in failed(run_python(code, server.env(tmp_path / "home")))


# --- (e) status / output / submit / submissions round trips ---


def test_wait_kernel_polls_until_complete(server, tmp_path):
    server.state.kernel_statuses = [("QUEUED", None), ("RUNNING", None), ("COMPLETE", None)]
    code = "from kitlib.kaggle import api; print(api.wait_kernel('tester/motor-kit-infer', 30, poll_s=0.02))"
    assert "('complete', None)" in ok(run_python(code, server.env(tmp_path / "home")))
    calls = server.calls("GetKernelSessionStatus")
    assert len(calls) == 3 and calls[0].body == {"userName": "tester", "kernelSlug": "motor-kit-infer"}


def test_kernel_output_downloads_files_and_log(server, tmp_path):
    server.state.outputs = {"submission.csv": b"tomo_id,Motor axis 0\nt1,-1\n", "timing.json": b"{}"}
    server.state.log = "[1.0s] done\n"
    dest = tmp_path / "out"
    code = (
        "from pathlib import Path; from kitlib.release import commands\n"
        f"commands.kernel_output_cmd('tester/motor-kit-infer', dest=Path({str(dest)!r}))"
    )
    out = ok(run_python(code, server.env(tmp_path / "home")))
    assert (dest / "submission.csv").read_bytes() == server.state.outputs["submission.csv"]
    assert (dest / "timing.json").read_bytes() == b"{}"
    assert (dest / "motor-kit-infer.log").read_text() == "[1.0s] done\n"
    assert str(dest / "submission.csv") in out


def test_submit_last_pushed_version_after_it_completed(server, tmp_path):
    build = tmp_path / "build"
    record = {"ref": "tester/motor-kit-infer", "version": 3, "url": "u", "kit_version": "abc1234"}
    (build / "kernels" / "infer").mkdir(parents=True)
    (build / "kernels" / "infer" / "pushed.json").write_text(json.dumps(record))
    code = (
        "from pathlib import Path; from kitlib.release import commands\n"
        f"commands.submit_cmd('infer', build=Path({str(build)!r}), project=Path({str(tmp_path / 'runs')!r}))"
    )
    env = server.env(tmp_path / "home")

    server.state.kernel_statuses = [("RUNNING", None)]
    assert "version 3 is running" in failed(run_python(code, env))
    assert server.calls("CreateCodeSubmission") == []

    server.state.kernel_statuses = [("COMPLETE", None)]
    assert "submission 4242" in ok(run_python(code, env))
    (submit,) = server.calls("CreateCodeSubmission")
    assert submit.body == {
        "competitionName": COMPETITION_SLUG,
        "kernelOwner": "tester",
        "kernelSlug": "motor-kit-infer",
        "kernelVersion": 3,
        "fileName": "submission.csv",
        "submissionDescription": "tester/motor-kit-infer v3 kit abc1234",
    }


def test_submissions_table(server, tmp_path):
    server.state.submissions = [
        {"ref": 2, "date": "2025-06-02T09:30:00.000Z", "description": "tester/motor-kit-infer v3 kit abc1234",
         "status": "COMPLETE", "publicScore": "0.8412", "privateScore": "0.8301"},
        {"ref": 1, "date": "2025-06-01T08:00:00.000Z", "description": "first", "status": "ERROR",
         "errorDescription": "Notebook Threw Exception"},
    ]
    code = ("from pathlib import Path; from kitlib.release import commands\n"
            f"commands.submissions_cmd(Path({str(tmp_path)!r}))")
    lines = ok(run_python(code, server.env(tmp_path / "home"))).splitlines()
    assert lines[0].split() == ["date", "description", "status", "public", "private", "error"]
    assert lines[2].split() == ["2025-06-02", "09:30", "tester/motor-kit-infer", "v3", "kit", "abc1234", "complete",
                                "0.8412", "0.8301"]
    assert lines[3].split() == ["2025-06-01", "08:00", "first", "error", "Notebook", "Threw", "Exception"]
    assert lines[3].index("Notebook Threw Exception") == lines[0].index("error", lines[0].index("private"))
    assert server.calls("ListSubmissions")[0].body["competitionName"] == COMPETITION_SLUG


# --- (d) no credentials: a clear message and nothing sent ---


def test_missing_credentials_send_nothing(server, tmp_path):
    env = server.env(tmp_path / "home")
    del env["KAGGLE_USERNAME"], env["KAGGLE_KEY"]
    folder = dataset_folder(tmp_path / "ds", {"a.txt": b"a"})
    proc = run_python(push_dataset_code(folder, "m"), env)
    assert proc.returncode != 0
    assert "KaggleSetupError: No Kaggle credentials found; nothing was sent to Kaggle" in proc.stderr
    assert f"{tmp_path / 'home' / '.config' / 'kaggle' / 'kaggle.json'} (missing)" in proc.stderr
    assert "chmod 600" in proc.stderr
    assert server.requests == []
