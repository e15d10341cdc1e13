import numpy as np
import pytest

from kitlib.infer.fusion import Candidate, fuse_points, radius_voxels, spacing_or_assumed


def _blob(centre, conf, n, spread=2.0):
    """``n`` points placed symmetrically about ``centre`` (so any symmetric weighting keeps the centre)."""
    rng = np.random.default_rng(n)
    half = rng.uniform(-spread, spread, (n, 3))
    offsets = np.concatenate([half, -half])
    return np.column_stack([np.asarray(centre) + offsets, np.full(2 * n, conf)])


def _reference(points, radius):
    """Brute-force greedy clustering: member index sets, in seed order."""
    order = np.lexsort((points[:, 2], points[:, 1], points[:, 0], -points[:, 3]))
    free = list(order)
    clusters = []
    while free:
        seed = free[0]
        members = [i for i in free if np.sum((points[i, :3] - points[seed, :3]) ** 2) <= radius**2]
        free = [i for i in free if i not in members]
        clusters.append(members)
    return clusters


def test_two_separated_blobs():
    pts = np.concatenate([_blob((50, 100, 200), 0.8, 4), _blob((150, 300, 40), 0.5, 3)])
    a, b = fuse_points(pts, radius=20, top_k=5)
    np.testing.assert_allclose([a.z, a.y, a.x], [50, 100, 200], atol=1e-9)
    np.testing.assert_allclose([b.z, b.y, b.x], [150, 300, 40], atol=1e-9)
    assert (a.n_members, b.n_members) == (8, 6)
    assert a.score == pytest.approx(0.8) and b.score == pytest.approx(0.5)


def test_close_pair_merges_at_weighted_mean():
    pts = np.array([[10.0, 10, 10, 0.9], [10.0, 13, 14, 0.3]])  # 5 voxels apart
    (c,) = fuse_points(pts, radius=6)
    assert c.n_members == 2
    np.testing.assert_allclose([c.z, c.y, c.x], [10, 10.75, 11.0])
    assert len(fuse_points(pts, radius=4.9)) == 2


def test_consistent_motor_beats_single_blip():
    motor = np.array([[z, 100.0, 100.0, 0.6] for z in (40, 44, 48, 52)])
    blip = np.array([[200.0, 300.0, 300.0, 0.9]])
    best, second = fuse_points(np.concatenate([blip, motor]), radius=30, per_view=3)
    assert (best.n_members, second.n_members) == (4, 1)
    assert best.score == pytest.approx(0.6)  # fully supported: the mean of its best 3
    assert second.score == pytest.approx(0.3)  # 0.9 / 3
    # with two views the same single-view motor only half-fills its 6 slots
    assert fuse_points(motor, radius=30, n_views=2, per_view=3)[0].score == pytest.approx(0.4)


def test_score_is_bounded_and_monotone_in_members():
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.normal(50, 3, (40, 3)), rng.uniform(0.05, 1, 40)])
    scores = [fuse_points(pts[:n], radius=100)[0].score for n in range(1, 41)]
    assert np.all(np.diff(scores) >= 0)
    assert 0 < scores[-1] <= pts[:, 3].max()


def test_empty_and_non_positive_confidence():
    assert fuse_points(np.empty((0, 4)), radius=5) == []
    assert fuse_points([], radius=5) == []
    assert fuse_points(np.array([[1.0, 2, 3, 0.0]]), radius=5) == []
    with pytest.raises(ValueError, match="finite"):
        fuse_points(np.array([[np.nan, 2, 3, 0.5]]), radius=5)
    with pytest.raises(ValueError, match="radius"):
        fuse_points(np.array([[1.0, 2, 3, 0.5]]), radius=0)


def test_top_k_and_min_members():
    pts = np.array([[i * 100.0, 0, 0, 0.1 + 0.1 * i] for i in range(8)])
    got = fuse_points(pts, radius=10, top_k=3)
    assert [c.z for c in got] == [700, 600, 500]
    pair = np.concatenate([pts, [[0.0, 1, 1, 0.05]]])
    (only,) = fuse_points(pair, radius=10, min_members=2)
    assert only.n_members == 2 and only.z == 0


def test_permutation_invariant():
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 500, (30, 3))
    pts = np.column_stack([centres[rng.integers(30, size=3000)] + rng.normal(0, 8, (3000, 3)), rng.random(3000)])
    pts = np.concatenate([pts, pts[:50]])  # exact duplicates, too
    want = fuse_points(pts, radius=15, top_k=50)
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(len(pts))
        assert fuse_points(pts[perm], radius=15, top_k=50) == want


@pytest.mark.parametrize("radius", [3.0, 15.0, 60.0])
def test_grid_matches_brute_force_greedy(radius):
    rng = np.random.default_rng(2)
    pts = np.column_stack([rng.uniform(-50, 150, (400, 3)), rng.random(400)])
    clusters = _reference(pts, radius)
    got = fuse_points(pts, radius=radius, top_k=10_000)
    assert sorted(c.n_members for c in got) == sorted(len(m) for m in clusters)
    for c in got[:20]:
        (match,) = [m for m in clusters if np.allclose([c.z, c.y, c.x], np.average(pts[m, :3], 0, pts[m, 3]))]
        assert c.n_members == len(match)


def test_radius_and_spacing():
    assert radius_voxels(10.0, 0.5) == pytest.approx(50.0)
    assert radius_voxels(20.0, 1.0, hit_radius_A=500.0) == pytest.approx(25.0)
    with pytest.raises(ValueError):
        radius_voxels(0.0, 0.5)
    assert spacing_or_assumed(15.6, 13.1) == 15.6
    assert spacing_or_assumed(None, 13.1) == 13.1
    assert spacing_or_assumed(float("nan"), 13.1) == 13.1
    with pytest.raises(ValueError):
        spacing_or_assumed(None, 0.0)


def test_candidate_fields():
    (c,) = fuse_points(np.array([[1.0, 2.0, 3.0, 0.6]]), radius=1, per_view=1)
    assert c == Candidate(z=1.0, y=2.0, x=3.0, score=0.6, n_members=1)
