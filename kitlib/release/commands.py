"""One function per Makefile target, for `python -m kitlib <command>`: print for a person, raise on failure.

Failures raise `KaggleError` (the server said no, or did not answer), `KaggleSetupError` (no credentials; nothing
sent) or `DataError` (bad local input). Paths default to the repository: templates in `datasets/` and `kernels/`,
outputs in `build/datasets/<name>/` and `build/kernels/<name>/` (with `pushed.json` after a push), competition data in
`data/<slug>/`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from kitlib.config import COMPETITION_SLUG
from kitlib.data.errors import DataError
from kitlib.kaggle import api
from kitlib.kaggle.errors import KaggleError
from kitlib.release import bundle, runs
from kitlib.release.kernels import kernel_variant, render_kernel_metadata
from kitlib.run import DEFAULT_PROJECT

BUILD = bundle.REPO_ROOT / "build"
KERNELS = bundle.REPO_ROOT / "kernels"
PUSHED_FILE = "pushed.json"
DATA = bundle.REPO_ROOT / "data"
LABELS_FILE = "train_labels.csv"
PARTIAL_SUFFIX = ".partial"  # `.<dest name>.<random>.partial`: a download in progress beside its destination


def bundle_cmd(
    names: Sequence[str] = bundle.DATASET_NAMES,
    run: Path | None = None,
    weights: list[Path] | None = None,
    find_links: Path | None = None,
    python_tag: str = bundle.DEFAULT_PYTHON_TAG,
    platforms: Iterable[str] = bundle.DEFAULT_PLATFORMS,
    prefix: str = bundle.DEFAULT_PREFIX,
    build: Path = BUILD,
) -> int:
    """`make bundle`: build the named datasets under `build/datasets/` (weights need `run`)."""
    if "weights" in names and run is None:
        raise DataError("weights: the weights bundle needs a run folder (--run runs/<name>)")
    user = api.username()
    for name in names:
        out = build / "datasets" / name
        if name == "src":
            bundle.build_src(user, out, prefix=prefix)
        elif name == "wheels":
            bundle.build_wheels(user, out, prefix=prefix, find_links=find_links, python_tag=python_tag,
                                platforms=platforms)
        else:
            bundle.build_weights(user, out, run, weights, prefix=prefix)
            print(f"weights bundle {runs.record_bundle(out, run)} of run {run} (recorded in its releases.json)")
        manifest = bundle.read_manifest(out)
        size = sum(f["bytes"] for f in manifest["files"]) / 1e6
        print(f"{manifest['dataset']}: {len(manifest['files'])} files, {size:.1f} MB in {out}")
    return 0


def push_dataset_cmd(
    names: Sequence[str] = bundle.DATASET_NAMES, wait: bool = True, timeout_s: float = 1800, build: Path = BUILD
) -> int:
    """`make push-dataset`: create or version each built dataset (notes name the kit version), wait for `ready`."""
    for name in names:
        folder = build / "datasets" / name
        manifest = bundle.read_manifest(folder)
        message = f"motor-kit {manifest['kit_version']}"
        ref = api.push_dataset(folder, message, wait=wait, timeout_s=timeout_s)
        print(f"{ref}: {'ready' if wait else 'uploaded'} ({message})")
        if name == "weights":
            runs.record_dataset(folder, api.dataset_state(ref)[1] if wait else None)
    return 0


def push_kernel_cmd(
    kernel_name: str, prefix: str = bundle.DEFAULT_PREFIX, kernels: Path = KERNELS, build: Path = BUILD,
    fold: int | None = None, notebook: bool = False,
) -> int:
    """`make push-kernel KERNEL=infer`: render the metadata, check the datasets are ready, push a new version.

    `fold` (`KERNEL=train FOLD=k`): that fold's own kernel, recorded as `<kernel>-fold<k>` (the name
    kernel-status / kernel-output / submit then take); `notebook` (`NOTEBOOK=1`): the notebook form, recorded as
    `<kernel>-notebook`."""
    user = api.username()
    datasets = bundle.dataset_ids(user, prefix)
    versions = {}
    for ref in datasets:
        state = api.dataset_state(ref)
        if state is None or state[0] != "ready":
            raise KaggleError(f"dataset {ref} is {state[0] if state else 'missing'}: run `make push-dataset` first")
        versions[ref] = state[1]
    out = build / "kernels" / kernel_variant(kernel_name, fold, notebook)
    render_kernel_metadata(kernels / kernel_name, user, datasets, out, fold=fold, notebook=notebook)
    pushed = api.push_kernel(out)
    weights_version = versions[datasets[bundle.DATASET_NAMES.index("weights")]]
    record = {
        "ref": pushed.ref,
        "version": pushed.version,
        "url": pushed.url,
        "kit_version": bundle.version_stamp(),
        "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "datasets": versions,
        "weights": runs.record_kernel(build / "datasets" / "weights", weights_version, pushed.ref, pushed.version),
    }
    (out / PUSHED_FILE).write_text(json.dumps(record, indent=2) + "\n")
    print(f"pushed {pushed.ref} version {pushed.version}: {pushed.url}")
    return 0


def _pushed(kernel: str, build: Path) -> dict:
    path = build / "kernels" / kernel / PUSHED_FILE
    if not path.is_file():
        raise DataError(f"{path}: no record of a push; run `make push-kernel KERNEL={kernel}` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: unreadable ({e}); push the kernel again") from e


def kernel_ref(kernel: str, build: Path = BUILD) -> str:
    """`kernel` itself when it is `owner/slug`, else the ref of the last push of kernels/<kernel>."""
    return kernel if "/" in kernel else _pushed(kernel, build)["ref"]


def kernel_status_cmd(kernel: str, wait: bool = False, timeout_s: float = 12 * 3600, build: Path = BUILD) -> int:
    """`make kernel-status`: print the latest version's status; a failed or cancelled run raises."""
    ref = kernel_ref(kernel, build)
    status, failure = api.wait_kernel(ref, timeout_s) if wait else api.kernel_status(ref)
    print(f"{ref}: {status}" + (f" ({failure})" if failure else ""))
    if status == "error" or status.startswith("cancel"):
        raise KaggleError(f"kernel {ref} ended {status}: {failure or 'no failure message'}")
    return 0


