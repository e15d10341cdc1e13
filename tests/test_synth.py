"""Synthetic competition data: layout, labels, determinism, calibration and a visible motor."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from kitlib.data.errors import DataError
from kitlib.data.labels import COORD_COLUMNS, LABEL_COLUMNS, load_labels, solution_frame
from kitlib.data.synth import MARKER, SIZES, STYLE_FILE, STYLES, synthesize
from kitlib.data.synth import generate
from kitlib.data.synth.generate import GENERATOR, motor_counts
from kitlib.data.synth.render import NoiseStream, _low_pass, filter_density, render_slabs
from kitlib.data.synth.scene import REPORTED_TEST_SHAPE, draw_acquisition, draw_imaging, plan_scene
from kitlib.data.synth.shapes import Motor
from kitlib.data.synth.stats import REAL_LABEL_STATS, label_stats

REAL_LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "byu_train_labels.csv"
REAL_SPACINGS = {a[3] for a in REAL_LABEL_STATS.acquisitions}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth"), n_train=5, n_test=3, size="tiny", seed=0, progress=False)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_is_the_competitions(dataset):
    root = dataset.out
    assert {p.name for p in root.iterdir() if not p.name.startswith(".")} == {
        "train", "test", "train_labels.csv", "sample_submission.csv", "test_solution.csv"
    }
    for split, records in (("train", dataset.train), ("test", dataset.test)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(r.tomo_id for r in records)
        for rec in records:
            assert rec.tomo_id.startswith("tomo_") and len(rec.tomo_id) == 11
            int(rec.tomo_id[5:], 16)
            names = sorted(p.name for p in (root / split / rec.tomo_id).iterdir())
            assert names == [f"slice_{k:04d}.jpg" for k in range(rec.shape[0])]
            with Image.open(root / split / rec.tomo_id / "slice_0000.jpg") as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "L", (rec.shape[2], rec.shape[1]))
    assert pl.read_csv(root / "train_labels.csv").columns == LABEL_COLUMNS
    sample = pl.read_csv(root / "sample_submission.csv")
    assert sample.columns == ["tomo_id", *COORD_COLUMNS]
    assert sorted(sample["tomo_id"]) == sorted(r.tomo_id for r in dataset.test)
    assert (sample.select(COORD_COLUMNS).to_numpy() == -1).all()
    assert pl.read_csv(root / "test_solution.csv").columns == ["tomo_id", *COORD_COLUMNS, "Voxel spacing"]


def test_labels_read_back_as_generated(dataset):
    assert load_labels(dataset.csvs["train_labels"]) == sorted(dataset.train, key=lambda r: r.tomo_id)
    solution = pl.read_csv(dataset.csvs["test_solution"])
    expected = solution_frame(sorted(dataset.test, key=lambda r: r.tomo_id))
    assert solution.cast(expected.schema).equals(expected)
    assert all(len(r.motors) <= 1 for r in dataset.test)


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    again = synthesize(tmp_path / "again", n_train=5, n_test=3, size="tiny", seed=0, progress=False)
    assert file_hashes(again.out) == file_hashes(dataset.out)
    other = synthesize(tmp_path / "other", n_train=5, n_test=3, size="tiny", seed=1, progress=False)
    assert set(file_hashes(other.out).values()).isdisjoint(
        h for name, h in file_hashes(dataset.out).items() if name.endswith(".jpg")
    )


def test_many_tomograms_are_written_by_a_process_per_core_byte_for_byte_as_one_process_would(tmp_path, monkeypatch):
    n = generate.PROCESSES_FROM
    parallel = synthesize(tmp_path / "parallel", n_train=n - 2, n_test=2, size="tiny", seed=3, progress=False)
    monkeypatch.setattr(generate, "PROCESSES_FROM", 10**9)
    one = synthesize(tmp_path / "one", n_train=n - 2, n_test=2, size="tiny", seed=3, progress=False)
    assert file_hashes(parallel.out) == file_hashes(one.out) and parallel.train == one.train


def test_rerun_replaces_but_foreign_folder_is_refused(tmp_path):
    synthesize(tmp_path / "d", n_train=2, n_test=0, size="tiny", seed=0, progress=False)
    result = synthesize(tmp_path / "d", n_train=1, n_test=1, size="tiny", seed=3, progress=False)
    assert len(list((tmp_path / "d" / "train").iterdir())) == 1
    assert result.csvs["sample_submission"].exists()
    (tmp_path / "real" / "train").mkdir(parents=True)
    with pytest.raises(DataError):
        synthesize(tmp_path / "real", n_train=1, n_test=0, size="tiny", progress=False)
    with pytest.raises(ValueError):
        synthesize(tmp_path / "x", n_train=1, n_test=0, size="huge", progress=False)


def test_motor_free_fraction_and_counts():
    train, test = motor_counts(0, "train", 400), motor_counts(0, "test", 400)
    for counts in (train, test):
        assert abs(np.mean(np.array(counts) == 0) - REAL_LABEL_STATS.motor_free_fraction) < 0.01
    assert max(test) == 1
    assert 0.03 < np.mean(np.array(train) >= 2) < 0.12  # 45 of 648 real tomograms


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_scenes_follow_real_acquisitions_and_keep_motors_inside(size):
    binning = SIZES[size]
    spacings, z_rel = [], []
    for i in range(60):
        scene = plan_scene(np.random.default_rng([7, i]), binning, n_motors=1 + i % 4)
        spacings.append(scene.spacing / binning.factor)
        assert scene.motors, "at least the first motor is always placed"
        for motor in scene.motors:
            assert all(0 <= c <= n - 1 for c, n in zip(motor, scene.shape))
            z_rel.append(motor[0] / scene.shape[0])
        if binning.crop:
            assert all(n <= c for n, c in zip(scene.shape, binning.crop))
    assert all(any(abs(s - real) < 1e-6 for real in REAL_SPACINGS) for s in spacings)
    assert np.mean(np.array(spacings) == 13.1) > 0.2  # the most common real spacing
    assert 0.35 < np.median(z_rel) < 0.6  # mostly mid-depth, as labelled


@pytest.mark.skipif(not REAL_LABELS.exists(), reason="../shared reference labels absent")
def test_embedded_statistics_match_the_real_label_file():
    assert label_stats(load_labels(REAL_LABELS)) == REAL_LABEL_STATS


def test_motor_is_a_visible_structure(dataset):
    """The label points at dense (dark) material: a ball of 250 A is darker than the shell 600-1000 A around it."""
    contrasts = []
    for split in ("train", "test"):
        for rec in getattr(dataset, split):
            if not rec.motors:
                continue
            folder = dataset.out / split / rec.tomo_id
            volume = np.stack([np.asarray(Image.open(folder / f"slice_{k:04d}.jpg")) for k in range(rec.shape[0])])
            grid = np.indices(rec.shape, dtype=np.float32)
            for motor in rec.motors:
                dist_a = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, motor))) * rec.voxel_spacing
                ball, shell = volume[dist_a <= 250], volume[(dist_a >= 600) & (dist_a <= 1000)]
                contrasts.append(shell.mean() - ball.mean())
    assert contrasts and min(contrasts) > 5.0, contrasts


def test_noise_stream_does_not_depend_on_slab_size():
    """Slab by slab equals all at once, even when the caller overwrites each slab (as the exposure does)."""
    imaging = draw_imaging(np.random.default_rng(0), bin_factor=1, spacing=15.6)
    whole = NoiseStream(np.random.default_rng(1), 40, 30, imaging).next(12)
    stream, parts = NoiseStream(np.random.default_rng(1), 40, 30, imaging), []
    for _ in range(4):
        slab = stream.next(3)
        parts.append(slab.copy())
        slab[:] = 255.0
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert abs(whole.std() - 1) < 0.1


def test_acquisitions_follow_the_real_distribution_with_the_fine_spacings():
    """`draw_acquisition` (what `size="real"` writes at the native grid) reproduces the label file's shapes and
    spacings: frequencies within sampling noise, median 15.6 A, the rare 6.5 A acquisitions drawn too."""
    stats, n = REAL_LABEL_STATS, 20_000
    rng = np.random.default_rng(3)
    draws = [draw_acquisition(rng, stats) for _ in range(n)]
    spacings = np.array([s for _, s in draws])
    expected = {}
    for z, y, x, s, count in stats.acquisitions:
        expected[(z, y, x), s] = expected.get(((z, y, x), s), 0) + count / stats.n_tomograms
    seen = {key: c / n for key, c in Counter(draws).items()}
    assert set(seen) <= set(expected)
    for key, p in expected.items():  # 4 binomial standard deviations, at least one draw's worth
        assert abs(seen.get(key, 0.0) - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1 / n, key
    assert np.median(spacings) == 15.6 and spacings.min() == 6.5 and spacings.max() == 19.7
    assert abs(np.mean(spacings == 6.5) - 3 / 648) < 0.003
    shapes = np.array([shape for shape, _ in draws])
    assert shapes[:, 0].min() == 300 and shapes[:, 0].max() == 800
    assert shapes[:, 1:].min() == 924 and shapes[:, 1:].max() == 1912


def test_real_size_test_tomograms_take_the_reported_test_shape():
    """At `real` size a test tomogram has the reported test mean shape and a spacing drawn from the train ones; a
    train tomogram keeps a real train shape. Planned only (no real-size volume is rendered)."""
    binning = SIZES["real"]
    assert binning.factor == 1 and binning.test_shape == REPORTED_TEST_SHAPE == (400, 1400, 1050)
    train_shapes = {a[:3] for a in REAL_LABEL_STATS.acquisitions}
    for i in range(3):
        test = plan_scene(np.random.default_rng([11, i]), binning, n_motors=1, test=True)
        train = plan_scene(np.random.default_rng([11, i]), binning, n_motors=1)
        assert test.shape == REPORTED_TEST_SHAPE and train.shape in train_shapes
        assert test.spacing == train.spacing and test.spacing in REAL_SPACINGS
        assert all(0 <= c <= s - 1 for c, s in zip(test.motors[0], test.shape))
    small = plan_scene(np.random.default_rng(0), SIZES["small"], n_motors=1, test=True)
    assert small.shape in {SIZES["small"].shape(s) for s in train_shapes}  # only `real` has a test shape


def test_styles_are_drawn_from_the_chosen_families_and_recorded(tmp_path):
    result = synthesize(tmp_path / "d", n_train=3, n_test=2, size="tiny", seed=1, styles=("ctf",), progress=False)
    frame = pl.read_csv(tmp_path / "d" / STYLE_FILE)
    assert frame["style"].unique().to_list() == ["ctf"]
    assert sorted(frame["tomo_id"]) == sorted(result.styles) == sorted(r.tomo_id for r in result.train + result.test)
    marker = json.loads((tmp_path / "d" / MARKER).read_text())
    assert (marker["styles"], marker["generator"]) == (["ctf"], GENERATOR)
    with pytest.raises(ValueError, match="unknown style.*clean, ctf, dose, thick"):
        synthesize(tmp_path / "e", 1, 0, size="tiny", styles=("glossy",), progress=False)


def within(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] - 1e-9 <= value <= bounds[1] + 1e-9


def test_every_drawn_value_lies_in_its_style_and_the_default_mixes_them_all():
    """Planned only: each style's imaging and motors stay inside its ranges; without a choice every style occurs."""
    for name, style in STYLES.items():
        for seed in range(12):
            scene = plan_scene(np.random.default_rng(seed), SIZES["small"], 1, styles=(name,))
            im = scene.imaging
            assert scene.style == name
            assert within(im.bandpass, style.bandpass) and within(abs(im.z_drift), style.z_drift)
            assert within(im.shot_noise, style.shot_noise) and within(im.jpeg_quality, style.jpeg_quality)
            assert within(im.blur * scene.spacing, style.blur_a)
            assert within(im.bandpass_sigma * scene.spacing, style.bandpass_a)
            motors = [s for s in scene.shapes if isinstance(s, Motor)]
            assert motors and all(within(m.scale, style.motor_scale) and within(m.core, style.motor_core)
                                  for m in motors)
            assert all(within(m.stretch, style.wedge_stretch) for m in motors)
    drawn = {plan_scene(np.random.default_rng(seed), SIZES["tiny"], 0).style for seed in range(40)}
    assert drawn == set(STYLES)


