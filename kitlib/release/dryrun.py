"""`make dry-run`: run a kernel of `kernels/` locally the way Kaggle runs it, then validate and score its output.

Real: the kernel script, unchanged (copied by `render_kernel_metadata`, which also checks its metadata template), and
when it is cut into `# %%` cells, its notebook form as `make push-kernel NOTEBOOK=1` pushes it; the three bundles as
`kitlib.release.bundle` builds them; JPEG tomograms in the competition's exact layout (synthetic, size tiny); the
Kaggle mount layout `<root>/input/competitions/<slug>/`, `<root>/input/datasets/<owner>/<slug>/`, `<root>/working/`
(the script runs in `working/`, with `KIT_KAGGLE_ROOT=<root>`).

Simulated:
- the Kaggle image: a fresh venv of this Python whose site-packages reach, through a `.pth` line, a folder of links to
  this `.venv`'s packages *minus* the distributions the wheels bundle carries and kitlib. torch, numpy, opencv,
  polars, pillow, ... play Kaggle's preinstalled packages (at this venv's versions, not Kaggle's); ultralytics and the
  rest of the wheels bundle must come from the bundle through the kernel's `pip install --no-index`.
  `reuse_venv=True` runs the kernel with this venv instead (it already holds every pin, so nothing is installed).
- no network: the kernel runs under `unshare -rn` (an empty network namespace) where this machine allows it, else
  with a `sitecustomize.py` on PYTHONPATH that makes every socket connect / name lookup raise.
- Kaggle's Jupyter executor, for the notebook form (the image venv has no Jupyter): the notebook's code cells run as
  Kaggle runs them, top to bottom in one fresh interpreter of the image venv (`NOTEBOOK_RUNNER`), in the same Kaggle
  root with a fresh `working/` (the script's outputs move to `<workspace>/script-working/`); a cell that raises,
  SystemExit included (a notebook cell cannot exit quietly), fails the run.
- no GPU and no 12-hour limit (the kernel's own `KIT_BUDGET_S` applies); the scoring rerun is not simulated.
- a clean environment (`kernel_environment`): PATH, an empty HOME, LANG, TMPDIR, the KIT_* settings and the guard's
  variables; none of the user's KAGGLE_* variables (the API key), tokens or keys reach the kernel.
- `test_solution.csv` is kept outside the mounted competition folder, as Kaggle keeps the hidden labels.

Bundles: those already built under `bundles` (default `build/datasets/`, i.e. what `make push-dataset` would upload)
are used as they are; missing ones are built into the workspace: `src` from the working tree, `wheels` with
`pip download` (cached in `build/dryrun/cache/wheels`, reused while the pins are unchanged), `weights` as an untrained
scale-n z-head checkpoint (`kitlib.testing.tiny_run`), which makes the run a plumbing check whose score means nothing.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from kitlib.config import COMPETITION_SLUG
from kitlib.data.errors import DataError
from kitlib.release import bundle
from kitlib.release.kernels import render_kernel_metadata
from kitlib.release.manifest import read_requirements
from kitlib.release.notebook import has_cells
from kitlib.testing import tiny_run
from kitlib.version import installed_version

DRYRUN = bundle.REPO_ROOT / "build" / "dryrun"
OWNER = "dry-run"
SOCKET_GUARD = '''"""Dry-run network guard: every connection or name lookup raises."""
import socket


def _refuse(*args, **kwargs):
    raise OSError("network access attempted in a Kaggle dry run (internet is off)")


socket.socket.connect = socket.socket.connect_ex = socket.create_connection = socket.getaddrinfo = _refuse
'''
NOTEBOOK_RUNNER = '''"""Dry-run stand-in for Kaggle's Jupyter executor: the code cells of the notebook sys.argv[1], in
order, in one interpreter and one namespace. A cell that raises (SystemExit too) fails the run."""
import json
import sys
import traceback

with open(sys.argv[1]) as f:
    cells = [cell for cell in json.load(f)["cells"] if cell["cell_type"] == "code"]
namespace = {"__name__": "__main__"}
for n, cell in enumerate(cells, 1):
    try:
        exec(compile("".join(cell["source"]), f"<cell {n}>", "exec"), namespace)
    except BaseException as e:
        traceback.print_exc()
        print(f"notebook cell {n} of {len(cells)} failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
'''
IMAGE_PTH = "kaggle_image.pth"
WORKSPACE_MARKER = ".kit-dryrun"  # marks a folder a dry run made: the next dry run may replace it
_LEGACY_ENTRIES = {"bundles", "kaggle", "venv", "code", "config", "socket-guard", "tiny-run"}  # before the marker
KERNEL_ENV = {"train": {"KIT_PRESET": "cpu", "KIT_EPOCHS": "1"}}  # a dry run trains one CPU epoch
PASSED_ENV = ("LANG", "LC_ALL", "TZ", "TMPDIR", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")  # besides KIT_*
SECRET_NAME = re.compile(r"KAGGLE|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|API_?KEY|(^|_)KEY(S)?($|_)", re.IGNORECASE)


@dataclass
class DryRun:
    """Where a dry run ran and what it found."""

    root: Path
    log: Path
    network: str
    image: str
    seconds: float
    summary: dict | None = None  # the metric's summary of the submission (infer kernel)
    notebook_log: Path | None = None  # the notebook form's run, when the script has `# %%` cells
    notebook_summary: dict | None = None


# --- bundles ---------------------------------------------------------------------------------------------------------


def wheels_from_venv(dest: Path) -> Path:
    """Re-pack this venv's installed pinned distributions (all pure Python) as wheels in `dest`: an offline
    stand-in for the package index, for tests and machines without one. Pass the folder as `find_links`."""
    dest.mkdir(parents=True, exist_ok=True)
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    for name, version in bundle.pinned_wheels().items():
        dist = importlib.metadata.distribution(name)
        if dist.version != version:
            raise DataError(f"{sys.prefix}: {name} {dist.version} installed, the bundle pins {version}")
        files = sorted((f for f in dist.files or [] if f.parts[0] != ".." and "__pycache__" not in f.parts
                        and f.name not in skip), key=lambda f: f.as_posix())
        entries = [(f.as_posix(), Path(dist.locate_file(f)).read_bytes()) for f in files]
        dist_info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
        bundle.write_wheel(dest / f"{dist_info.removesuffix('.dist-info')}-py3-none-any.whl", entries, dist_info)
    return dest


def _cached_wheels(cache: Path) -> Path:
    """The wheels bundle from `cache`, rebuilt with `pip download` when the pins changed."""
    pins = bundle.pinned_wheels()
    if (cache / bundle.MANIFEST_FILE).is_file() and read_requirements(cache) == pins:
        return cache
    print(f"pip download {pins} -> {cache} (cached for later dry runs)", flush=True)
    return bundle.build_wheels(OWNER, cache)


def resolve_bundles(bundles: Path, work: Path, tiny: bool = False, cache: Path = DRYRUN / "cache") -> dict[str, Path]:
    """name -> folder of each of the three datasets: `bundles/<name>` when built, else built into `work`."""
    found = {}
    for name in bundle.DATASET_NAMES:
        built, how = bundles / name, "built now"
        if (built / bundle.MANIFEST_FILE).is_file() and not (tiny and name == "weights"):
            found[name], how = built, "as built"
        elif name == "src":
            found[name] = bundle.build_src(OWNER, work / "src")
        elif name == "wheels":
            found[name], how = _cached_wheels(cache / "wheels"), "pip download, cached"
        else:
            found[name] = bundle.build_weights(OWNER, work / "weights", tiny_run(work / "tiny-run"))
            how = "an untrained tiny model: the score means nothing"
        print(f"{name:7s} {found[name]} ({how})", flush=True)
    if bundle.read_manifest(found["src"])["kit_version"] != bundle.version_stamp():
        print(f"note: {found['src']} was built from another version than the working tree", flush=True)
    return found


def stage_root(root: Path, bundles: dict[str, Path], n_test: int = 4, seed: int = 0, legacy: bool = False) -> Path:
    """A Kaggle root: synthetic competition data, the bundles mounted as datasets, an empty `working/`.

    `legacy`: the older mounts `input/<competition>/` and `input/<dataset>/` instead of `input/competitions/<slug>/`
    and `input/datasets/<owner>/<slug>/`."""
    from kitlib.data.synth import synthesize

    comp = root / "input" / ("" if legacy else "competitions") / COMPETITION_SLUG
    synthesize(comp, n_train=8, n_test=n_test, size="tiny", seed=seed)  # 8: each of 3 folds has a motor (train)
    (root / "solution").mkdir(parents=True)
    shutil.move(comp / "test_solution.csv", root / "solution" / "test_solution.csv")
    for name, folder in bundles.items():
        owner = bundle.read_manifest(folder)["dataset"].split("/")[0]
        mount = root / "input" / ("" if legacy else f"datasets/{owner}") / bundle.dataset_slug(name)
        shutil.copytree(folder, mount)
    (root / "working").mkdir()
    return root


# --- the simulated image, the network guard --------------------------------------------------------------------------


def _top_level(dist_name: str) -> set[str]:
    """Top-level entries of site-packages that belong to an installed distribution."""
    files = importlib.metadata.distribution(dist_name).files or []
    return {f.parts[0] for f in files if f.parts[0] not in ("..", "__pycache__")}


def image_venv(dest: Path, carried: list[str]) -> Path:
    """A fresh venv seeing this venv's packages except the `carried` distributions and kitlib; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    hidden = set().union(*(_top_level(name) for name in [*carried, "kitlib"]))
    site = Path(sysconfig.get_paths()["purelib"])
    image = dest / "image-site-packages"
    image.mkdir()
    for entry in sorted(site.iterdir()):
        if entry.name not in hidden and entry.suffix != ".pth" and entry.name != "__pycache__":
            (image / entry.name).symlink_to(entry)
    python = dest / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    (Path(venv_site) / IMAGE_PTH).write_text(f"{image}\n")
    return python


