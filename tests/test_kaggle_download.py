"""`make download` (commands.download_cmd, api.download_competition) through the REAL kaggle 2.2.4 client against
tests/kaggle_server.py: `DownloadDataFiles` redirects to a small zip in the competition's layout."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from kaggle_server import KaggleServer, run_python

from kitlib.config import COMPETITION_SLUG

LAYOUT = {
    "train_labels.csv": b"row_id,tomo_id,Motor axis 0,Motor axis 1,Motor axis 2,Array shape (axis 0),"
                        b"Array shape (axis 1),Array shape (axis 2),Voxel spacing,Number of motors\n"
                        b"0,tomo_a1,5,10,12,8,32,32,15.6,1\n",
    "sample_submission.csv": b"tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\ntomo_t1,-1,-1,-1\n",
    "train/tomo_a1/slice_0000.jpg": b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9",
    "test/tomo_t1/slice_0000.jpg": b"\xff\xd8\xff\xe0 nor this \xff\xd9",
}


def competition_zip(files: dict[str, bytes] = LAYOUT) -> bytes:
    """A zip of a tiny competition layout (train_labels.csv, sample_submission.csv, train/<id>/slice_0000.jpg)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def server():
    with KaggleServer(lifetime_s=120) as srv:
        srv.state.competition_files[COMPETITION_SLUG] = competition_zip()
        yield srv


def download_code(dest: Path, prelude: str = "") -> str:
    return (f"{prelude}\nfrom pathlib import Path; from kitlib.release import commands\n"
            f"print('EXIT', commands.download_cmd(dest=Path({str(dest)!r})))")


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_download_unpacks_the_competition_into_its_folder(server, tmp_path):
    dest = tmp_path / "data" / COMPETITION_SLUG
    proc = run_python(download_code(dest), server.env(tmp_path / "home"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tree(dest) == LAYOUT
    assert sorted(p.name for p in dest.parent.iterdir()) == [COMPETITION_SLUG]  # no temporary folder left
    (rpc,) = server.calls("DownloadDataFiles")
    assert rpc.body == {"competitionName": COMPETITION_SLUG}
    assert [r.path for r in server.calls() if r.verb == "GET"] == [f"/download/{COMPETITION_SLUG}.zip"]
    size = len(server.state.competition_files[COMPETITION_SLUG]) / 1e6
    assert f"{COMPETITION_SLUG}.zip: {size:.1f} MB downloaded" in proc.stdout
    assert f"{dest}: 4 files, " in proc.stdout and "EXIT 0" in proc.stdout

    # a second run finds train_labels.csv and asks nothing
    before = len(server.requests)
    again = run_python(download_code(dest), server.env(tmp_path / "home"))
    assert again.returncode == 0 and "download skipped" in again.stdout
    assert len(server.requests) == before


def test_default_destination_is_data_slug(tmp_path, monkeypatch, capsys):
    from kitlib.release import commands

    assert commands.DATA == commands.bundle.REPO_ROOT / "data"
    monkeypatch.setattr(commands, "DATA", tmp_path)
    (tmp_path / COMPETITION_SLUG).mkdir()
    (tmp_path / COMPETITION_SLUG / "train_labels.csv").write_text("row_id\n")
    assert commands.download_cmd() == 0  # found there: skipped, nothing sent
    assert f"{tmp_path / COMPETITION_SLUG}: holds train_labels.csv already; download skipped" in capsys.readouterr().out


def test_server_error_leaves_nothing_and_exits_nonzero_with_the_message(server, tmp_path):
    dest = tmp_path / "data" / COMPETITION_SLUG
    rules = "You must accept this competition's rules before you'll be able to download files."
    server.fail("DownloadDataFiles", rules, status=403)
    proc = run_python(download_code(dest), server.env(tmp_path / "home"))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"kitlib.kaggle.errors.KaggleError: download of competition {COMPETITION_SLUG}: HTTP 403: {rules}"
    assert list(dest.parent.iterdir()) == []


def test_broken_transfer_leaves_no_half_folder(server, tmp_path):
    """The archive's GET announces the full size and sends half: the client retries (waits skipped) and gives up."""
    server.state.truncate_downloads = True
    dest = tmp_path / "data" / COMPETITION_SLUG
    proc = run_python(download_code(dest, prelude="import time; time.sleep = lambda s: None"),
                      server.env(tmp_path / "home"))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert f"KaggleError: download of competition {COMPETITION_SLUG}: " in proc.stderr.strip().splitlines()[-1]
    assert len([r for r in server.calls() if r.verb == "GET"]) > 1  # the client did retry
    assert list(dest.parent.iterdir()) == []


def test_interrupted_unpack_leaves_no_half_folder_and_keeps_what_was_there(server, tmp_path):
    """Ctrl-C after the first unpacked file: the temporary folder goes, the user's other files stay."""
    data = tmp_path / "data"
    dest = data / COMPETITION_SLUG
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    (data / f".{COMPETITION_SLUG}.stale0.partial").mkdir()  # left by a download that was killed
    prelude = (
        "import zipfile\n"
        "real = zipfile.ZipFile.extract\n"
        "def extract(self, member, path=None, pwd=None):\n"
        "    real(self, member, path, pwd)\n"
        "    raise KeyboardInterrupt\n"
        "zipfile.ZipFile.extract = extract"
    )
    proc = run_python(download_code(dest, prelude), server.env(tmp_path / "home"))
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"]
    assert (data / "notes.txt").read_text() == "mine"


def test_existing_folder_without_labels_is_refused_untouched(server, tmp_path):
    dest = tmp_path / "data" / COMPETITION_SLUG
    (dest / "train").mkdir(parents=True)
    (dest / "train" / "mine.jpg").write_bytes(b"x")
    proc = run_python(download_code(dest), server.env(tmp_path / "home"))
    assert proc.returncode != 0
    assert f"DataError: {dest}: exists but holds no train_labels.csv" in proc.stderr
    assert tree(dest) == {"train/mine.jpg": b"x"} and server.requests == []


def test_archive_without_the_competition_layout_is_refused(server, tmp_path):
    server.state.competition_files[COMPETITION_SLUG] = competition_zip({"readme.txt": b"hello"})
    dest = tmp_path / "data" / COMPETITION_SLUG
    proc = run_python(download_code(dest), server.env(tmp_path / "home"))
    assert proc.returncode != 0 and "no train_labels.csv at the top of the archive" in proc.stderr
    assert list(dest.parent.iterdir()) == []


def test_api_download_competition_returns_the_archive(server, tmp_path):
    dest = tmp_path / "zips"
    code = ("from pathlib import Path; from kitlib.kaggle import api\n"
            f"print('ZIP', api.download_competition(Path({str(dest)!r})))")
    proc = run_python(code, server.env(tmp_path / "home"))
    assert proc.returncode == 0, proc.stderr
    archive = dest / f"{COMPETITION_SLUG}.zip"
    assert f"ZIP {archive}" in proc.stdout
    assert archive.read_bytes() == server.state.competition_files[COMPETITION_SLUG]
