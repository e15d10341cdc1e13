"""Training export: read back the TIFF stacks and pose labels and check them against the tomograms and the truth."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from kitlib.config import ExportConfig, KitConfig, ModelConfig, PreprocessConfig
from kitlib.data.export import crop_origin, export_fold, plan_fold
from kitlib.preprocess.zcode import ZENC_MIN as Z_ENC_MIN
from kitlib.data.labels import TomoRecord, load_labels, records_to_frame
from kitlib.data.synth import synthesize
from kitlib.data.tomogram import read_tomogram
from kitlib.preprocess import normalize_tomogram, resampled_shape, to_original

STRIDE = 2
Z_SPAN = 2 * STRIDE


@dataclass
class Data:
    root: Path
    records: dict[str, TomoRecord]
    folds: dict[str, int]
    corrupt: str  # the tomogram whose folder holds an undecodable slice
    pair: str  # two motors z_span apart: some stacks label both, some only one
    corner: str  # a motor at the image corner: clipped box, reflected pages


def kit_config(imgsz: int = 640, **export) -> KitConfig:
    """Export settings for the tiny tomograms; `imgsz` is the model's (slices larger than it are shrunk to it)."""
    export = {"z_window": 2, "positives_per_motor": 3, "negatives_per_tomo": 2, "neg_ratio": 2.0, **export}
    return KitConfig(preprocess=PreprocessConfig(grid="native", stack_stride=STRIDE), export=ExportConfig(**export),
                     model=ModelConfig(imgsz=imgsz))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    """Synthetic tiny tomograms; two get an extra labelled motor (the export reads labels, not the image), one a
    corrupt slice."""
    root = tmp_path_factory.mktemp("comp")
    records = synthesize(root, n_train=8, n_test=0, size="tiny", seed=0, progress=False).train
    with_motor = [r for r in records if r.motors]
    pair, corner = with_motor[0], with_motor[1]
    z, y, x = pair.motors[0]
    dz = Z_SPAN if z + Z_SPAN < pair.shape[0] else -Z_SPAN  # stacks near one see the other on both sides of z_span
    pair.motors.append((z + dz, pair.shape[1] - 1 - y, pair.shape[2] - 1 - x))
    corner.motors.append((1.0, 1.0, corner.shape[2] - 2.0))
    for rec in (pair, corner):
        rec.n_motors_stated = len(rec.motors)
    corrupt = next(r for r in records if not r.motors)
    (root / "train" / corrupt.tomo_id / "slice_0007.jpg").write_bytes(b"\xff\xd8 not a jpeg \xff\xd9")
    records_to_frame(records).write_csv(root / "train_labels.csv")
    folds = {r.tomo_id: i % 2 for i, r in enumerate(sorted(records, key=lambda r: r.tomo_id))}
    return Data(root, {r.tomo_id: r for r in records}, folds, corrupt.tomo_id, pair.tomo_id, corner.tomo_id)


@pytest.fixture(scope="module")
def export(data, tmp_path_factory) -> Path:
    return export_fold(data.root, tmp_path_factory.mktemp("export"), 1, kit_config(), data.folds, progress=False).parent


def truth(data: Data, tomo_id: str) -> np.ndarray:
    return np.array(data.records[tomo_id].motors, np.float64).reshape(-1, 3)


def box_side(data: Data, tomo_id: str) -> float:
    return 1000.0 / data.records[tomo_id].voxel_spacing


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


def test_positive_labels_decode_to_the_true_motors(data, export):
    seen = set()
    for _, tomo_id, centre, _, rows in stacks(export):
        motors = truth(data, tomo_id)
        near = motors[np.abs(motors[:, 0] - centre) <= Z_SPAN]
        assert len(rows) == len(near)  # every motor within z_span of the centre, and only those
        if len(rows):
            error = np.abs(decode(rows, centre, data.records[tomo_id].shape[1:]) - near)
            assert error[:, 1:].max() < 1e-4  # y, x exact to the 6 printed decimals
            assert error[:, 0].max() <= 2 * Z_ENC_MIN * Z_SPAN + 1e-4  # zenc >= Z_ENC_MIN: dz = -z_span is clipped
            seen.update((tomo_id, tuple(m)) for m in near)
    listed = {(t, tuple(m)) for t, rec in data.records.items() for m in rec.motors}
    assert listed and seen == listed  # every motor has positive stacks
    assert any(t == data.pair and len(rows) == 2 for _, t, _, _, rows in stacks(export))  # the close pair


