"""Data layer: tomogram folders, labels, submissions, competition layout. Real JPEG files, no mocks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest
from PIL import Image

from kitlib.data import DataError, load_labels
from kitlib.data.labels import LABEL_COLUMNS, records_to_frame
from kitlib.data.layout import CompetitionData, find_competition_root, find_dataset
from kitlib.data.submission import submission_frame, validate_submission, write_submission
from kitlib.data.tomogram import iter_tomograms, read_tomogram

REAL_LABELS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "byu_train_labels.csv"


def write_slices(folder: Path, volume: np.ndarray, names: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(volume):
        name = names[i] if names else f"slice_{i:04d}.jpg"
        Image.fromarray(image).save(folder / name, quality=95)
    return folder


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Smooth content survives JPEG nearly unchanged; each slice has a distinct mean so order is checkable.
    base = cv2.GaussianBlur(rng.integers(0, 255, (24, 20), dtype=np.uint8), (7, 7), 3)
    return np.stack([np.clip(base.astype(int) + 10 * i, 0, 255).astype(np.uint8) for i in range(12)])


def test_read_tomogram_orders_by_number_not_lexically(tmp_path, volume):
    names = [f"slice_{i}.jpg" for i in range(len(volume))]  # slice_10 sorts before slice_2 lexically
    folder = write_slices(tmp_path / "tomo_aaaaaa", volume, names)
    got = read_tomogram(folder, threads=3)
    assert got.shape == volume.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - volume.astype(int)).mean() < 2.0
    assert np.all(np.diff(got.reshape(len(got), -1).mean(1)) > 5)


def test_corrupt_jpeg_names_the_file(tmp_path, volume):
    folder = write_slices(tmp_path / "t", volume)
    bad = folder / "slice_0005.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    with pytest.raises(DataError, match="slice_0005.jpg: truncated JPEG"):
        read_tomogram(folder)
    bad.write_bytes(b"\xff\xd8" + b"garbage" * 20 + b"\xff\xd9")
    with pytest.raises(DataError, match="slice_0005.jpg: corrupt image"):
        read_tomogram(folder)
    bad.write_bytes(b"")
    with pytest.raises(DataError, match="slice_0005.jpg: empty file"):
        read_tomogram(folder)


def test_jpeg_bytes_after_the_end_marker_are_ignored(tmp_path, volume):
    folder = write_slices(tmp_path / "t", volume)
    padded = folder / "slice_0005.jpg"
    original = cv2.imread(str(padded), cv2.IMREAD_UNCHANGED)
    padded.write_bytes(padded.read_bytes() + b"\x00" * 7 + b"trailer \xff\xd8 written by a scanner")
    assert np.array_equal(read_tomogram(folder)[5], original)


def with_thumbnail(jpeg: bytes) -> bytes:
    """`jpeg` with a complete small JPEG (its own end-of-image marker) inside an APP1 segment, as EXIF stores one."""
    segment = b"Exif\x00\x00" + cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))[1].tobytes()
    return jpeg[:2] + b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment + jpeg[2:]


@pytest.mark.parametrize("cut", [
    lambda jpeg: jpeg[: len(jpeg) // 2],
    lambda jpeg: jpeg[:-2],  # only the end-of-image marker missing
    lambda jpeg: jpeg[: len(jpeg) // 2] + b"\x00" * 64,  # zero padding after the cut
    lambda jpeg: with_thumbnail(jpeg)[: -(len(jpeg) // 2)],  # the thumbnail's marker is not the image's
], ids=["half", "marker-only", "zero-padded", "thumbnail"])
def test_truncated_jpeg_is_rejected_naming_the_file(tmp_path, volume, cut):
    folder = write_slices(tmp_path / "t", volume)
    bad = folder / "slice_0005.jpg"
    bad.write_bytes(cut(bad.read_bytes()))
    with pytest.raises(DataError, match=f"{bad}: truncated JPEG"):
        read_tomogram(folder)


def test_progressive_jpeg_is_read_and_its_truncation_rejected(tmp_path, volume):
    folder = write_slices(tmp_path / "t", volume)
    path = folder / "slice_0005.jpg"
    Image.fromarray(volume[5]).save(path, quality=95, progressive=True)
    assert np.array_equal(read_tomogram(folder)[5], cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{path}: truncated JPEG"):
        read_tomogram(folder)


def test_empty_folder_and_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no slice_NNNN.jpg"):
        read_tomogram(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read_tomogram(tmp_path / "nope")


def test_gap_in_numbering_names_missing_slices(tmp_path, volume):
    folder = write_slices(tmp_path / "t", volume)
    (folder / "slice_0003.jpg").unlink()
    (folder / "slice_0007.jpg").unlink()
    with pytest.raises(DataError, match=r"t: gaps in slice numbering, missing 2 slice\(s\): 3, 7"):
        read_tomogram(folder)


def test_slice_of_another_size_names_the_file(tmp_path, volume):
    folder = write_slices(tmp_path / "t", volume)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "slice_0008.jpg")
    with pytest.raises(DataError, match=r"slice_0008.jpg: slice is 10x10, expected 20x24"):
        read_tomogram(folder)


def test_non_slice_files_are_ignored_with_warning(tmp_path, volume):
    folder = write_slices(tmp_path / "t", volume)
    (folder / "notes.txt").write_text("hello")
    (folder / ".DS_Store").write_bytes(b"\0")
    with pytest.warns(UserWarning, match="ignoring 2 non-slice"):
        got = read_tomogram(folder)
    assert got.shape == volume.shape


def test_rgb_and_16bit_slices_are_converted(tmp_path, volume):
    folder = write_slices(tmp_path / "t", volume)
    Image.fromarray(np.stack([volume[2]] * 3, axis=-1)).save(folder / "slice_0002.jpg", quality=95)
    (folder / "slice_0004.jpg").unlink()
    cv2.imwrite(str(folder / "slice_0004.png"), volume[4].astype(np.uint16) * 257)
    with pytest.warns(UserWarning):
        got = read_tomogram(folder)
    assert np.abs(got[2].astype(int) - volume[2]).mean() < 2.0
    assert np.abs(got[4].astype(int) - volume[4]).max() <= 1


def test_iter_tomograms_reports_errors_and_keeps_going(tmp_path, volume):
    good = write_slices(tmp_path / "a", volume)
    (tmp_path / "b").mkdir()
    good2 = write_slices(tmp_path / "c", volume[:4])
    results = list(iter_tomograms([good, tmp_path / "b", good2], threads=2, progress=False))
    assert [f.name for f, _ in results] == ["a", "b", "c"]
    assert isinstance(results[1][1], DataError)
    assert results[2][1].shape == (4, 24, 20)


@pytest.mark.skipif(not REAL_LABELS.exists(), reason="../shared/reference not present")
def test_load_real_labels():
    records = load_labels(REAL_LABELS)
    assert len(records) == 648
    assert sum(not r.has_motor for r in records) == 286
    assert sum(r.n_motors_stated == 1 for r in records) == 313
    assert sum(r.n_motors_stated >= 2 for r in records) == 49
    assert sum(len(r.motors) != r.n_motors_stated for r in records) == 4  # claim 2 motors, list one
    by_id = {r.tomo_id: r for r in records}
    assert by_id["tomo_00e463"].shape == (500, 924, 956)
    assert by_id["tomo_00e463"].voxel_spacing == 19.7
    assert len(by_id["tomo_00e463"].motors) == by_id["tomo_00e463"].n_motors_stated == 6
    assert by_id["tomo_00e047"].motors == [(169.0, 546.0, 603.0)]
    # Round trip back to the competition's layout.
    frame = records_to_frame(records)
    assert frame.columns == LABEL_COLUMNS and frame.height == 737


def test_labels_missing_column_is_clear(tmp_path):
    path = tmp_path / "train_labels.csv"
    pl.DataFrame({"tomo_id": ["a"], "Motor axis 0": [1]}).write_csv(path)
    with pytest.raises(DataError, match="train_labels.csv: missing label columns"):
        load_labels(path)


def test_submission_frame_and_validation(tmp_path):
    df = submission_frame({"b": (1.5, 2, 3), "a": None}, order=["a", "b", "c"])
    assert df.columns == ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]
    assert df.row(0) == ("a", -1.0, -1.0, -1.0) and df.row(1) == ("b", 1.5, 2.0, 3.0) and df.row(2)[0] == "c"
    path = write_submission(df, tmp_path / "sub" / "submission.csv", ["a", "b", "c"])
    assert pl.read_csv(path).height == 3
    with pytest.raises(DataError, match="missing \\['c'\\]"):
        validate_submission(df.head(2), ["a", "b", "c"])
    with pytest.raises(DataError, match="more than once: \\['a'\\]"):
        validate_submission(pl.concat([df, df.head(1)]), ["a", "b", "c"])
    with pytest.raises(DataError, match="numeric"):
        validate_submission(df.with_columns(pl.lit("x").alias("Motor axis 1")), ["a", "b", "c"])
    with pytest.raises(DataError, match="missing columns"):
        validate_submission(df.drop("Motor axis 2"), ["a", "b", "c"])
    assert not (tmp_path / "bad.csv").exists()
    with pytest.raises(DataError):
        write_submission(df.head(1), tmp_path / "bad.csv", ["a", "b"])
    assert not (tmp_path / "bad.csv").exists()


@pytest.mark.parametrize("mount", ["input/competitions/{slug}", "input/{slug}"])
def test_find_competition_root_in_both_kaggle_layouts(tmp_path, monkeypatch, mount):
    slug = "byu-locating-bacterial-flagellar-motors-2025"
    comp = tmp_path / mount.format(slug=slug)
    (comp / "test" / "tomo_x").mkdir(parents=True)
    pl.DataFrame({"tomo_id": ["tomo_x"]}).write_csv(comp / "sample_submission.csv")
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path))
    assert find_competition_root() == comp
    assert CompetitionData(comp).submission_ids() == ["tomo_x"]


@pytest.mark.parametrize("content, problem", [
    (np.random.default_rng(0).bytes(500), "cannot read the sample submission: invalid utf-8"),
    (b"id,Motor axis 0\ntomo_a,-1\n", "no tomo_id column"),
    (b"tomo_id,Motor axis 0\ntomo_a,-1\n,-1\n", r"empty tomo_id on line\(s\) \[3\]"),
    (b"tomo_id,Motor axis 0\n", r"no ids \(a header only\)"),
    (b"", "cannot read the sample submission: empty CSV"),
    (b"tomo_id,a\nx,1\ny,1,2\n", "cannot read the sample submission: found more fields"),
], ids=["binary-garbage", "no-tomo_id-column", "empty-id", "header-only", "empty-file", "ragged"])
def test_a_broken_sample_submission_is_one_line_naming_it(tmp_path, content, problem):
    (tmp_path / "test").mkdir()
    (tmp_path / "sample_submission.csv").write_bytes(content)
    with pytest.raises(DataError, match=f"{tmp_path / 'sample_submission.csv'}: {problem}") as caught:
        CompetitionData(tmp_path).submission_ids()
    assert "\n" not in str(caught.value)


def test_sample_submission_ids_keep_their_text_and_order(tmp_path):
    (tmp_path / "sample_submission.csv").write_bytes(b"\xef\xbb\xbftomo_id,Motor axis 0\n007,-1\ntomo_b,-1\n007,-1\n")
    assert CompetitionData(tmp_path).submission_ids() == ["007", "tomo_b"]  # BOM dropped, not parsed as numbers


@pytest.mark.parametrize("content, ids", [
    (b"\xef\xbb\xbftomo_id,x\n007,1\n 7 ,1\n007,1\n", ["007", " 7 "]),  # BOM dropped; verbatim, once each
    (b"id,x\ntomo_a,1\ntomo_b,1\n", ["tomo_a", "tomo_b"]),  # no tomo_id header: the first column
    (b"x,tomo_id\n1,tomo_a\n1,,\n\n1,tomo_b,extra\n1\n", ["tomo_a", "", "tomo_b"]),  # empty id kept, short rows not
    (b"tomo_id,x\ntomo_a,caf\xe9\ntomo_\xff,1\n", ["tomo_a", "tomo_\ufffd"]),  # not UTF-8: replaced, not lost
    (b"tomo_id\ntomo_a\n" + b"x" * 200_000 + b"\ntomo_b\n", ["tomo_a"]),  # stops at a row it cannot parse (too long)
    (b"", []),
    (b"tomo_id,x\n", []),
], ids=["bom-verbatim", "first-column", "empty-id", "not-utf8", "unparsable-row", "empty-file", "header-only"])
def test_fallback_ids_are_read_verbatim_and_tolerantly(tmp_path, content, ids):
    (tmp_path / "sample_submission.csv").write_bytes(content)
    assert CompetitionData(tmp_path).fallback_ids() == ids


def test_fallback_ids_without_a_sample_submission_are_the_test_folders(tmp_path):
    assert CompetitionData(tmp_path).fallback_ids() == []  # nothing to read at all
    (tmp_path / "test" / "tomo_b").mkdir(parents=True)
    (tmp_path / "test" / "tomo_a").mkdir()
    (tmp_path / "sample_submission.csv").mkdir()  # not a file
    assert CompetitionData(tmp_path).fallback_ids() == ["tomo_a", "tomo_b"]


def test_find_competition_root_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path))
    with pytest.raises(DataError, match="competition data not found.*KIT_KAGGLE_ROOT"):
        find_competition_root()
    with pytest.raises(DataError, match="not a competition folder"):
        find_competition_root(tmp_path)


def test_find_dataset_in_both_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path))
    (tmp_path / "input" / "datasets" / "alice" / "motor-kit-src").mkdir(parents=True)
    (tmp_path / "input" / "motor-kit-wheels").mkdir(parents=True)
    assert find_dataset("motor-kit-src") == tmp_path / "input" / "datasets" / "alice" / "motor-kit-src"
    assert find_dataset("motor-kit-src", owner="alice").name == "motor-kit-src"
    assert find_dataset("motor-kit-wheels") == tmp_path / "input" / "motor-kit-wheels"
    with pytest.raises(DataError, match="not attached"):
        find_dataset("motor-kit-weights")
