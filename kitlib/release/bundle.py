"""Build the three Kaggle datasets a kernel needs, as flat folders under `build/datasets/<name>/`.

Each folder holds its files, a `manifest.json` (name, bytes, sha256 of every file, the kit version) and a
`dataset-metadata.json` rendered from `datasets/<name>/dataset-metadata.template.json`.

- `src`: kitlib as a pure-Python wheel `kitlib-<version>-py3-none-any.whl` plus `VERSION` (git describe, `-dirty`);
  only the files git tracks under kitlib/ (an untracked `kitlib/.env` stays home), every `*.py` outside a checkout.
  Why a wheel: the CLI skips subfolders unless `--dir-mode zip`, and Kaggle unpacks uploaded `.zip`/`.tar` archives
  into folders, so a `kitlib.zip` would not arrive as a zip. `.whl` files arrive as they are. In the kernel either
  `sys.path.insert(0, "<dataset>/kitlib-<version>-py3-none-any.whl")` (zipimport) or
  `pip install --no-index --no-deps <dataset>/kitlib-*.whl`.
- `wheels`: what Kaggle's image lacks (`WHEELS`), fetched with `pip download --no-deps --only-binary=:all:` for the
  kernel's Python and platform, plus `requirements.txt`. In the kernel:
  `pip install --no-index --no-deps --find-links <dataset> -r <dataset>/requirements.txt`
  (`--no-deps`: Kaggle's torch / numpy / opencv stay untouched).
- `weights`: every fold's `weights/best.pt` of a run (renamed `<fold>.pt`), its `presence.json`, `config.yaml` and
  `verifier.pt` when it has one (plain tensors and numbers: copied as it is).
  The checkpoints are sanitized copies: ultralytics stores `git` (root, branch, commit, origin: a remote URL that may
  carry a token) and `train_args` (absolute local paths) in each; credentials leave every URL and absolute paths
  become relative to the run (else their file name), everywhere in the checkpoint. The run's files are not touched.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
import types
import warnings
import zipfile
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit

from kitlib.data.errors import DataError
from kitlib.run import RunDir
from kitlib.release.templates import render_template, write_json
from kitlib.version import version_stamp

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET_NAMES = ("src", "wheels", "weights")
DEFAULT_PREFIX = "motor-kit"
METADATA_FILE = "dataset-metadata.json"
MANIFEST_FILE = "manifest.json"

# What a Kaggle kernel installs from the wheels dataset: name -> version (None: the pin in pyproject.toml).
WHEELS: dict[str, str | None] = {
    "ultralytics": None,
    "ultralytics-thop": "2.2.3",  # `import thop` (FLOPs in model info)
    "ultralytics-platform": "0.1.99",  # imported lazily by ultralytics/__init__.py
    "nvidia-ml-py": "13.615.71",  # `import pynvml` (device selection, logging)
}
DEFAULT_PYTHON_TAG = "cp311"
DEFAULT_PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64")


def dataset_slug(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """`motor-kit-src` for `src`."""
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}: choose from {DATASET_NAMES}")
    return f"{prefix}-{name}"


def dataset_ids(username: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The three `<username>/<slug>` dataset ids, in `DATASET_NAMES` order."""
    return [f"{username}/{dataset_slug(name, prefix)}" for name in DATASET_NAMES]


def _pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e


def pinned_wheels(root: Path = REPO_ROOT) -> dict[str, str]:
    """`WHEELS` with every version resolved (pyproject.toml pins where the table says None)."""
    pins = {}
    for dep in _pyproject(root)["project"]["dependencies"]:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", dep)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    resolved = {}
    for name, version in WHEELS.items():
        if version is None and name not in pins:
            raise DataError(f"{root / 'pyproject.toml'}: {name} must be pinned with == (the wheels bundle ships it)")
        resolved[name] = version or pins[name]
    return resolved


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def check_dataset_metadata(meta: dict[str, Any], path: Path, dataset_id: str) -> None:
    """The checks `kaggle datasets create` makes, done before any upload."""
    problems = []
    if meta.get("id") != dataset_id:
        problems.append(f"id must be {dataset_id!r} (got {meta.get('id')!r}); use \"{{username}}/{{slug}}\"")
    slug = dataset_id.split("/")[1]
    if not 6 <= len(slug) <= 50 or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug):
        problems.append(f"slug {slug!r} must be 6-50 characters of a-z, 0-9 and single hyphens")
    if not 6 <= len(meta.get("title") or "") <= 50:
        problems.append(f"title {meta.get('title')!r} must be 6-50 characters")
    if len(meta.get("licenses") or []) != 1 or "name" not in meta["licenses"][0]:
        problems.append('licenses must hold exactly one {"name": ...}')
    if meta.get("subtitle") and not 20 <= len(meta["subtitle"]) <= 80:
        problems.append(f"subtitle must be 20-80 characters (got {len(meta['subtitle'])})")
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))


