"""The three dataset bundles: flat layout, manifest sha256, version stamp, metadata, an importable kitlib wheel."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.release import bundle

REPO = bundle.REPO_ROOT
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_manifest(folder: Path, dataset: str) -> dict:
    """Every file but the two metadata files is listed once with its true size and sha256."""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dataset"] == dataset
    on_disk = sorted(p.name for p in folder.iterdir() if p.name not in ("manifest.json", "dataset-metadata.json"))
    assert [f["name"] for f in manifest["files"]] == on_disk
    for f in manifest["files"]:
        assert f["sha256"] == digest(folder / f["name"]) and f["bytes"] == (folder / f["name"]).stat().st_size
    meta = json.loads((folder / "dataset-metadata.json").read_text())
    assert meta["id"] == dataset and meta["title"] == dataset.split("/")[1] and len(meta["licenses"]) == 1
    assert all(p.is_file() for p in folder.iterdir())
    return manifest


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """A git repository holding a snapshot of kitlib, pyproject.toml and datasets/ (other work edits the real tree)."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "kitlib", root / "kitlib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "datasets", root / "datasets")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "snapshot"], cwd=root, check=True)
    return root


def test_src_bundle_is_a_wheel_of_every_kitlib_file_with_a_version_stamp(repo_copy, tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_copy, capture_output=True, text=True).stdout.strip()
    folder = bundle.build_src("tester", tmp_path / "src", root=repo_copy)

    manifest = check_manifest(folder, "tester/motor-kit-src")
    version = tomllib.loads((repo_copy / "pyproject.toml").read_text())["project"]["version"]
    wheel = folder / f"kitlib-{version}-py3-none-any.whl"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["VERSION", wheel.name, "manifest.json", "dataset-metadata.json"]
    )
    assert (folder / "VERSION").read_text().strip() == head[:12] == manifest["kit_version"]

    sources = {p.relative_to(repo_copy).as_posix() for p in (repo_copy / "kitlib").rglob("*.py")}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {n for n in names if n.endswith(".py")} == sources
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        record = zf.read(f"kitlib-{version}.dist-info/RECORD").decode().splitlines()
        assert {line.split(",")[0] for line in record} == names
        config_line = next(line for line in record if line.startswith("kitlib/config.py,"))
        assert config_line.split(",")[2] == str((repo_copy / "kitlib" / "config.py").stat().st_size)

    rebuilt = bundle.build_kitlib_wheel(repo_copy, tmp_path)
    assert rebuilt.read_bytes() == wheel.read_bytes()  # unchanged sources, identical bytes

    (repo_copy / "kitlib" / "config.py").write_text((repo_copy / "kitlib" / "config.py").read_text() + "\n")
    assert bundle.version_stamp(repo_copy) == head[:12] + "-dirty"


def test_kitlib_wheel_imports_from_the_zip_and_installs_with_pip(repo_copy, tmp_path):
    wheel = bundle.build_kitlib_wheel(repo_copy, tmp_path)
    code = (
        f"import sys\nsys.path.insert(0, {str(wheel)!r})\n"
        "import kitlib.config as c\nprint(c.__file__, c.HIT_RADIUS_A)"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"{wheel}/kitlib/config.py", "1000.0"]  # imported from inside the wheel

    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
           "--target", str(target), str(wheel)]
    proc = subprocess.run(pip, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "kitlib" / "config.py").read_bytes() == (repo_copy / "kitlib" / "config.py").read_bytes()