def network_guard(work: Path) -> tuple[list[str], dict[str, str], str]:
    """(command prefix, extra environment, description) that cut the kernel off the network."""
    try:
        if subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=30).returncode == 0:
            return ["unshare", "-rn"], {}, "none (unshare -n: empty network namespace)"
    except (OSError, subprocess.SubprocessError):
        pass
    guard = work / "socket-guard"
    guard.mkdir(parents=True, exist_ok=True)
    (guard / "sitecustomize.py").write_text(SOCKET_GUARD)
    return [], {"PYTHONPATH": str(guard)}, "none (socket guard: sitecustomize makes connect/getaddrinfo raise)"


# --- running and checking --------------------------------------------------------------------------------------------


def _run_streamed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, timeout_s: float) -> int:
    """Run `cmd`, echoing its output and writing it to `log`; returns the exit code (124 on timeout)."""
    started = time.monotonic()
    with log.open("w") as out, subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            print(f"  | {line}", end="", flush=True)
            out.write(line)
            if time.monotonic() - started > timeout_s:
                proc.kill()
                return 124
        return proc.wait()


def check_submission(root: Path) -> dict:
    """Validate `working/submission.csv` against the sample submission and score it against the hidden solution."""
    import polars as pl

    from kitlib.data.layout import CompetitionData
    from kitlib.data.submission import read_submission, validate_submission
    from kitlib.metric import breakdown, summarize

    mounts = [root / "input" / "competitions" / COMPETITION_SLUG, root / "input" / COMPETITION_SLUG]
    data = CompetitionData(next((m for m in mounts if m.is_dir()), mounts[0]))
    path = root / "working" / "submission.csv"
    if not path.is_file():
        raise DataError(f"{path}: the kernel wrote no submission")
    submission = validate_submission(read_submission(path), data.submission_ids(), source=path)
    solution = pl.read_csv(root / "solution" / "test_solution.csv", schema_overrides={"tomo_id": pl.String})
    return summarize(breakdown(solution, submission))