def _finish(
    folder: Path, name: str, username: str, prefix: str, root: Path, extra: dict[str, Any], stamp: str
) -> Path:
    """Write manifest.json and dataset-metadata.json into a filled dataset folder."""
    slug = dataset_slug(name, prefix)
    files = sorted(p for p in folder.iterdir() if p.name not in (MANIFEST_FILE, METADATA_FILE))
    if any(p.is_dir() for p in files):
        raise DataError(f"{folder}: a dataset folder must be flat (the CLI skips subfolders)")
    manifest = {
        "dataset": f"{username}/{slug}",
        "kit_version": stamp,
        "files": [{"name": p.name, "bytes": p.stat().st_size, "sha256": sha256(p)} for p in files],
        **extra,
    }
    write_json(folder / MANIFEST_FILE, manifest)
    template = root / "datasets" / name / "dataset-metadata.template.json"
    meta = render_template(template, {"username": username, "slug": slug})
    check_dataset_metadata(meta, template, f"{username}/{slug}")
    write_json(folder / METADATA_FILE, meta)
    return folder


# --- src ---------------------------------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _python_sources(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)


def kitlib_files(root: Path) -> list[Path]:
    """What the src wheel packs of `root/kitlib`: the files git tracks (`git ls-files kitlib`), so nothing a user
    left there (a `.env`, keys, scratch data) ships; outside a git checkout every `*.py` file (and only those)."""
    package = root / "kitlib"
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", "kitlib"], cwd=root, capture_output=True, timeout=30,
                             check=True)
        tracked = sorted({root / name for name in out.stdout.decode().split("\0") if name})
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
        tracked = []
    if not tracked:
        return _python_sources(package)
    files = [p for p in tracked if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]
    untracked = sorted(set(_python_sources(package)) - set(files))
    if untracked:
        names = [p.relative_to(root).as_posix() for p in untracked]
        warnings.warn(f"{root}: not packed, git does not track {names} (git add them if the kernel needs them)",
                      stacklevel=2)
    return files