def test_boxes_have_the_hit_radius_side_clipped_to_the_image(data, export):
    clipped = 0
    for _, tomo_id, _, _, rows in stacks(export):
        side, (h, w) = box_side(data, tomo_id), data.records[tomo_id].shape[1:]
        for cx, cy, bw, bh, px, py, _ in rows[:, 1:]:
            assert 0 <= cx - bw / 2 and cx + bw / 2 <= 1 + 1e-6 and 0 <= cy - bh / 2 and cy + bh / 2 <= 1 + 1e-6
            inside = side / 2 <= min(px * w, (1 - px) * w, py * h, (1 - py) * h)
            if inside:
                np.testing.assert_allclose([bw * w, bh * h], side, atol=1e-3)
            else:
                assert bw * w < side or bh * h < side
                clipped += 1
    assert clipped  # the corner motor


def test_tiff_pages_are_the_normalised_slices_in_order(data, export):
    cfg = kit_config()
    volumes = {}
    reflected = False
    for _, tomo_id, centre, image, _ in stacks(export):
        if tomo_id not in volumes:
            volumes[tomo_id] = normalize_tomogram(read_tomogram(data.root / "train" / tomo_id), cfg.preprocess)
        volume = volumes[tomo_id]
        ok, pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)
        assert ok and len(pages) == 5
        pad = 2 * STRIDE
        expected = np.pad(np.arange(len(volume)), pad, mode="reflect")[centre + pad + STRIDE * np.arange(-2, 3)]
        np.testing.assert_array_equal(np.stack(pages), volume[expected])
        reflected |= bool(np.any(expected != centre + STRIDE * np.arange(-2, 3)))
    assert reflected  # some stacks reach past the first or last slice


def test_stacks_are_stored_uncompressed_so_the_disk_they_take_is_known(export):
    """Five raw pages plus TIFF headers: what bench/rehearse.py projects the real train set's store from."""
    for _, _, _, image, _ in stacks(export):
        pages = np.stack(cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)[1])
        assert pages.nbytes <= image.stat().st_size <= pages.nbytes + 5 * 512


def test_negatives_are_empty_and_far_from_motors(data, export):
    negatives = [(t, c) for _, t, c, _, rows in stacks(export) if not len(rows)]
    assert any(data.records[t].motors for t, _ in negatives)  # also from tomograms with motors
    for tomo_id, centre in negatives:
        assert np.all(np.abs(truth(data, tomo_id)[:, 0] - centre) > 2 * Z_SPAN)


def test_split_follows_the_folds(data, export):
    split_of = {}
    for split, tomo_id, *_ in stacks(export):
        assert split_of.setdefault(tomo_id, split) == split  # never in both splits
    assert split_of == {t: ("val" if f == 1 else "train") for t, f in data.folds.items() if t != data.corrupt}


