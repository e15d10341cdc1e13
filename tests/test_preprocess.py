"""Preprocessing: percentile contrast, resampling and its coordinate maps, reflected 5-channel stacks."""

from __future__ import annotations

import numpy as np
import pytest

from kitlib.config import PreprocessConfig
from kitlib.preprocess import (
    apply_window,
    grid_policy,
    make_stack,
    make_stacks,
    model_grid,
    normalize_tomogram,
    percentile_window,
    reflect_index,
    resample_factor,
    resample_volume,
    resampled_shape,
    stack_indices,
    to_original,
    to_resampled,
    z_average,
)


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (13, 17, 19), dtype=np.uint8)


# --- contrast -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 4])
@pytest.mark.parametrize("low, high", [(2.0, 98.0), (0.0, 100.0), (0.5, 99.5), (37.3, 37.3)])
def test_percentile_window_matches_numpy(volume, step, low, high):
    skewed = (volume.astype(np.float64) ** 2 / 255).astype(np.uint8)  # many ties, a long tail
    expected = np.percentile(skewed[::step, ::step, ::step], [low, high])
    np.testing.assert_allclose(percentile_window(skewed, low, high, step), expected, atol=1e-9)


def test_apply_window_is_the_clipped_linear_map(volume):
    lo, hi = 40.0, 200.0
    expected = np.rint(np.clip((volume.astype(np.float64) - lo) * 255 / (hi - lo), 0, 255)).astype(np.uint8)
    out = apply_window(volume, lo, hi)
    assert out.dtype == np.uint8 and out is not volume
    np.testing.assert_array_equal(out, expected)


def test_apply_window_in_place_and_on_views(volume):
    expected = apply_window(volume, 10, 100)
    view = np.ascontiguousarray(volume.transpose(2, 1, 0)).transpose(2, 1, 0)  # non-contiguous input
    np.testing.assert_array_equal(apply_window(view, 10, 100), expected)
    inplace = volume.copy()
    assert apply_window(inplace, 10, 100, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)


def test_constant_volume_has_no_division_by_zero():
    flat = np.full((4, 5, 6), 77, np.uint8)
    lo, hi = percentile_window(flat)
    assert lo == hi == 77.0
    with np.errstate(all="raise"):
        out = normalize_tomogram(flat, PreprocessConfig())
    np.testing.assert_array_equal(out, 0)


def test_normalize_tomogram_stretches_to_full_range(volume):
    narrow = (volume // 4 + 100).astype(np.uint8)  # 100..163
    out = normalize_tomogram(narrow, PreprocessConfig(clip_low=0, clip_high=100, sample_step=1))
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel()[np.argsort(narrow.ravel(), kind="stable")].astype(int)) >= 0)  # monotone


def test_contrast_rejects_non_uint8(volume):
    with pytest.raises(TypeError, match="uint8"):
        percentile_window(volume.astype(np.float32))


# --- resampling ---------------------------------------------------------------------------------------------------


def test_resample_factor_policy():
    shape = (300, 960, 1440)
    assert resample_factor(shape, 13.1, PreprocessConfig(grid="native", target_spacing=16.0)) == 1.0
    cfg = PreprocessConfig(grid="spacing", target_spacing=16.0, assumed_spacing=13.1)
    assert resample_factor(shape, 19.7, cfg) == pytest.approx(19.7 / 16.0)
    assert resample_factor(shape, None, cfg) == pytest.approx(13.1 / 16.0)
    size = PreprocessConfig(grid="size", resize_to=640)
    assert resample_factor(shape, 19.7, size) == resample_factor(shape, None, size) == pytest.approx(640 / 1440)
    assert resampled_shape(shape, resample_factor(shape, None, size)) == (133, 427, 640)


@pytest.mark.parametrize("factor", [0.5, 0.63, 1.0, 1.7])
def test_resample_volume_shape(volume, factor):
    out = resample_volume(volume, factor)
    assert out.shape == resampled_shape(volume.shape, factor) and out.dtype == np.uint8


def test_coordinate_maps_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(50):
        src = tuple(int(n) for n in rng.integers(1, 2000, 3))
        dst = resampled_shape(src, float(rng.uniform(0.2, 3.0)))
        zyx = rng.uniform(-0.5, np.array(src) - 0.5, (7, 3))
        np.testing.assert_allclose(to_original(to_resampled(zyx, src, dst), src, dst), zyx, atol=1e-9)
    # the outer edges of the first and last voxels map onto each other
    np.testing.assert_allclose(to_resampled([[-0.5, -0.5, -0.5], [9.5, 19.5, 29.5]], (10, 20, 30), (5, 8, 45)),
                               [[-0.5, -0.5, -0.5], [4.5, 7.5, 44.5]])


