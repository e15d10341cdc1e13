"""The three dataset bundles: flat layout, manifest sha256, version stamp, metadata, an importable kitlib wheel."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest

from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.run import RunDir
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


def small_checkpoint(path: Path, fold: int, **extra: object) -> Path:
    """A checkpoint shaped like the kit's (a pickled module, kit_meta) without building a YOLO model."""
    import torch

    torch.manual_seed(fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": torch.nn.Conv2d(5, 2, 1), "kit_meta": {"fold": fold, "stack_stride": 2}, **extra}, path)
    return path


def make_run(run: Path, folds: int = 2) -> Path:
    for fold in range(folds):
        weights = run / f"fold{fold}" / "weights"
        small_checkpoint(weights / "best.pt", fold)
        small_checkpoint(weights / "last.pt", 100 + fold)
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
    import torch

    for fold in range(2):  # the same model and kit_meta (a sanitized copy, not the same bytes)
        copied = torch.load(folder / f"fold{fold}.pt", weights_only=False)
        source = torch.load(run / f"fold{fold}" / "weights" / "best.pt", weights_only=False)
        assert copied["kit_meta"] == source["kit_meta"] == {"fold": fold, "stack_stride": 2}
        assert torch.equal(copied["model"].weight, source["model"].weight)
    assert manifest["weights"] == {f"fold{f}.pt": f"fold{f}/weights/best.pt" for f in range(2)}
    assert manifest["run"] == "demo"
    assert KitConfig.load(folder / "config.yaml") == KitConfig.preset("cpu")

    only = bundle.build_weights("tester", tmp_path / "w1", run, [run / "fold1" / "weights" / "best.pt"], root=repo_copy)
    assert sorted(p.name for p in only.glob("*.pt")) == ["fold1.pt"]


def test_weights_bundle_carries_the_runs_verifier_which_predicts_from_the_dataset(repo_copy, tmp_path):
    from kitlib.config import VerifyConfig
    from kitlib.verify.net import PatchNet
    from kitlib.verify.verifier import Verifier

    run = make_run(tmp_path / "runs" / "demo")
    vcfg = VerifyConfig(patch=16, shift=2, planes=3, bin=1)
    Verifier({0: [PatchNet(3)], 1: [PatchNet(3)]}, vcfg).save(run / "verifier.pt")
    folder = bundle.build_weights("tester", tmp_path / "weights", run, root=repo_copy)
    assert (folder / "verifier.pt").read_bytes() == (run / "verifier.pt").read_bytes()
    assert check_manifest(folder, "tester/motor-kit-weights")["weights"]["verifier.pt"] == "verifier.pt"
    assert [p.name for p in RunDir(folder).checkpoints()] == ["fold0.pt", "fold1.pt"]
    assert Verifier.load(folder / "verifier.pt").geometry()["patch"] == 16


def test_weights_bundle_errors_name_the_missing_piece(repo_copy, tmp_path):
    run = make_run(tmp_path / "run")
    (run / "presence.json").unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(run / 'presence.json'))}: not found"):
        bundle.build_weights("tester", tmp_path / "w", run, root=repo_copy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no fold checkpoints found"):
        bundle.build_weights("tester", tmp_path / "w", tmp_path / "empty", root=repo_copy)
    clash = [run / "fold0" / "weights" / "last.pt", small_checkpoint(tmp_path / "last.pt", 7)]
    (run / "presence.json").write_text("{}")
    with pytest.raises(DataError, match="collide"):
        bundle.build_weights("tester", tmp_path / "w", run, clash, root=repo_copy)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")  # cannot be sanitized: not bundled
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'junk.pt'))}: cannot read checkpoint"):
        bundle.build_weights("tester", tmp_path / "w", run, [tmp_path / "junk.pt"], root=repo_copy)


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


# --- secrets and provenance ---

TOKEN = "SECRETTOKEN123"


def plant_secrets(run: Path) -> Path:
    """A real kit checkpoint (untrained z-head) carrying what ultralytics writes: `git` with a token in the remote URL,
    `train_args` and `model.args` with absolute local paths; a config naming a local weights file."""
    import torch

    from kitlib.testing import tiny_run

    tiny_run(run)
    best = run / "fold0" / "weights" / "best.pt"
    ckpt = torch.load(best, weights_only=False)
    args = {"data": str(run.parent / "export" / "dataset.yaml"), "project": str(run.parent), "name": run.name,
            "save_dir": str(run / "fold0"), "model": str(run / "yolov8n-pose.yaml"), "imgsz": 96,
            "source": [str(run / "a"), f"https://user:{TOKEN}@data.example/x"]}
    ckpt["git"] = {"root": str(run.parent), "branch": "main", "commit": "0123abcd" * 5,
                   "message": "train", "origin": f"https://oauth2:{TOKEN}@example.com/x.git?private_token={TOKEN}"}
    ckpt["train_args"] = dict(args)
    ckpt["model"].args = dict(args, save_dir=run / "fold0")  # a Path, as ultralytics sometimes keeps them
    torch.save(ckpt, best)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(
        "weights: null", f"weights: {run.parent / 'yolov8n.pt'}"))
    return best


