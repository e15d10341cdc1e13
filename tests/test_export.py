"""Training export: read back the TIFF stacks and pose labels and check them against the tomograms and the truth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from kitlib.config import ExportConfig, KitConfig, PreprocessConfig
from kitlib.data.export import export_fold
from kitlib.data.labels import TomoRecord, records_to_frame
from kitlib.data.tomogram import read_tomogram
from kitlib.preprocess import normalize_tomogram, stack_indices, to_original

STRIDE = 3
Z_SPAN = 2 * STRIDE
SHAPE = (40, 96, 112)
RECORDS = [
    TomoRecord("tomo_a", SHAPE, 20.0, [(20.0, 48.0, 60.0)], 1),
    TomoRecord("tomo_b", SHAPE, 15.0, [(10.0, 10.0, 10.0), (14.0, 40.0, 50.0)], 2),  # close in z: labelled together
    TomoRecord("tomo_c", SHAPE, 20.0, [], 0),
    TomoRecord("tomo_d", SHAPE, 20.0, [], 0),
    TomoRecord("tomo_e", SHAPE, 20.0, [(1.0, 2.0, 110.0)], 1),  # at the corner: reflected pages, clipped box
    TomoRecord("tomo_f", SHAPE, 20.0, [], 0),  # its folder holds a corrupt slice
]
FOLDS = {"tomo_a": 0, "tomo_b": 1, "tomo_c": 0, "tomo_d": 1, "tomo_e": 1, "tomo_f": 1}
TRUTH = {r.tomo_id: np.array(r.motors).reshape(-1, 3) for r in RECORDS}


def kit_config(**export) -> KitConfig:
    return KitConfig(
        preprocess=PreprocessConfig(stack_stride=STRIDE),
        export=ExportConfig(z_window=2, positives_per_motor=3, negatives_per_tomo=2, neg_ratio=2.0, **export),
    )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("comp")
    rng = np.random.default_rng(0)
    for rec in RECORDS:
        folder = root / "train" / rec.tomo_id
        folder.mkdir(parents=True)
        for z in range(rec.shape[0]):  # every slice distinct, so a page from the wrong slice shows
            image = cv2.GaussianBlur(rng.integers(0, 200, rec.shape[1:], dtype=np.uint8), (5, 5), 1.5)
            cv2.imwrite(str(folder / f"slice_{z:04d}.jpg"), image)
    (root / "train" / "tomo_f" / "slice_0007.jpg").write_bytes(b"\xff\xd8 not a jpeg \xff\xd9")
    records_to_frame(RECORDS).write_csv(root / "train_labels.csv")
    return root


@pytest.fixture(scope="module")
def export(data_root, tmp_path_factory) -> Path:
    return export_fold(data_root, tmp_path_factory.mktemp("export"), 1, kit_config(), FOLDS, progress=False).parent


def read_labels(path: Path) -> np.ndarray:
    return np.array([line.split() for line in path.read_text().splitlines()], np.float64).reshape(-1, 8)


def stacks(export: Path):
    """(split, tomo_id, centre, image path, label rows) of every exported stack."""
    for image in sorted((export / "images").glob("*/*.tif")):
        tomo_id, centre = image.stem.rsplit("_z", 1)
        label = export / "labels" / image.parent.name / f"{image.stem}.txt"
        yield image.parent.name, tomo_id, int(centre), image, read_labels(label)


def decode(rows: np.ndarray, centre: int, hw: tuple[int, int]) -> np.ndarray:
    """Label rows -> (z, y, x) voxels, inverting the contract."""
    h, w = hw
    return np.stack([centre + (2 * rows[:, 7] - 1) * Z_SPAN, rows[:, 6] * h - 0.5, rows[:, 5] * w - 0.5], 1)


def test_positive_labels_decode_to_the_true_motors(export):
    seen = set()
    for _, tomo_id, centre, _, rows in stacks(export):
        truth = TRUTH[tomo_id]
        near = truth[np.abs(truth[:, 0] - centre) <= Z_SPAN]
        assert len(rows) == len(near)  # every motor within z_span of the centre, and only those
        if len(rows):
            np.testing.assert_allclose(decode(rows, centre, SHAPE[1:]), near, atol=1e-4)
            seen.update((tomo_id, tuple(m)) for m in near)
    listed = {(t, tuple(m)) for t, motors in TRUTH.items() for m in motors if t != "tomo_f"}
    assert seen == listed  # every motor has positive stacks
    assert any(len(rows) == 2 for *_, rows in stacks(export))  # tomo_b's close pair share stacks


def test_boxes_have_the_hit_radius_side_clipped_to_the_image(export):
    for _, tomo_id, _, _, rows in stacks(export):
        side = 1000.0 / next(r.voxel_spacing for r in RECORDS if r.tomo_id == tomo_id)
        for cx, cy, w, h in rows[:, 1:5]:
            assert 0 <= cx - w / 2 and cx + w / 2 <= 1 + 1e-6 and 0 <= cy - h / 2 and cy + h / 2 <= 1 + 1e-6
            assert w * SHAPE[2] <= side + 1e-3 and h * SHAPE[1] <= side + 1e-3
        if tomo_id == "tomo_a" and len(rows):  # far from the border: full side
            np.testing.assert_allclose(rows[:, 3:5] * SHAPE[2:0:-1], side, atol=1e-3)
        if tomo_id == "tomo_e" and len(rows):  # corner motor: clipped
            assert np.all(rows[:, 3] * SHAPE[2] < side)


def test_tiff_pages_are_the_normalised_slices_in_order(export, data_root):
    cfg = kit_config()
    volumes = {}
    for _, tomo_id, centre, image, _ in stacks(export):
        if tomo_id not in volumes:
            volumes[tomo_id] = normalize_tomogram(read_tomogram(data_root / "train" / tomo_id), cfg.preprocess)
        volume = volumes[tomo_id]
        ok, pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)
        assert ok and len(pages) == 5
        for page, z in zip(pages, stack_indices(centre, len(volume), STRIDE)):
            np.testing.assert_array_equal(page, volume[z])


def test_negatives_are_empty_and_far_from_motors(export):
    negatives = [(t, c) for _, t, c, _, rows in stacks(export) if not len(rows)]
    assert negatives
    for tomo_id, centre in negatives:
        assert np.all(np.abs(TRUTH[tomo_id][:, 0] - centre) > 2 * Z_SPAN)


def test_split_follows_the_folds(export):
    split_of = {}
    for split, tomo_id, *_ in stacks(export):
        assert split_of.setdefault(tomo_id, split) == split  # never in both splits
    assert split_of == {t: ("val" if f == 1 else "train") for t, f in FOLDS.items() if t != "tomo_f"}


def test_dataset_yaml_and_summary(export):
    data = yaml.safe_load((export / "dataset.yaml").read_text())
    assert Path(data["path"]) == export and data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == {0: "motor"} and data["channels"] == 5
    assert data["kpt_shape"] == [1, 3] and data["flip_idx"] == [0]
    assert data["stack_stride"] == STRIDE and data["z_span"] == Z_SPAN and data["fold"] == 1
    summary = json.loads((export / "export_summary.json").read_text())
    assert summary["splits"] == data["counts"]
    for split, counts in summary["splits"].items():
        rows = [rows for s, *_, rows in stacks(export) if s == split]
        assert counts["positive"] == sum(len(r) > 0 for r in rows)
        assert counts["negative"] == sum(len(r) == 0 for r in rows)
        assert counts["negative"] <= 2.0 * counts["positive"]
    assert [s["tomo_id"] for s in summary["skipped"]] == ["tomo_f"]
    assert "tomo_f" in summary["skipped"][0]["folder"] and "slice_0007" in summary["skipped"][0]["error"]


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_and_warns_about_unreadable_tomograms(export, data_root, tmp_path, caplog):
    stale = tmp_path / "images" / "train" / "old_z1.tif"  # left over from an earlier export: must go
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        export_fold(data_root, tmp_path, 1, kit_config(), FOLDS, progress=False)
    assert any("tomo_f" in r.getMessage() for r in caplog.records)
    first, again = file_bytes(export), file_bytes(tmp_path)
    assert first.pop("dataset.yaml").replace(str(export).encode(), b"") == again.pop("dataset.yaml").replace(
        str(tmp_path).encode(), b"")
    assert first == again


def test_imgsz_resizes_images_but_not_labels(export, data_root, tmp_path):
    export_fold(data_root, tmp_path, 1, kit_config(imgsz=28), FOLDS, progress=False)
    for split, tomo_id, centre, image, rows in stacks(tmp_path):
        ok, pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)
        assert ok and len(pages) == 5 and pages[0].shape == (24, 28)
        np.testing.assert_array_equal(rows, read_labels(export / "labels" / split / f"{image.stem}.txt"))


def test_resampled_export_maps_back_to_the_truth(data_root, tmp_path):
    cfg = kit_config()
    cfg.preprocess.target_spacing = 30.0
    records = [r for r in RECORDS if r.tomo_id != "tomo_f"]
    export_fold(data_root, tmp_path, 0, cfg, FOLDS, records=records, progress=False)
    n = 0
    for _, tomo_id, centre, image, rows in stacks(tmp_path):
        spacing = next(r.voxel_spacing for r in records if r.tomo_id == tomo_id)
        grid = tuple(round(s * spacing / 30.0) for s in SHAPE)
        ok, pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)
        assert pages[0].shape == grid[1:]
        if len(rows):
            motors = to_original(decode(rows, centre, grid[1:]), SHAPE, grid)
            truth = TRUTH[tomo_id]
            assert np.abs(motors[:, None] - truth[None]).max(-1).min(1).max() < 1e-3
            n += len(rows)
    assert n


def test_rejects_tomograms_without_a_fold(data_root, tmp_path):
    with pytest.raises(ValueError, match="no fold"):
        export_fold(data_root, tmp_path, 0, kit_config(), {"tomo_a": 0}, progress=False)