def test_dataset_yaml_and_summary(data, export):
    dataset = yaml.safe_load((export / "dataset.yaml").read_text())
    assert Path(dataset["path"]) == export and dataset["train"] == "images/train" and dataset["val"] == "images/val"
    assert dataset["names"] == {0: "motor"} and dataset["channels"] == 5
    assert dataset["kpt_shape"] == [1, 3] and dataset["flip_idx"] == [0]
    assert dataset["stack_stride"] == STRIDE and dataset["z_span"] == Z_SPAN and dataset["fold"] == 1
    summary = json.loads((export / "export_summary.json").read_text())
    assert summary["splits"] == dataset["counts"]
    for split, counts in summary["splits"].items():
        rows = [rows for s, *_, rows in stacks(export) if s == split]
        assert counts["positive"] == sum(len(r) > 0 for r in rows) > 0
        assert counts["negative"] == sum(len(r) == 0 for r in rows) > 0
        assert counts["negative"] <= 2.0 * counts["positive"]
    [skipped] = summary["skipped"]
    assert skipped["tomo_id"] == data.corrupt and skipped["folder"].endswith(data.corrupt)
    assert "slice_0007" in skipped["error"]


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_and_warns_about_unreadable_tomograms(data, export, tmp_path, caplog):
    stale = tmp_path / "images" / "train" / "old_z1.tif"  # left over from an earlier export: must go
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    records = load_labels(data.root / "train_labels.csv")[::-1]  # order does not matter
    with caplog.at_level(logging.WARNING):
        export_fold(data.root, tmp_path, 1, kit_config(), data.folds, records=records, progress=False)
    assert any(data.corrupt in r.getMessage() for r in caplog.records)
    first, again = file_bytes(export), file_bytes(tmp_path)
    assert first.pop("dataset.yaml").replace(str(export).encode(), b"") == again.pop("dataset.yaml").replace(
        str(tmp_path).encode(), b"")
    assert first.pop("export_summary.json") != b"" and again.pop("export_summary.json") != b""
    assert first == again


def test_imgsz_resizes_images_but_not_labels(data, export, tmp_path):
    export_fold(data.root, tmp_path, 1, kit_config(imgsz=48), data.folds, progress=False)
    assert file_bytes(tmp_path / "labels") == file_bytes(export / "labels")
    for *_, image, _ in stacks(tmp_path):
        ok, pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)
        assert ok and len(pages) == 5 and pages[0].shape == (48, 48)


def test_resampled_export_maps_back_to_the_truth(data, tmp_path):
    cfg = kit_config()
    cfg.preprocess.grid, cfg.preprocess.target_spacing = "spacing", 150.0
    export_fold(data.root, tmp_path, 0, cfg, data.folds, progress=False)
    widths = []
    for _, tomo_id, centre, image, rows in stacks(tmp_path):
        rec = data.records[tomo_id]
        grid = resampled_shape(rec.shape, rec.voxel_spacing / 150.0)
        assert grid != rec.shape
        ok, pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)
        assert pages[0].shape == grid[1:]
        if len(rows):
            motors = to_original(decode(rows, centre, grid[1:]), rec.shape, grid)
            assert np.abs(motors[:, None] - truth(data, tomo_id)[None]).max(-1).min(1).max() < 1e-3
            widths.extend(rows[:, 3] * grid[2])  # the box side is the hit radius on the resampled grid
    assert widths and max(widths) == pytest.approx(1000.0 / 150.0, abs=1e-3)


def test_negatives_capped_per_split_whatever_the_record_order(data):
    records = list(data.records.values())

    def counts(neg_ratio: float, records: list[TomoRecord]) -> dict[str, list[int]]:
        """split -> [positives, negatives]; asserts the plan does not depend on the record order."""
        plans = plan_fold(records, data.folds, 1, kit_config(neg_ratio=neg_ratio))
        again = plan_fold(records[::-1], data.folds, 1, kit_config(neg_ratio=neg_ratio))
        key = {p.record.tomo_id: (p.split, p.positives, p.negatives) for p in again}
        assert {p.record.tomo_id: (p.split, p.positives, p.negatives) for p in plans} == key
        out = {s: [0, 0] for s in ("train", "val")}
        for p in plans:
            out[p.split][0] += len(p.positives)
            out[p.split][1] += len(p.negatives)
        return out

    uncapped, capped = counts(100.0, records), counts(0.5, records)
    for split, (positives, negatives) in capped.items():
        assert uncapped[split][1] > 0.5 * positives  # the cap binds
        assert 0 < negatives == int(0.5 * positives)


def test_rejects_tomograms_without_a_fold(data, tmp_path):
    with pytest.raises(ValueError, match="no fold"):
        export_fold(data.root, tmp_path, 0, kit_config(), {data.pair: 0}, progress=False)


