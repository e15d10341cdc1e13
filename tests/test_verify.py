"""The verifier (`kitlib.verify`): patches cut where the points are, binned and mirrored like the stacks; the
verified score; labels of stored candidates; a network that learns a toy motor from patches; its file round trip;
and a fold's out-of-fold candidates rescored by that fold's own network."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from kitlib.config import ConfigError, KitConfig, VerifyConfig
from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord
from kitlib.infer.predict import CANDIDATE_SCHEMA
from kitlib.run import RunDir
from kitlib.verify.folds import rescore_held_out, train_fold_verifiers
from kitlib.verify.patches import augment, cut_patches, cut_shape, network_input
from kitlib.verify.rescore import best_verified, verified_scores
from kitlib.verify.store import TomoPatches, candidate_labels, load_tomo_patches, save_tomo_patches, training_samples
from kitlib.verify.train import train_net
from kitlib.verify.verifier import Verifier

SMALL = VerifyConfig(patch=12, shift=2, planes=3, plane_step=2, shift_z=1, bin=1, width=0.5, steps=1)
DEPTH, SIDE = cut_shape(SMALL)  # 7 slices, 16 voxels


def test_a_patch_is_centred_on_its_point_and_the_network_sees_planes_plane_step_apart():
    grid = np.zeros((20, 30, 30), np.uint8)
    grid[10, 14, 17] = 192
    grid[12, 14, 17] = 160  # one plane_step below
    patches = cut_patches(grid, np.array([[10.2, 13.8, 17.4]]), SMALL)
    assert patches.shape == (1, DEPTH, SIDE, SIDE) == (1, 7, 16, 16) and patches.dtype == np.uint8
    assert patches[0, 3, 8, 8] == 192 and patches[0, 5, 8, 8] == 160 and patches.sum() == 352  # nothing else came
    x = network_input(patches, SMALL)  # the centred window: slices 1, 3, 5 of 7, voxels 2..13
    assert x.shape == (1, 3, 12, 12) and x[0, 1, 6, 6] == 1.0 and x[0, 2, 6, 6] == 0.5 and (x > -2).sum() == 2


def test_points_at_the_edge_see_the_grid_mirrored_as_the_stacks_are():
    grid = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)
    vcfg = VerifyConfig(patch=4, shift=0, planes=3, plane_step=1, shift_z=0, bin=1)
    patch = cut_patches(grid, np.array([[0, 0, 0]]), vcfg)[0]
    assert np.array_equal(patch[0], patch[2])  # slice -1 is slice 1
    assert patch[1, 1, 1] == grid[0, 1, 1] and patch[1, 2, 2] == grid[0, 0, 0]  # y, x -2 / -1 are 2 / 1


def test_binning_averages_bin_cubed_voxels():
    grid = np.zeros((16, 16, 16), np.uint8)
    grid[8:10, 8:10, 8:10] = 80  # one binned voxel (bin 2), where the point (8.5, 8.5, 8.5) rounds to
    vcfg = VerifyConfig(patch=4, shift=0, planes=1, plane_step=1, shift_z=0, bin=2)
    patch = cut_patches(grid, np.array([[8.5, 8.5, 8.5]]), vcfg)[0, 0]
    assert patch.shape == (4, 4) and patch[2, 2] == 80 and patch.sum() == 80


def test_augmented_views_keep_a_centred_point_in_the_centre_and_shifts_stay_within_the_room():
    vcfg = VerifyConfig(patch=13, shift=0, planes=3, plane_step=1, shift_z=0)  # no room: flips, rotations, contrast
    patches = np.zeros((8, 3, 13, 13), np.uint8)
    patches[:, 1, 6, 6] = 255
    views = augment(patches, vcfg, np.random.default_rng(0))
    assert views.shape == (8, 3, 13, 13) and views.dtype == np.float32
    assert all(np.unravel_index(np.argmax(v), v.shape) == (1, 6, 6) for v in views)
    patches = np.zeros((64, DEPTH, SIDE, SIDE), np.uint8)
    patches[:, DEPTH // 2, SIDE // 2, SIDE // 2] = 255  # one slice: a window moved by a slice misses it
    views = augment(patches, SMALL, np.random.default_rng(1))
    seen = np.array([v.max() > v.min() for v in views])
    assert 0 < seen.sum() < len(views)  # moved along z in some views (by 1 slice: plane_step 2 skips it), not all
    peaks = np.array([np.unravel_index(np.argmax(v), v.shape) for v in views[seen]])
    assert set(peaks[:, 0]) == {1}  # and never by a whole plane
    # in-plane up to 2 voxels from the centre (voxel 6 of 12, or 5 when flipped)
    assert 3 <= peaks[:, 1:].min() and peaks[:, 1:].max() <= 8 and len(np.unique(peaks[:, 1:], axis=0)) > 4


def test_the_verified_score_needs_both_stages_and_ties_keep_the_detectors_order():
    assert np.allclose(verified_scores([0.6, 0.3], [0.1, 0.9]), [0.06, 0.27])
    assert best_verified(np.array([0.6, 0.3]), np.array([0.1, 0.9])) == (1, pytest.approx(0.27))
    assert best_verified(np.array([0.5, 0.5]), np.array([0.4, 0.4]))[0] == 0
    with pytest.raises(ValueError, match="one probability per candidate"):
        verified_scores([0.1, 0.2], [0.3])


def test_candidates_are_labelled_by_the_hit_radius_and_unknown_where_motors_are_unlisted():
    record = TomoRecord("t", (50, 100, 100), 10.0, [(20.0, 50.0, 50.0)], n_motors_stated=1)
    zyx = np.array([[20, 50, 149.9], [20, 50, 150.1], [20, 50, 50]])  # the radius is 1000 A = 100 voxels
    assert candidate_labels(zyx, record).tolist() == [1, 0, 1]
    unlisted = TomoRecord("u", (50, 100, 100), 10.0, [(20.0, 50.0, 50.0)], n_motors_stated=2)
    assert candidate_labels(zyx, unlisted).tolist() == [1, -1, 1]
    assert candidate_labels(zyx, TomoRecord("e", (50, 100, 100), 10.0)).tolist() == [0, 0, 0]


def test_stored_patches_round_trip_and_give_training_samples(tmp_path):
    item = TomoPatches("t", np.array([[20.0, 50.0, 50.0], [20.0, 50.0, 400.0]]), np.array([0.7, 0.2]),
                       np.full((2, DEPTH, SIDE, SIDE), 7, np.uint8), np.full((1, DEPTH, SIDE, SIDE), 9, np.uint8))
    save_tomo_patches(tmp_path, item)
    back = load_tomo_patches(tmp_path, "t")
    assert np.array_equal(back.zyx, item.zyx) and np.array_equal(back.patches, item.patches)
    record = TomoRecord("t", (50, 500, 500), 10.0, [(20.0, 50.0, 50.0)], n_motors_stated=1)
    patches, labels = training_samples(tmp_path, [record])
    assert labels.tolist() == [True, False, True] and patches[2].max() == 9  # the candidates, then the motor
    (tmp_path / "bad.npz").write_text("not numpy")
    with pytest.raises(DataError, match=r"bad\.npz: cannot read the verifier's patches"):
        load_tomo_patches(tmp_path, "bad")


def toy_patches(n: int, rng: np.random.Generator, vcfg: VerifyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a dark blob: at the centre for motors (label 1), off-centre (a decoy) or absent otherwise."""
    depth, side = cut_shape(vcfg)
    yy, xx = np.mgrid[0:side, 0:side] - side // 2
    labels = np.arange(n) % 2 == 0
    patches = rng.normal(128, 12, (n, depth, side, side))
    for i in range(n):
        if labels[i] or i % 4 == 1:
            cy, cx = (0, 0) if labels[i] else rng.choice([-1, 1], 2) * rng.integers(6, 9, 2)
            patches[i, depth // 2 - 1 : depth // 2 + 2] -= 70 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    return np.clip(patches, 0, 255).astype(np.uint8), labels


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(scores)) + 1
    return float((ranks[labels].sum() - labels.sum() * (labels.sum() + 1) / 2) / (labels.sum() * (~labels).sum()))