def build_kitlib_wheel(root: Path, out_dir: Path) -> Path:
    """A pure-Python wheel of `root/kitlib` (`kitlib_files`), byte-identical for identical sources."""
    version = _pyproject(root)["project"]["version"]
    entries: list[tuple[str, bytes]] = [(p.relative_to(root).as_posix(), p.read_bytes()) for p in kitlib_files(root)]
    dist_info = f"kitlib-{version}.dist-info"
    entries.append((f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: kitlib\nVersion: {version}\n".encode()))
    wheel_meta = "Wheel-Version: 1.0\nGenerator: kitlib.release.bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries.append((f"{dist_info}/WHEEL", wheel_meta.encode()))
    return write_wheel(out_dir / f"kitlib-{version}-py3-none-any.whl", entries, dist_info)


def write_wheel(path: Path, entries: list[tuple[str, bytes]], dist_info: str) -> Path:
    """Zip `(name, bytes)` entries as a wheel at `path`, adding `<dist_info>/RECORD`; byte-identical for identical
    entries."""
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    entries = [*entries, (f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode())]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def build_src(username: str, out: Path, root: Path = REPO_ROOT, prefix: str = DEFAULT_PREFIX) -> Path:
    """The `src` dataset: kitlib wheel + VERSION."""
    folder = _fresh(out)
    stamp = version_stamp(root)
    wheel = build_kitlib_wheel(root, folder)
    (folder / "VERSION").write_text(stamp + "\n")
    return _finish(folder, "src", username, prefix, root, {"wheel": wheel.name}, stamp)


# --- wheels ------------------------------------------------------------------------------------------------------


def _pip_target_args(python_tag: str, platforms: Iterable[str]) -> list[str]:
    m = re.fullmatch(r"(cp|pp)(\d)(\d+)", python_tag)
    if not m:
        raise ValueError(f"python tag {python_tag!r}: expected e.g. cp311")
    args = ["--implementation", m.group(1), "--python-version", f"{m.group(2)}.{m.group(3)}", "--abi", python_tag]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def _find_wheel(folder: Path, name: str, version: str) -> Path:
    stem = re.sub(r"[-_.]+", "_", name).lower()
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version.lower()}-")]
    if len(found) != 1:
        raise DataError(f"{folder}: expected one wheel of {name}=={version}, found {[p.name for p in found]}")
    return found[0]


def build_wheels(
    username: str,
    out: Path,
    root: Path = REPO_ROOT,
    prefix: str = DEFAULT_PREFIX,
    find_links: Path | None = None,
    python_tag: str = DEFAULT_PYTHON_TAG,
    platforms: Iterable[str] = DEFAULT_PLATFORMS,
) -> Path:
    """The `wheels` dataset. `find_links`: take wheels only from that folder (no package index)."""
    folder = _fresh(out)
    pins = pinned_wheels(root)
    platforms = tuple(platforms)
    source = ["--no-index", "--find-links", str(find_links)] if find_links else []
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        "--dest", str(folder), *_pip_target_args(python_tag, platforms), *source,
        *(f"{name}=={version}" for name, version in pins.items()),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as e:
        raise DataError(f"{find_links or 'package index'}: pip download timed out") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise DataError(f"{find_links or 'package index'}: pip download failed:\n{tail}")
    wheels = [_find_wheel(folder, name, version) for name, version in pins.items()]
    requirements = [f"{name}=={version}" for name, version in pins.items()]
    header = "# pip install --no-index --no-deps --find-links <this folder> -r <this folder>/requirements.txt\n"
    (folder / "requirements.txt").write_text(header + "\n".join(requirements) + "\n")
    extra = {"python_tag": python_tag, "platforms": list(platforms), "wheels": [p.name for p in wheels]}
    return _finish(folder, "wheels", username, prefix, root, extra, version_stamp(root))


# --- weights -----------------------------------------------------------------------------------------------------


_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")
_URL_USERINFO_BYTES = re.compile(_URL_USERINFO.pattern.encode())
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def _strip_url(text: str, drop_query: bool = False) -> str:
    """`text` without user:password@ in any URL it holds (and, for a lone URL with `drop_query`, no query)."""
    text = _URL_USERINFO.sub(r"\g<scheme>", text)
    if drop_query and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+", text):
        parts = urlsplit(text)
        text = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return text


def _local_path(text: str, bases: tuple[PurePath, ...]) -> str:
    """An absolute path made relative to the first of `bases` holding it, else its file name; other text as is."""
    if "\n" in text or not (text.startswith("/") or _WINDOWS_ABSOLUTE.match(text)):
        return text
    path = PurePosixPath(text) if text.startswith("/") else PureWindowsPath(text)
    for base in bases:
        with contextlib.suppress(ValueError):
            return path.relative_to(base).as_posix()
    return path.name


def _scrub(value: Any, bases: tuple[PurePath, ...], drop_query: bool = False) -> Any:
    """`value` with credentials out of URLs and absolute paths made local (`_local_path`), in nested dicts, lists,
    tuples, namespaces and paths; the same object when nothing changed."""
    if isinstance(value, str):
        new = _local_path(_strip_url(value, drop_query), bases)
        return value if new == value else new
    if isinstance(value, PurePath):
        new = _scrub(str(value), bases)
        return value if new == str(value) else type(value)(new)
    if isinstance(value, dict):
        items = {k: _scrub(v, bases, drop_query) for k, v in value.items()}
        if all(items[k] is value[k] for k in value):
            return value
        out = copy.copy(value)
        out.update(items)
        return out
    if type(value) in (list, tuple):
        items = [_scrub(v, bases, drop_query) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    if isinstance(value, types.SimpleNamespace):  # ultralytics' IterableSimpleNamespace (model.args)
        items = {k: _scrub(v, bases, drop_query) for k, v in vars(value).items()}
        if all(items[k] is v for k, v in vars(value).items()):
            return value
        out = copy.copy(value)
        for k, v in items.items():
            setattr(out, k, v)
        return out
    return value


def _scrub_module(module: Any, bases: tuple[PurePath, ...]) -> None:
    """Scrub the plain attributes (args, yaml, kit_meta, names, ...) of `module` and its submodules in place."""
    import torch

    for m in module.modules():
        for name, value in list(vars(m).items()):
            if name.startswith("_") or isinstance(value, (torch.Tensor, torch.nn.Module)):
                continue
            new = _scrub(value, bases)
            if new is not value:
                setattr(m, name, new)


def _pickle_leaks(path: Path, bases: tuple[PurePath, ...]) -> list[str]:
    """What of a token or the run's absolute path is still in the pickle of torch.save'd `path` (tensors aside)."""
    with zipfile.ZipFile(path) as zf:
        data = b"".join(zf.read(n) for n in zf.namelist() if n.endswith("data.pkl"))
    leaks = [m.group(0).decode(errors="replace")[:12] + "…" for m in _URL_USERINFO_BYTES.finditer(data)]
    return leaks + [str(base) for base in bases if str(base).encode() in data]


def _run_bases(run_dir: Path) -> tuple[PurePath, ...]:
    """The run folder as absolute paths (resolved and as given): what local paths are made relative to."""
    return tuple(dict.fromkeys(PurePath(p) for p in (run_dir.resolve(), run_dir.absolute())))


def sanitize_checkpoint(src: Path, dst: Path, run_dir: Path) -> Path:
    """Write a copy of checkpoint `src` to `dst` with no credentials and no absolute local paths (module doc);
    the model, kit_meta and every tensor are kept as they are. `src` is only read."""
    import torch

    from kitlib.model.build import read_checkpoint  # prepares the runtime before ultralytics is unpickled

    ckpt = read_checkpoint(src)
    bases = _run_bases(run_dir)
    for key, value in list(ckpt.items()):
        if isinstance(value, torch.nn.Module):
            _scrub_module(value, bases)
        else:
            ckpt[key] = _scrub(value, bases, drop_query=key == "git")
    torch.save(ckpt, dst)
    leaks = _pickle_leaks(dst, bases)
    if leaks:
        dst.unlink()
        raise DataError(f"{src}: could not remove {leaks} from the checkpoint; not bundled")
    return dst


def _copy_scrubbed_text(src: Path, dst: Path, bases: tuple[PurePath, ...]) -> None:
    """Copy presence.json / config.yaml, rewritten only if an absolute path or a credential had to go."""
    import yaml

    text = src.read_text()
    data = json.loads(text) if src.suffix == ".json" else yaml.safe_load(text)
    clean = _scrub(data, bases)
    if clean is data:
        shutil.copy2(src, dst)
    elif src.suffix == ".json":
        write_json(dst, clean)
    else:
        dst.write_text(yaml.safe_dump(clean, sort_keys=False))


def _run_relative(path: Path, run_dir: Path) -> str:
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return path.name


def build_weights(
    username: str,
    out: Path,
    run_dir: Path,
    weights: list[Path] | None = None,
    root: Path = REPO_ROOT,
    prefix: str = DEFAULT_PREFIX,
    config_name: str = "config.yaml",
) -> Path:
    """The `weights` dataset from a run: sanitized copies of the fold weights (or `weights`), presence.json, the
    run's config YAML and its verifier; the manifest names the sources relative to the run."""
    from kitlib.config import KitConfig

    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder not found")
    run = RunDir(run_dir)
    paths = list(weights) if weights else run.checkpoints()
    if not paths:
        raise DataError(f"{run_dir}: no fold checkpoints found; train first or pass the weights explicitly")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: weights file not found")
    presence, config = run.presence, run_dir / config_name
    if not presence.is_file():
        raise DataError(f"{presence}: not found; tune the presence rule for this run first")
    try:
        json.loads(presence.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{presence}: not valid JSON: {e}") from e
    try:
        KitConfig.load(config)
    except ValueError as e:
        raise DataError(str(e)) from e
    fold_of = {p.resolve(): fold for fold, p in run.fold_checkpoints().items()}
    # a fold model keeps its fold in the flat dataset (fold2.pt); any other file keeps its name
    names = {p: run.fold_file(fold_of[p.resolve()]).name if p.resolve() in fold_of else p.name for p in paths}
    taken = [n for n in names.values()
             if n in (run.presence.name, run.config.name, run.verifier.name, MANIFEST_FILE, METADATA_FILE)]
    if len(set(names.values())) != len(names) or taken:
        raise DataError(f"{run_dir}: weights would collide in the flat dataset: {sorted(names.values())}")
    folder = _fresh(out)
    for path, name in names.items():
        sanitize_checkpoint(path, folder / name, run_dir)
    bases = _run_bases(run_dir)
    flat = RunDir(folder)  # the dataset is read as a run folder of flat checkpoints
    _copy_scrubbed_text(presence, flat.presence, bases)
    _copy_scrubbed_text(config, flat.config, bases)
    if run.verifier.is_file():
        shutil.copy2(run.verifier, flat.verifier)
        names[run.verifier] = flat.verifier.name
    sources = {name: _run_relative(path, run_dir) for path, name in names.items()}
    extra = {"run": run_dir.resolve().name, "weights": sources}
    return _finish(folder, "weights", username, prefix, root, extra, version_stamp(root))


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest.json of a built dataset folder."""
    path = folder / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: no readable manifest; run `make bundle` first ({e})") from e