def check_train_output(root: Path, fold: int = 0) -> dict:
    """The train kernel's `working/fold<k>.pt` loads as a kit checkpoint."""
    from kitlib.model.build import load_kit_checkpoint

    return load_kit_checkpoint(root / "working" / f"fold{fold}.pt")[1]


def kernel_environment(
    python: Path,
    root: Path,
    work: Path,
    kernel: str,
    guard_env: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    parent: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The kernel's environment, built from nothing as on Kaggle rather than inherited from `parent` (default: this
    process's): PATH with the image's `python` first, HOME an empty `work/home`, LANG (default C.UTF-8), and of
    `parent` only PASSED_ENV and the KIT_* settings; then the network guard's `guard_env`, KIT_KAGGLE_ROOT,
    YOLO_CONFIG_DIR, the kernel's dry-run settings and `env`. Nothing of `parent` whose name says KAGGLE, token, key,
    secret, password or auth passes: the user's KAGGLE_KEY stays out of the kernel."""
    parent = os.environ if parent is None else parent
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    passed = {k: v for k, v in parent.items() if (k in PASSED_ENV or k.startswith("KIT_")) and v}
    kernel_env = {k: v for k, v in passed.items() if not SECRET_NAME.search(k)}
    kernel_env.setdefault("LANG", "C.UTF-8")
    kernel_env.update(guard_env, PATH=f"{python.parent}{os.pathsep}{parent.get('PATH') or os.defpath}",
                      HOME=str(home), KIT_KAGGLE_ROOT=str(root), YOLO_CONFIG_DIR=str(work / "config"),
                      **KERNEL_ENV.get(kernel, {}), **(env or {}))
    return kernel_env


def dry_run(
    kernel: str = "infer",
    bundles: Path = bundle.REPO_ROOT / "build" / "datasets",
    out: Path | None = None,
    reuse_venv: bool = False,
    tiny: bool = False,
    n_test: int = 4,
    env: dict[str, str] | None = None,
    timeout_s: float = 1800,
    kernels: Path = bundle.REPO_ROOT / "kernels",
) -> DryRun:
    """Run `kernels/<kernel>` in a fresh simulated Kaggle root under `out` (default `build/dryrun/<kernel>`, replaced),
    then check its output; a script cut into `# %%` cells runs a second time as its notebook form, checked the same
    way. Raises `DataError` on any failure. `env` adds to the kernel's clean environment (`kernel_environment`)."""
    started = time.perf_counter()
    work = (out or DRYRUN / kernel).resolve()
    if work.exists():
        _check_workspace(work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / WORKSPACE_MARKER).write_text(f"dry run of kernels/{kernel}\n")
    print(f"== dry run of kernels/{kernel} in {work}", flush=True)
    found = resolve_bundles(bundles, work / "bundles", tiny=tiny)
    root = stage_root(work / "kaggle", found, n_test=n_test)
    ids = [f"{bundle.read_manifest(found[n])['dataset'].split('/')[0]}/{bundle.dataset_slug(n)}" for n in found]
    code = render_kernel_metadata(kernels / kernel, OWNER, ids, work / "code").parent
    script = code / json.loads((code / "kernel-metadata.json").read_text())["code_file"]

    pins = read_requirements(found["wheels"])
    carried = sorted(pins)
    if reuse_venv:
        stale = [n for n in carried if installed_version(n) != pins[n]]
        if stale:
            raise DataError(f"{sys.prefix}: --reuse-venv needs this venv to hold the bundle's pins; differs: {stale}")
        python, image = Path(sys.executable), f"this venv ({sys.prefix}), reused"
    else:
        python = image_venv(work / "venv", carried)
        image = f"fresh venv {work / 'venv'} + this venv's packages except {carried} and kitlib"
    prefix, guard_env, network = network_guard(work)
    kernel_env = kernel_environment(python, root, work, kernel, guard_env, env)
    print(f"image:   {image}\nnetwork: {network}\nrun:     {python} {script} (cwd {root / 'working'})", flush=True)
    result = DryRun(root, work / f"{kernel}.log", network, image, 0.0)
    result.summary = _run_form(kernel, [*prefix, str(python), str(script)], root, kernel_env, result.log, timeout_s)
    if has_cells(script.read_text()):
        shutil.move(root / "working", work / "script-working")
        (root / "working").mkdir()
        meta = render_kernel_metadata(kernels / kernel, OWNER, ids, work / "notebook", notebook=True)
        runner = work / "notebook_runner.py"
        runner.write_text(NOTEBOOK_RUNNER)
        cmd = [*prefix, str(python), str(runner), str(meta.parent / json.loads(meta.read_text())["code_file"])]
        print(f"== the notebook form: {cmd[-1]}, its code cells in order in one interpreter", flush=True)
        result.notebook_log = work / f"{kernel}-notebook.log"
        result.notebook_summary = _run_form(kernel, cmd, root, kernel_env, result.notebook_log, timeout_s)
    result.seconds = round(time.perf_counter() - started, 1)
    return result


def _run_form(kernel: str, cmd: list[str], root: Path, env: dict[str, str], log: Path,
              timeout_s: float) -> dict | None:
    """Run one form of the kernel (`cmd`, its code file last) in `root/working`, then check what it wrote: the
    submission's summary (infer kernel), None (train kernel: its checkpoint loads)."""
    rc = _run_streamed(cmd, root / "working", env, log, timeout_s)
    if rc != 0:
        raise DataError(f"{cmd[-1]}: the kernel exited with code {rc}; log: {log}")
    if kernel == "train":
        print(f"train output: {check_train_output(root)}")
        return None
    return check_submission(root)


def _check_workspace(work: Path) -> None:
    """DataError unless `work` may be replaced: empty, or an earlier dry run's workspace."""
    entries = {e.name for e in work.iterdir()} if work.is_dir() else {"(a file)"}
    ours = (work / WORKSPACE_MARKER).is_file() or all(e in _LEGACY_ENTRIES or e.endswith(".log") for e in entries)
    if not ours:
        raise DataError(f"{work}: not an earlier dry run's workspace (holds {sorted(entries)[:5]}): "
                        f"choose a new or empty folder for --out")


def format_result(result: DryRun) -> str:
    """The closing lines of a dry run."""
    lines = [f"image:   {result.image}", f"network: {result.network}", f"log:     {result.log}"]
    lines += [_summary_line(result.summary)] if result.summary is not None else []
    if result.notebook_log is not None:
        lines.append(f"notebook form, log: {result.notebook_log}")
        lines += [_summary_line(result.notebook_summary)] if result.notebook_summary is not None else []
    lines.append(f"dry run passed in {result.seconds:.1f} s")
    return "\n".join(lines)


def _summary_line(s: dict) -> str:
    return (f"submission valid: {s['n_tomograms']} rows; F2 against the synthetic solution {s['f2']:.4f} "
            f"(TP={s['tp']} FP={s['fp']} FN={s['fn']} TN={s['tn']})")