def fake_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal valid pure-Python wheel."""
    stem = re.sub(r"[-_.]+", "_", name).lower()
    path = folder / f"{stem}-{version}-py3-none-any.whl"
    dist = f"{stem}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{stem}/__init__.py", f"VERSION = {version!r}\n")
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path


def test_wheels_bundle_takes_pinned_versions_from_a_local_folder(repo_copy, tmp_path):
    pins = bundle.pinned_wheels(repo_copy)
    pyproject = tomllib.loads((repo_copy / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"ultralytics=={pins['ultralytics']}" in pyproject
    assert set(pins) == set(bundle.WHEELS) and {"ultralytics", "ultralytics-thop"} <= set(pins)
    links = tmp_path / "links"
    links.mkdir()
    expected = {fake_wheel(links, name, version).name for name, version in pins.items()}
    fake_wheel(links, "ultralytics", "8.0.1")  # another version on offer must not be taken

    folder = bundle.build_wheels("tester", tmp_path / "wheels", root=repo_copy, find_links=links)
    manifest = check_manifest(folder, "tester/motor-kit-wheels")
    assert {p.name for p in folder.glob("*.whl")} == expected == set(manifest["wheels"])
    requirements = [line for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert requirements == [f"{name}=={version}" for name, version in pins.items()]
    assert manifest["python_tag"] == "cp311" and "manylinux2014_x86_64" in manifest["platforms"]

    # the kernel's install command works offline from the built folder
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
           "--find-links", str(folder), "--target", str(target), "-r", str(folder / "requirements.txt")]
    proc = subprocess.run(pip, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "ultralytics" / "__init__.py").read_text() == f"VERSION = {pins['ultralytics']!r}\n"


def test_wheels_bundle_fails_clearly_when_a_wheel_is_missing(repo_copy, tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    fake_wheel(links, "ultralytics", bundle.pinned_wheels(repo_copy)["ultralytics"])
    with pytest.raises(DataError, match=rf"^{re.escape(str(links))}: pip download failed"):
        bundle.build_wheels("tester", tmp_path / "wheels", root=repo_copy, find_links=links)


def make_run(run: Path, folds: int = 2) -> Path:
    for fold in range(folds):
        weights = run / f"fold{fold}" / "weights"
        weights.mkdir(parents=True)
        (weights / "best.pt").write_bytes(f"best of fold {fold}".encode() * 100)
        (weights / "last.pt").write_bytes(b"last")
    (run / "presence.json").write_text(json.dumps({"rule": "threshold", "value": 0.4}))
    KitConfig.preset("cpu").save(run / "config.yaml")
    return run


def test_weights_bundle_flattens_fold_weights_with_presence_and_config(repo_copy, tmp_path):
    run = make_run(tmp_path / "runs" / "demo")
    folder = bundle.build_weights("tester", tmp_path / "weights", run, root=repo_copy)
    manifest = check_manifest(folder, "tester/motor-kit-weights")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["fold0.pt", "fold1.pt", "presence.json", "config.yaml", "manifest.json", "dataset-metadata.json"]
    )
    for fold in range(2):
        assert digest(folder / f"fold{fold}.pt") == digest(run / f"fold{fold}" / "weights" / "best.pt")
    assert manifest["weights"] == {f"fold{f}.pt": str(run / f"fold{f}" / "weights" / "best.pt") for f in range(2)}
    assert KitConfig.load(folder / "config.yaml") == KitConfig.preset("cpu")

    only = bundle.build_weights("tester", tmp_path / "w1", run, [run / "fold1" / "weights" / "best.pt"], root=repo_copy)
    assert sorted(p.name for p in only.glob("*.pt")) == ["fold1.pt"]


def test_weights_bundle_errors_name_the_missing_piece(repo_copy, tmp_path):
    run = make_run(tmp_path / "run")
    (run / "presence.json").unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(run / 'presence.json'))}: not found"):
        bundle.build_weights("tester", tmp_path / "w", run, root=repo_copy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*/weights/best.pt"):
        bundle.build_weights("tester", tmp_path / "w", tmp_path / "empty", root=repo_copy)
    clash = [run / "fold0" / "weights" / "last.pt", tmp_path / "last.pt"]
    clash[1].write_bytes(b"x")
    (run / "presence.json").write_text("{}")
    with pytest.raises(DataError, match="collide"):
        bundle.build_weights("tester", tmp_path / "w", run, clash, root=repo_copy)


def test_dataset_metadata_template_is_checked_like_kaggle_create(repo_copy, tmp_path):
    template = repo_copy / "datasets" / "src" / "dataset-metadata.template.json"
    meta = json.loads(template.read_text())
    template.write_text(json.dumps({**meta, "title": "tiny"}))
    with pytest.raises(DataError, match=rf"^{re.escape(str(template))}: title 'tiny' must be 6-50 characters"):
        bundle.build_src("tester", tmp_path / "src", root=repo_copy)
    template.write_text(json.dumps({**meta, "description": "built at {when}"}))
    with pytest.raises(DataError, match=r"unknown placeholder\(s\) \['when'\]"):
        bundle.build_src("tester", tmp_path / "src", root=repo_copy)
    template.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="slug 'x-src' must be 6-50"):
        bundle.build_src("tester", tmp_path / "src", root=repo_copy, prefix="x")


def test_repository_templates_render_for_every_dataset():
    for name in bundle.DATASET_NAMES:
        template = REPO / "datasets" / name / "dataset-metadata.template.json"
        slug = bundle.dataset_slug(name)
        meta = bundle.render_template(template, {"username": "tester", "slug": slug})
        bundle.check_dataset_metadata(meta, template, f"tester/{slug}")
    ids = ["tester/motor-kit-src", "tester/motor-kit-wheels", "tester/motor-kit-weights"]
    assert bundle.dataset_ids("tester") == ids


def test_bundle_cmd_builds_all_three_for_the_credentials_user(tmp_path):
    from kaggle_server import run_python

    links, build = tmp_path / "links", tmp_path / "build"
    links.mkdir()
    for name, version in bundle.pinned_wheels().items():
        fake_wheel(links, name, version)
    run = make_run(tmp_path / "runs" / "demo")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "KAGGLE_USERNAME": "tester", "KAGGLE_KEY": "k"}
    code = (
        "import sys; from pathlib import Path; from kitlib.release import commands\n"
        f"commands.bundle_cmd(run=Path({str(run)!r}), find_links=Path({str(links)!r}), build=Path({str(build)!r}))\n"
        "print('kaggle imported:', 'kaggle' in sys.modules)"
    )
    proc = run_python(code, env, timeout_s=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in bundle.DATASET_NAMES:
        folder = build / "datasets" / name
        check_manifest(folder, f"tester/motor-kit-{name}")
        assert f"tester/motor-kit-{name}: " in proc.stdout and f" in {folder}" in proc.stdout
    assert "kaggle imported: False" in proc.stdout  # an API key is enough to bundle offline

    no_run = run_python(code.replace(f"run=Path({str(run)!r})", "run=None"), env)
    assert no_run.returncode != 0 and "the weights bundle needs a run folder" in no_run.stderr