@pytest.mark.parametrize("factor", [0.6, 1.5])
def test_coordinate_map_follows_the_resize(factor):
    """A smooth blob's centroid after `resample_volume` is where `to_resampled` says it goes."""
    shape, centre = (40, 48, 56), np.array([17.3, 25.6, 30.2])
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    blob = np.exp(-((grid - centre) ** 2).sum(-1) / (2 * 4.0**2))
    out = resample_volume(np.rint(250 * blob).astype(np.uint8), factor).astype(np.float64)
    out_grid = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), -1)
    centroid = (out_grid * out[..., None]).sum((0, 1, 2)) / out.sum()
    np.testing.assert_allclose(centroid, to_resampled(centre, shape, out.shape), atol=0.05)


# --- stacks -------------------------------------------------------------------------------------------------------


def test_reflect_index_matches_numpy_pad_reflect():
    for depth in range(2, 9):
        pad = 40
        expected = np.pad(np.arange(depth), pad, mode="reflect")  # numpy folds repeatedly for large pads
        np.testing.assert_array_equal(reflect_index(np.arange(-pad, depth + pad), depth), expected)
    np.testing.assert_array_equal(reflect_index(np.arange(-5, 6), 1), 0)


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 17, 300])
@pytest.mark.parametrize("stride", [1, 3, 8])
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_stack_indices_properties(depth, stride, channels):
    z = np.arange(depth)
    idx = stack_indices(z, depth, stride, channels)
    c = channels // 2
    assert idx.shape == (depth, channels)
    assert np.all((idx >= 0) & (idx < depth))
    np.testing.assert_array_equal(idx[:, c], z)  # centre channel is the centre slice
    interior = (z - c * stride >= 0) & (z + c * stride < depth)
    np.testing.assert_array_equal(idx[interior], z[interior, None] + (np.arange(channels) - c) * stride)
    # mirror symmetry: the stack at z, flipped in depth, is the flipped volume's stack at depth - 1 - z
    np.testing.assert_array_equal(depth - 1 - idx[::-1, ::-1], idx)


def test_stack_indices_edges_and_thin_volume():
    np.testing.assert_array_equal(stack_indices(0, 300, 8), [16, 8, 0, 8, 16])
    np.testing.assert_array_equal(stack_indices(299, 300, 8), [283, 291, 299, 291, 283])
    np.testing.assert_array_equal(stack_indices(1, 3, 8), [1, 1, 1, 1, 1])  # -15 -> 1, -7 -> 1, 9 -> 1, 17 -> 1
    np.testing.assert_array_equal(stack_indices(0, 3, 8), [0, 0, 0, 0, 0])
    assert stack_indices(5, 10, 2).shape == (5,)
    with pytest.raises(ValueError, match="centres"):
        stack_indices(10, 10, 2)


def test_make_stacks_channels_last(volume):
    centres = np.array([0, 6, 12])
    stacks = make_stacks(volume, centres, stride=3)
    assert stacks.shape == (3, *volume.shape[1:], 5) and stacks.flags.c_contiguous and stacks.dtype == np.uint8
    for stack, z in zip(stacks, centres):
        for k, zi in enumerate(stack_indices(z, len(volume), 3)):
            np.testing.assert_array_equal(stack[..., k], volume[zi])
    np.testing.assert_array_equal(make_stack(volume, 6, 3), stacks[1])


@pytest.mark.parametrize("n", [3, 5])
def test_z_average_is_the_mean_of_the_slices_around_each_mirrored_at_the_edges(n):
    volume = np.random.default_rng(3).integers(0, 256, (9, 7, 6), dtype=np.uint8)
    padded = np.pad(volume.astype(np.float64), ((n // 2, n // 2), (0, 0), (0, 0)), mode="reflect")  # as stacks mirror
    expected = np.stack([padded[z : z + n].mean(0) for z in range(len(volume))])
    out = z_average(volume, n)
    assert out.dtype == np.uint8 and out.shape == volume.shape
    assert np.abs(out - expected).max() <= 0.5 + 1e-9  # rounded
    assert z_average(volume, 1) is volume
    with pytest.raises(ValueError, match="odd"):
        z_average(volume, 2)


def test_model_grid_averages_along_z_and_the_policy_records_it(volume):
    cfg = PreprocessConfig(grid="native", z_average=3)
    grid, _ = model_grid(volume.copy(), None, cfg)
    plain, _ = model_grid(volume.copy(), None, PreprocessConfig(grid="native"))
    np.testing.assert_array_equal(grid, z_average(plain, 3))
    assert grid_policy(cfg)["z_average"] == 3
