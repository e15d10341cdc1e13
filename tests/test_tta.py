import numpy as np
import pytest

from kitlib.infer.tta import VIEWS, View, apply_view, default_view_order, forward_points, invert_points, parse_views

H, W, C = 7, 11, 5  # non-square, so a wrong width/height in a map shows
ALL = list(VIEWS.values())


def _marked_stack(x: int, y: int, dz_sign: int) -> np.ndarray:
    """A stack with one marked pixel whose channel profile rises toward the motor: up the channels if dz > 0."""
    stack = np.zeros((H, W, C), np.float32)
    stack[y, x] = np.arange(1, C + 1)[::dz_sign]
    return stack


@pytest.mark.parametrize("view", ALL, ids=str)
def test_marked_pixel_round_trip(view):
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y, sign = int(rng.integers(W)), int(rng.integers(H)), int(rng.choice([-1, 1]))
        seen = apply_view(_marked_stack(x, y, sign), view)
        yv, xv = np.argwhere(seen.sum(-1) > 0)[0]
        profile = seen[yv, xv]
        dz_view = 3.0 if profile[-1] > profile[0] else -3.0
        back = invert_points(np.array([[xv + 0.5, yv + 0.5, dz_view]]), view, (H, W))
        np.testing.assert_array_equal(back, [[x + 0.5, y + 0.5, 3.0 * sign]])


@pytest.mark.parametrize("view", ALL, ids=str)
def test_blob_centroid_round_trip_off_pixel_centres(view):
    """A rectangular blob's centroid sits on pixel edges or centres: the continuous convention must hold there too."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        bh, bw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        y0, x0 = int(rng.integers(H - bh + 1)), int(rng.integers(W - bw + 1))
        stack = np.zeros((H, W, C), np.float32)
        stack[y0 : y0 + bh, x0 : x0 + bw] = 1.0
        seen = apply_view(stack, view)[..., 2]
        ys, xs = np.nonzero(seen)
        centroid_view = np.array([[xs.mean() + 0.5, ys.mean() + 0.5, 0.0]])
        want = [[x0 + bw / 2, y0 + bh / 2, 0.0]]
        np.testing.assert_array_equal(invert_points(centroid_view, view, (H, W)), want)
        np.testing.assert_array_equal(forward_points(np.array(want), view, (H, W)), centroid_view)


@pytest.mark.parametrize("view", ALL, ids=str)
def test_forward_then_invert_is_identity(view):
    rng = np.random.default_rng(2)
    pts = np.column_stack([rng.uniform(0, W, 100), rng.uniform(0, H, 100), rng.normal(0, 5, 100)])
    np.testing.assert_allclose(invert_points(forward_points(pts, view, (H, W)), view, (H, W)), pts, atol=1e-12)
    dyadic = np.round(pts * 8) / 8  # exactly representable: the maps must be exact, not merely close
    np.testing.assert_array_equal(invert_points(forward_points(dyadic, view, (H, W)), view, (H, W)), dyadic)


def _inverse_view(view: View, stack: np.ndarray) -> View:
    seen = apply_view(stack, view)
    (inverse,) = [v for v in ALL if np.array_equal(apply_view(seen, v), stack)]
    return inverse


@pytest.mark.parametrize("view", ALL, ids=str)
def test_inverse_map_is_forward_map_of_inverse_view(view):
    stack = np.random.default_rng(3).random((H, W, C))
    inverse = _inverse_view(view, stack)
    view_hw = apply_view(stack, view).shape[:2]
    pts = np.column_stack([np.arange(6) + 0.25, np.arange(6) * 0.5, np.arange(6) - 2.0])
    np.testing.assert_array_equal(invert_points(pts, view, (H, W)), forward_points(pts, inverse, view_hw))


def test_compositions():
    stack = np.random.default_rng(4).random((H, W, C))
    twice = lambda name: apply_view(apply_view(stack, VIEWS[name]), VIEWS[name])  # noqa: E731
    np.testing.assert_array_equal(twice("rot90"), apply_view(stack, VIEWS["rot180"]))
    for name in ("flip_lr", "flip_ud", "rot180", "transpose", "antitranspose", "zrev"):
        np.testing.assert_array_equal(twice(name), stack)
    np.testing.assert_array_equal(apply_view(stack, VIEWS["flip_lr"]), stack[:, ::-1])
    np.testing.assert_array_equal(apply_view(stack, VIEWS["flip_ud"]), stack[::-1])
    np.testing.assert_array_equal(apply_view(stack, VIEWS["transpose"]), stack.transpose(1, 0, 2))
    np.testing.assert_array_equal(apply_view(stack, VIEWS["rot90"]), np.rot90(stack))
    np.testing.assert_array_equal(
        apply_view(stack, VIEWS["antitranspose+zrev"]), stack[::-1, ::-1].transpose(1, 0, 2)[..., ::-1]
    )


def test_zrev_reverses_channels_and_negates_dz():
    stack = np.random.default_rng(5).random((H, W, C))
    np.testing.assert_array_equal(apply_view(stack, VIEWS["zrev"]), stack[..., ::-1])
    pts = np.array([[1.5, 2.5, 4.0], [0.0, 7.0, -2.5]])
    np.testing.assert_array_equal(invert_points(pts, VIEWS["zrev"], (H, W)), pts * [1, 1, -1])
    np.testing.assert_array_equal(invert_points(pts, VIEWS["rot90+zrev"], (H, W))[:, 2], -pts[:, 2])


def test_batched_and_contiguous():
    batch = np.random.default_rng(6).random((3, H, W, C))
    for view in ALL:
        out = apply_view(batch, view)
        assert out.flags.c_contiguous
        for b in range(3):
            np.testing.assert_array_equal(out[b], apply_view(batch[b], view))


def test_names_and_order():
    assert len(set(ALL)) == 16
    assert all(VIEWS[v.name] == v for v in ALL)
    assert parse_views(["identity", "flip_lr+zrev"]) == [View(), View(flip=True, zrev=True)]
    order = default_view_order()
    assert order[:3] == parse_views(["identity", "flip_lr", "zrev"])
    assert sorted(order, key=str) == sorted(ALL, key=str)


def test_bad_names():
    with pytest.raises(ValueError, match=r"unknown TTA view\(s\) \['rot45'\].*identity.*antitranspose\+zrev"):
        parse_views(["identity", "rot45"])
    with pytest.raises(ValueError, match="more than once"):
        parse_views(["identity", "identity"])
    with pytest.raises(ValueError, match="no TTA view"):
        parse_views([])
    with pytest.raises(ValueError, match="rot"):
        View(rot=4)