def test_crop_origin_keeps_the_target_inside_with_a_margin():
    rng = np.random.default_rng(0)
    for _ in range(200):
        hw = tuple(int(v) for v in rng.integers(40, 120, 2))
        target = rng.uniform(0, hw)
        y0, x0 = crop_origin(hw, 32, target, 4.0, rng)
        assert 0 <= y0 <= max(hw[0] - 32, 0) and 0 <= x0 <= max(hw[1] - 32, 0)
        for t, o, size in zip(target, (y0, x0), hw):
            assert o <= t < o + 32  # the target is always in the window...
            if 4.0 <= t <= size - 4.0:
                assert o + 4.0 <= t + 1e-9 and t <= o + 32 - 4.0 + 1e-9  # ...and a margin inside where it can be
    assert crop_origin((20, 50), 32, None, 4.0, rng)[0] == 0  # smaller than the window: the whole side


def test_crops_are_full_resolution_windows_labelling_the_motors_inside(data, tmp_path):
    crop, cfg = 48, kit_config(crop=48)
    export_fold(data.root, tmp_path, 1, cfg, data.folds, progress=False)
    volumes = {}
    positives = 0
    for _, tomo_id, centre, image, rows in stacks(tmp_path):
        if tomo_id == data.corrupt:
            continue
        if tomo_id not in volumes:
            volumes[tomo_id] = normalize_tomogram(read_tomogram(data.root / "train" / tomo_id), cfg.preprocess)
        ok, pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)
        page = pages[2]
        assert ok and page.shape == (crop, crop)
        full = volumes[tomo_id][centre]
        windows = np.lib.stride_tricks.sliding_window_view(full, (crop, crop))
        matches = np.argwhere((windows == page).all(axis=(2, 3)))
        assert len(matches), f"{image.name}: not a window of slice {centre}"
        y0, x0 = matches[0]
        motors = truth(data, tomo_id)
        inside = motors[(np.abs(motors[:, 0] - centre) <= Z_SPAN) & (motors[:, 1] + 0.5 >= y0)
                        & (motors[:, 1] + 0.5 <= y0 + crop) & (motors[:, 2] + 0.5 >= x0) & (motors[:, 2] + 0.5 <= x0 + crop)]
        assert len(rows) == len(inside)
        if len(rows):
            decoded = decode(rows, centre, (crop, crop)) + [0, y0, x0]
            order = np.lexsort(decoded.T[::-1]), np.lexsort(inside.T[::-1])
            np.testing.assert_allclose(decoded[order[0]][:, 1:], inside[order[1]][:, 1:], atol=1e-3)
        near = motors[np.abs(motors[:, 0] - centre) <= 2]  # a positive centre (z_window = 2) keeps its motor
        positives += bool(len(near))
        assert not len(near) or len(rows)
    assert positives


def test_crops_keep_full_resolution_whatever_the_model_size(data, tmp_path):
    export_fold(data.root, tmp_path, 1, kit_config(crop=48, imgsz=32), data.folds, progress=False)
    pages = [cv2.imreadmulti(str(f), flags=cv2.IMREAD_UNCHANGED)[1] for f in sorted(tmp_path.glob("images/*/*.tif"))]
    assert pages and all(p[0].shape == (48, 48) for p in pages)


def test_crops_larger_than_the_slice_are_padded_grey_and_keep_their_labels(data, tmp_path):
    crop = 128  # the tiny slices are 96 x 96
    export_fold(data.root, tmp_path, 1, kit_config(crop=crop), data.folds, progress=False)
    labelled = 0
    for _, tomo_id, centre, image, rows in stacks(tmp_path):
        pages = cv2.imreadmulti(str(image), flags=cv2.IMREAD_UNCHANGED)[1]
        h, w = data.records[tomo_id].shape[1:]
        assert all(p.shape == (crop, crop) and (p[h:] == 114).all() and (p[:, w:] == 114).all() for p in pages)
        if len(rows):
            motors = truth(data, tomo_id)
            near = motors[np.abs(motors[:, 0] - centre) <= Z_SPAN]
            decoded = decode(rows, centre, (crop, crop))
            np.testing.assert_allclose(np.sort(decoded[:, 1:], 0), np.sort(near[:, 1:], 0), atol=1e-3)
            labelled += 1
    assert labelled