def kernel_output_cmd(kernel: str, dest: Path | None = None, build: Path = BUILD) -> int:
    """`make kernel-output`: download the latest version's outputs and log to `build/kernels/<name|slug>/output/`."""
    ref = kernel_ref(kernel, build)
    dest = dest or build / "kernels" / kernel.split("/")[-1] / "output"
    paths = api.kernel_output(ref, dest)
    for path in paths:
        print(path)
    print(f"{ref}: {len(paths)} files in {dest}")
    return 0


def submit_cmd(kernel: str, version: int | None = None, message: str | None = None, build: Path = BUILD,
               project: Path = DEFAULT_PROJECT) -> int:
    """`make submit`: submit a kernel version (default: the last pushed, which must have completed); the run whose
    weights that version mounted records the submission (`kitlib.release.runs`)."""
    if version is None:
        if "/" in kernel:
            raise DataError(f"{kernel}: name the version to submit")
        record = _pushed(kernel, build)
        ref, version = record["ref"], int(record["version"])
        status, failure = api.kernel_status(ref)
        if status != "complete":
            raise KaggleError(f"kernel {ref} version {version} is {status} ({failure or 'not complete'}): "
                              "submit once `make kernel-status` says complete")
        message = message or f"{ref} v{version} kit {record['kit_version']}"
    else:
        ref = kernel_ref(kernel, build)
    message = message or f"{ref} v{version}"
    result = api.submit(ref, version, message)
    print(f"submitted {ref} version {version} (submission {result.ref}): {result.message}")
    linked = None if "/" in kernel else (_pushed(kernel, build).get("weights") or {}).get("run")
    run = runs.record_submission(ref, version, result.ref, message, project, linked)
    if run is not None:
        print(f"recorded in {run.releases}")
    return 0


def submissions_cmd(project: Path = DEFAULT_PROJECT) -> int:
    """`make submissions`: the latest submissions with their scores, written into the runs they came from."""
    rows = api.submissions()
    print(api.format_submissions(rows))
    for line in runs.record_scores(rows, project):
        print(line)
    return 0


def _unpack(archive: Path, target: Path) -> tuple[int, int]:
    """Extract `archive` into `target` (zipfile drops absolute and `..` member paths); (files, bytes)."""
    from tqdm import tqdm

    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            size = sum(m.file_size for m in members)
            print(f"unpacking {len(members)} files ({size / 1e6:.1f} MB)", flush=True)
            for member in tqdm(members, unit="file", desc="unpack", mininterval=1.0):
                zf.extract(member, target)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{archive}: cannot unpack: {e}") from e
    return len(members), size


def download_cmd(dest: Path | None = None, slug: str = COMPETITION_SLUG) -> int:
    """`make download`: the competition's data unpacked into `data/<slug>/` (skipped when it holds train_labels.csv).

    The archive is downloaded and unpacked into a temporary `.<name>.*.partial` folder beside `dest`, renamed to
    `dest` only once complete: a failed or interrupted download leaves no half folder, and nothing the user had is
    deleted (an existing `dest` without train_labels.csv is refused unless empty). Needs the competition's rules
    accepted on kaggle.com (else Kaggle answers HTTP 403, shown as the error)."""
    dest = dest or DATA / slug
    if (dest / LABELS_FILE).is_file():
        print(f"{dest}: holds {LABELS_FILE} already; download skipped (remove the folder to download again)")
        return 0
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"{dest}: exists but holds no {LABELS_FILE}; move it away (nothing was changed) and run again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*{PARTIAL_SUFFIX}"):  # left by a killed download
        print(f"removing {stale} (an earlier download that did not finish)")
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=PARTIAL_SUFFIX, dir=dest.parent))
    try:
        print(f"downloading competition {slug} into {work}", flush=True)
        archive = api.download_competition(work / "archive", slug)
        print(f"{archive.name}: {archive.stat().st_size / 1e6:.1f} MB downloaded", flush=True)
        unpacked = work / dest.name
        files, size = _unpack(archive, unpacked)
        archive.unlink()
        if not (unpacked / LABELS_FILE).is_file():
            raise DataError(f"{archive.name}: no {LABELS_FILE} at the top of the archive (not {slug}'s data?)")
        if dest.exists():
            dest.rmdir()  # empty (checked above); fails rather than deletes if something appeared meanwhile
        unpacked.rename(dest)
    except BaseException:
        print(f"download did not finish: removed {work} (nothing else was changed)", flush=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{dest}: {files} files, {size / 1e6:.1f} MB")
    return 0