def test_band_pass_fades_large_dense_regions_and_keeps_their_edges():
    """The CTF-like filter: a large dense square keeps a sharp edge but its interior fades towards the background."""
    imaging = draw_imaging(np.random.default_rng(0), 1, 15.6, STYLES["ctf"])
    imaging = dataclasses.replace(imaging, bandpass=0.9, bandpass_sigma=8.0, blur=0.0)
    slab = np.zeros((1, 96, 96), dtype=np.float32)
    slab[0, 24:72, 24:72] = 1.0
    filter_density(slab, imaging)
    assert slab[0, 48, 48] < 0.2  # the interior lost most of its density
    assert slab[0, 48, 25] - slab[0, 48, 22] > 0.6  # the edge still steps by most of the original


def test_wide_low_pass_on_a_shrunken_copy_matches_the_full_one():
    import cv2

    image = np.random.default_rng(0).random((240, 200), dtype=np.float32)
    image[60:180, 50:150] += 2.0
    full = cv2.GaussianBlur(image, (0, 0), 15.0, borderType=cv2.BORDER_REFLECT)
    assert np.abs(_low_pass(image, 15.0) - full).max() < 0.05


def test_z_drift_moves_the_mean_grey_from_top_to_bottom():
    scene = plan_scene(np.random.default_rng(2), SIZES["tiny"], 1, styles=("clean",))

    def slice_means(drift: float) -> np.ndarray:
        drifted = dataclasses.replace(scene, imaging=dataclasses.replace(scene.imaging, z_drift=drift))
        volume = np.concatenate([slab for _, slab in render_slabs(drifted, np.random.default_rng(3))])
        return volume.reshape(len(volume), -1).mean(1)

    change = slice_means(30.0) - slice_means(0.0)
    assert abs(change[-1] - change[0] - 30.0) < 2.0 and abs(change.mean()) < 2.0
