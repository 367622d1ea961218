"""Tests for recon.prep: flat/dark normalisation, -log and zinger removal."""

from __future__ import annotations

import numpy as np
import pytest

from recon import InputError, minus_log, normalize, remove_zingers


def test_normalize_hand_computed_mean():
    data = np.array([[[30.0, 70.0], [10.0, 5.0]]])  # (1, 2, 2)
    flats = np.array([[[100.0, 100.0], [50.0, 30.0]], [[120.0, 80.0], [50.0, 30.0]]])
    darks = np.array([[[10.0, 10.0], [0.0, 0.0]], [[10.0, 10.0], [10.0, 10.0]]])
    # mean flat = [[110, 90], [50, 30]], mean dark = [[10, 10], [5, 5]]
    expected = np.array([[[20 / 100, 60 / 80], [5 / 45, 0 / 25]]])
    expected[0, 1, 1] = 1e-6  # 0 transmission clipped to min_value
    out = normalize(data, flats, darks)
    assert out.dtype == np.float32
    assert out.shape == data.shape
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_normalize_median_ignores_a_zinger_in_one_flat():
    flats = np.full((5, 4, 4), 200.0)
    flats[2, 1, 1] = 5000.0  # a zinger hitting one flat frame
    darks = np.full((3, 4, 4), 20.0)
    data = np.full((2, 4, 4), 110.0)
    med = normalize(data, flats, darks, method="median")
    np.testing.assert_allclose(med, 0.5, rtol=1e-6)
    mean = normalize(data, flats, darks, method="mean")
    # hand value at the hit pixel: mean flat = (4*200 + 5000)/5 = 1160
    assert mean[0, 1, 1] == pytest.approx(90.0 / 1140.0, rel=1e-6)
    assert mean[0, 0, 0] == pytest.approx(0.5, rel=1e-6)


def test_normalize_reduced_2d_references_and_no_darks():
    data = np.full((3, 2, 3), 40.0)
    flat = np.full((2, 3), 80.0)
    np.testing.assert_allclose(normalize(data, flat), 0.5)
    np.testing.assert_allclose(normalize(data, flat, np.full((2, 3), 20.0)), 20.0 / 60.0, rtol=1e-6)
    # a single projection (rows, cols) works too
    np.testing.assert_allclose(normalize(data[0], flat[None]), 0.5)


def test_normalize_guards_non_positive_values():
    data = np.array([[[5.0, 10.0, 50.0]]])
    flats = np.array([[[100.0, 10.0, 5.0]]])  # col 2: flat below dark -> dead pixel
    darks = np.array([[[10.0, 10.0, 10.0]]])
    out = normalize(data, flats, darks, min_value=1e-4)
    assert out[0, 0, 0] == pytest.approx(1e-4)  # data below dark
    assert out[0, 0, 1] == pytest.approx(1.0)  # flat == dark: no information
    assert out[0, 0, 2] == pytest.approx(1.0)
    assert np.all(np.isfinite(minus_log(out)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(flats=np.ones((2, 3, 3))), r"flats has shape \(2, 3, 3\)"),
        (dict(darks=np.zeros((2, 4, 5))), r"darks has shape \(2, 4, 5\)"),
        (dict(flats=np.zeros((2, 4, 4))), "all-zero flats"),
        (dict(flats=np.full((2, 4, 4), 5.0), darks=np.full((1, 4, 4), 9.0)), "nowhere above the darks"),
        (dict(data=np.full((2, 4, 4), np.nan)), "projections contains 32 NaN or inf"),
        (dict(flats=np.array([[[np.inf] * 4] * 4])), "flats contains 1|flats contains 16"),
        (dict(darks=np.full((1, 4, 4), np.nan)), "darks contains 16 NaN"),
        (dict(method="mode"), "method must be one of"),
        (dict(data=np.ones(4)), "projections have shape"),
    ],
)
def test_normalize_errors(kwargs, match):
    args = dict(data=np.ones((2, 4, 4)), flats=np.full((3, 4, 4), 2.0), darks=np.zeros((1, 4, 4)))
    args.update(kwargs)
    data = args.pop("data")
    with pytest.raises(InputError, match=match):
        normalize(data, **args)


def test_minus_log_hand_values():
    t = np.array([1.0, np.exp(-1.5), 0.25, 0.0, -3.0], dtype=np.float64)
    out = minus_log(t, min_value=1e-3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 1.5, np.log(4.0), np.log(1e3), np.log(1e3)], rtol=1e-6)
    with pytest.raises(InputError, match="min_value"):
        minus_log(t, min_value=0.0)


def _smooth_image(shape=(3, 64, 80)):
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    return 100.0 + 20.0 * np.sin(x / 9.0 + z) * np.cos(y / 7.0) + 0.3 * x


def test_remove_zingers_removes_injected_bright_pixels_only():
    rng = np.random.default_rng(4)
    clean = _smooth_image()
    dirty = clean.copy()
    idx = tuple(rng.integers([0, 1, 1], [3, 63, 79], size=(60, 3)).T)
    dirty[idx] += rng.uniform(50, 500, size=60)
    out = remove_zingers(dirty, size=3, threshold=0.1)
    assert out.dtype == np.float32
    # every zinger is replaced by (close to) the underlying smooth value
    assert np.max(np.abs(out[idx] - clean[idx])) < 2.0
    # the rest of the image is untouched
    untouched = np.ones(clean.shape, bool)
    untouched[idx] = False
    np.testing.assert_allclose(out[untouched], clean[untouched], rtol=1e-6)
    assert np.max(np.abs(dirty - clean)) > 49  # the injected errors were large


def test_remove_zingers_absolute_and_both_directions():
    img = np.zeros((9, 9))
    img[4, 4] = 0.5
    img[2, 6] = -0.5
    out = remove_zingers(img, threshold=0.2, relative=False)
    assert out[4, 4] == 0.0 and out[2, 6] == -0.5  # dark pixel kept with bright_only
    out = remove_zingers(img, threshold=0.2, relative=False, bright_only=False)
    np.testing.assert_array_equal(out, 0.0)
    # below threshold: untouched
    np.testing.assert_array_equal(remove_zingers(img, threshold=0.6, relative=False), img)


@pytest.mark.parametrize("kwargs", [dict(size=4), dict(size=1), dict(threshold=-1.0)])
def test_remove_zingers_errors(kwargs):
    with pytest.raises(InputError):
        remove_zingers(np.ones((2, 5, 5)), **kwargs)


@pytest.mark.gpu
def test_prep_gpu_matches_cpu():
    import cupy as cp

    rng = np.random.default_rng(7)
    data = rng.uniform(20, 200, (4, 16, 20))
    flats = rng.uniform(250, 300, (5, 16, 20))
    darks = rng.uniform(5, 15, (3, 16, 20))
    for method in ("mean", "median"):
        cpu = normalize(data, flats, darks, method=method)
        gpu = normalize(cp.asarray(data), cp.asarray(flats), cp.asarray(darks), method=method)
        assert isinstance(gpu, cp.ndarray) and gpu.dtype == cp.float32
        np.testing.assert_allclose(gpu.get(), cpu, rtol=1e-5)
    np.testing.assert_allclose(minus_log(cp.asarray(cpu)).get(), minus_log(cpu), rtol=1e-5)
    dirty = _smooth_image()
    dirty[1, 10, 10] += 300.0
    gpu = remove_zingers(cp.asarray(dirty))
    assert isinstance(gpu, cp.ndarray)
    np.testing.assert_allclose(gpu.get(), remove_zingers(dirty), rtol=1e-6)