def test_the_network_learns_a_centred_motor_from_a_decoy(tmp_path):
    torch.set_num_threads(1)
    vcfg = VerifyConfig(patch=24, shift=2, planes=3, plane_step=2, shift_z=1, bin=1, width=0.5, steps=150, batch=16)
    rng = np.random.default_rng(0)
    train_x, train_y = toy_patches(64, rng, vcfg)
    test_x, test_y = toy_patches(40, rng, vcfg)
    verifier = Verifier({0: [train_net(train_x, train_y, vcfg, seed=0)]}, vcfg)
    assert auc(verifier.probability(test_x), test_y) > 0.9
    again = Verifier({0: [train_net(train_x, train_y, vcfg, seed=0)]}, vcfg)  # one seed, one network
    assert np.array_equal(again.probability(test_x), verifier.probability(test_x))

    loaded = Verifier.load(verifier.save(tmp_path / "verifier.pt"))
    assert np.allclose(loaded.probability(test_x), verifier.probability(test_x), atol=1e-6)
    assert loaded.geometry() == {"patch": 24, "shift": 2, "shift_z": 1, "planes": 3, "plane_step": 2, "bin": 1}


def test_each_fold_trains_its_members_from_their_own_seeds_and_scores_with_their_mean(tmp_path):
    torch.set_num_threads(1)
    vcfg = VerifyConfig(patch=12, shift=2, planes=3, plane_step=2, shift_z=1, bin=1, width=0.5, steps=3, batch=4,
                        members=2)
    rng = np.random.default_rng(0)
    records, folds = [], {}
    for i in range(4):  # two tomograms a fold, a motor at a candidate of each and a decoy beside it
        zyx = np.array([[10.0, 30.0, 30.0], [10.0, 30.0, 90.0]])
        save_tomo_patches(tmp_path, TomoPatches(f"t{i}", zyx, np.array([0.6, 0.5]),
                                                toy_patches(2, rng, vcfg)[0], toy_patches(1, rng, vcfg)[0]))
        records.append(TomoRecord(f"t{i}", (20, 120, 120), 40.0, [(10.0, 30.0, 30.0)], n_motors_stated=1))
        folds[f"t{i}"] = i % 2
    verifier = train_fold_verifiers(tmp_path, records, folds, vcfg, seed=3)
    assert {fold: len(members) for fold, members in verifier.nets.items()} == {0: 2, 1: 2}
    # fold 0's members learn from fold 1's tomograms only, member m from seed (3 + m) * 1000 + fold
    patches, labels = training_samples(tmp_path, [r for r in records if folds[r.tomo_id] == 1])
    for m, net in enumerate(verifier.nets[0]):
        alone = train_net(patches, labels, vcfg, seed=(3 + m) * 1000)
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), alone.state_dict().values()))
    x = load_tomo_patches(tmp_path, "t0").patches
    each = [Verifier({0: [net]}, vcfg).probability(x) for net in verifier.nets[0]]
    assert np.allclose(verifier.probability(x, fold=0), np.mean(each, 0), atol=1e-7)
    assert not np.allclose(each[0], each[1])  # two seeds, two opinions
    assert np.allclose(Verifier.load(verifier.save(tmp_path / "v.pt")).probability(x, 0), verifier.probability(x, 0))