def bundle_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a built bundle, and every member of the zips in it (wheels, torch checkpoints), as bytes."""
    found = {}
    for path in sorted(folder.iterdir()):
        found[path.name] = path.read_bytes()
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                found.update({f"{path.name}:{name}": zf.read(name) for name in zf.namelist()})
    return found


def test_bundles_carry_no_token_and_no_local_path(repo_copy, tmp_path):
    import torch

    from kitlib.model.build import load_kit_checkpoint

    run = tmp_path / "runs" / "secret-run"
    best = plant_secrets(run)
    assert "weights: /" in (run / "config.yaml").read_text()
    before = digest(best)
    built = [bundle.build_src("tester", tmp_path / "src", root=repo_copy),
             bundle.build_weights("tester", tmp_path / "weights", run, root=repo_copy)]
    assert digest(best) == before  # the run's checkpoint is not modified

    for folder in built:
        for name, data in bundle_bytes(folder).items():
            assert TOKEN.encode() not in data, name
            for path in (tmp_path, tmp_path.resolve()):
                assert str(path).encode() not in data, name

    copy = torch.load(tmp_path / "weights" / "fold0.pt", weights_only=False)
    assert copy["git"]["origin"] == "https://example.com/x.git" and copy["git"]["commit"] == "0123abcd" * 5
    assert copy["git"]["root"] == "runs"  # outside the run: its name only
    assert copy["train_args"]["save_dir"] == "fold0" and copy["train_args"]["data"] == "dataset.yaml"
    assert copy["train_args"]["source"] == ["a", "https://data.example/x"] and copy["train_args"]["imgsz"] == 96
    assert copy["model"].args["save_dir"] == Path("fold0")
    source = torch.load(best, weights_only=False)
    assert source["git"]["origin"].startswith("https://oauth2:SECRET")
    model, meta, _ = load_kit_checkpoint(tmp_path / "weights" / "fold0.pt")  # what the kernel loads still loads
    assert meta == source["kit_meta"]
    reference = source["model"].state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    assert KitConfig.load(tmp_path / "weights" / "config.yaml").model.weights == "yolov8n.pt"


def test_src_wheel_packs_only_what_git_tracks(repo_copy, tmp_path):
    secret = repo_copy / "kitlib" / "_secret_test.env"
    scratch = repo_copy / "kitlib" / "scratch_untracked.py"
    secret.write_text(f"KAGGLE_KEY={TOKEN}\n")
    scratch.write_text("print('not committed')\n")
    with pytest.warns(UserWarning, match=r"git does not track \['kitlib/scratch_untracked.py'\]"):
        wheel = bundle.build_kitlib_wheel(repo_copy, tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert "kitlib/_secret_test.env" not in names and "kitlib/scratch_untracked.py" not in names
    assert "kitlib/config.py" in names

    # outside a git checkout: the *.py files only
    plain = tmp_path / "plain"
    shutil.copytree(repo_copy, plain, ignore=shutil.ignore_patterns(".git"))
    (tmp_path / "plain-wheel").mkdir()
    with zipfile.ZipFile(bundle.build_kitlib_wheel(plain, tmp_path / "plain-wheel")) as zf:
        names = {n for n in zf.namelist() if not n.startswith("kitlib-")}
    assert "kitlib/_secret_test.env" not in names and "kitlib/scratch_untracked.py" in names
    assert names == {p.relative_to(plain).as_posix() for p in (plain / "kitlib").rglob("*.py")}


def test_src_wheel_of_this_checkout_leaves_untracked_files_out(tmp_path):
    secret = REPO / "kitlib" / "_secret_test.env"
    try:
        secret.write_text(f"KAGGLE_KEY={TOKEN}\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # another engineer's untracked modules may be around
            wheel = bundle.build_kitlib_wheel(REPO, tmp_path)
        with zipfile.ZipFile(wheel) as zf:
            assert "kitlib/_secret_test.env" not in zf.namelist()
            assert all(TOKEN.encode() not in zf.read(n) for n in zf.namelist())
    finally:
        secret.unlink(missing_ok=True)


def test_kaggle_credentials_are_ignored_by_git():
    for name in ("kaggle.json", "access_token", "kitlib/.env"):
        proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=REPO)
        assert proc.returncode == 0, f"{name} is not in .gitignore"
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", "kaggle.json.example"], cwd=REPO)
    assert proc.returncode == 1