def test_a_network_needs_both_classes_and_a_bad_file_is_named():
    patches = np.zeros((4, DEPTH, SIDE, SIDE), np.uint8)
    with pytest.raises(ValueError, match="needs motor and non-motor patches; got 4 and 0"):
        train_net(patches, np.ones(4, bool), SMALL)


def test_an_unreadable_verifier_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "verifier.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"verifier\.pt: not a readable verifier .*make local-score") as e:
        Verifier.load(bad)
    assert "\n" not in str(e.value)


def test_a_fold_is_rescored_by_its_own_network(tmp_path):
    torch.manual_seed(0)
    from kitlib.verify.net import PatchNet

    nets = {0: [PatchNet(SMALL.planes, SMALL.width)], 1: [PatchNet(SMALL.planes, SMALL.width)]}
    verifier = Verifier(nets, SMALL)
    rng = np.random.default_rng(1)
    item = TomoPatches("t", rng.uniform(0, 50, (4, 3)), np.array([0.5, 0.45, 0.4, 0.1]),
                       rng.integers(0, 255, (4, DEPTH, SIDE, SIDE), dtype=np.uint8),
                       np.zeros((0, DEPTH, SIDE, SIDE), np.uint8))
    save_tomo_patches(tmp_path, item)
    row = {**{k: None for k in CANDIDATE_SCHEMA}, "tomo_id": "t", "z": 1.0, "y": 2.0, "x": 3.0, "score": 0.5}
    frame = pl.DataFrame([row], schema=CANDIDATE_SCHEMA)
    for fold in (0, 1):
        out = rescore_held_out(frame, tmp_path, verifier, fold).row(0, named=True)
        probabilities = verifier.probability(item.patches, fold)
        best, score = best_verified(item.scores, probabilities)
        assert (out["z"], out["y"], out["x"]) == tuple(item.zyx[best]) and out["score"] == pytest.approx(score)
        assert out["detector_score"] == item.scores[best] and out["verify_score"] == pytest.approx(probabilities[best])


def test_the_verify_section_is_checked_and_the_cpu_preset_turns_it_on():
    assert KitConfig.preset("cpu").verify.enabled and not KitConfig.preset("default").verify.enabled
    assert KitConfig.preset("cpu").verify.bin == 1 and KitConfig.preset("default").verify.bin == 4
    with pytest.raises(ConfigError, match="verify.planes: must be odd"):
        KitConfig().override({"verify": {"planes": 4}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"x.yaml: verify.steps: must be >= 1"):
        KitConfig().override({"verify": {"steps": 0}}, "x.yaml")


def test_a_weights_folder_never_takes_the_verifier_for_a_detector(tmp_path):
    for name in ("a.pt", "b.pt", "verifier.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in RunDir(tmp_path).checkpoints()] == ["a.pt", "b.pt"]
