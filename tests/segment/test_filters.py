"""Denoising filters: against independent implementations, and chunked == in-memory exactly."""

from __future__ import annotations

import numpy as np
import pytest

from segment import InputError, ball, closing, denoise, median_filter, nl_means, opening


@pytest.fixture(scope="module")
def noisy():
    rng = np.random.default_rng(3)
    truth = np.zeros((20, 36, 36), np.float32)
    truth[:6] = 1.0
    truth[6:13] = 0.2
    truth[13:] = 3.0
    return truth, truth + rng.normal(0, 0.3, truth.shape).astype(np.float32)


def test_median_matches_plain_python_window_median(noisy):
    _, v = noisy
    v = v[:8, :10, :10]
    got = median_filter(v, size=3, device="cpu")
    pad = np.pad(v, 1, mode="symmetric")  # scipy 'reflect' = edge-duplicating mirror
    for z, y, x in [(0, 0, 0), (3, 4, 5), (7, 9, 9), (4, 0, 9)]:
        assert got[z, y, x] == np.median(pad[z:z + 3, y:y + 3, x:x + 3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_median_equals_scipy_exactly(dtype):
    from scipy import ndimage

    rng = np.random.default_rng(4)
    wide = rng.normal(size=(3, 4, 600))  # rows longer than the kernel's 256-voxel blocks
    wide.flat[::7], wide.flat[3::11] = np.inf, -np.inf  # infinities are values like any other
    for v in (rng.normal(size=(9, 13, 17)), rng.integers(0, 3, size=(7, 5, 11)).astype(float),
              rng.normal(size=(1, 1, 6)), wide, rng.integers(0, 2, size=(4, 3, 257)).astype(float)):
        v = v.astype(dtype)  # random, many ties, degenerate shape, wide rows
        np.testing.assert_array_equal(median_filter(v, size=3, device="cpu"),
                                      ndimage.median_filter(v, size=3, mode="reflect"))


def test_ball_is_a_ball():
    from skimage.morphology import ball as sk_ball

    for r in (1, 2, 3):
        assert np.array_equal(ball(r), sk_ball(r).astype(bool))


def test_grey_opening_closing_match_scikit_image_in_the_interior(noisy):
    from skimage import morphology

    _, v = noisy
    r = 2
    ours_o = opening(v, radius_px=r, device="cpu")
    ours_c = closing(v, radius_px=r, device="cpu")
    sk_o = morphology.opening(v, morphology.ball(r))
    sk_c = morphology.closing(v, morphology.ball(r))
    inner = (slice(2 * r, -2 * r),) * 3
    np.testing.assert_array_equal(ours_o[inner], sk_o[inner])
    np.testing.assert_array_equal(ours_c[inner], sk_c[inner])
    assert (ours_o <= v + 1e-7).all()  # opening is anti-extensive
    assert (ours_c >= v - 1e-7).all()  # closing is extensive


def test_binary_opening_removes_specks_smaller_than_the_ball():
    m = np.zeros((20, 20, 20), bool)
    m[5:15, 5:15, 5:15] = True
    m[1, 1, 1] = True  # a one-voxel speck
    out = opening(m, radius_px=1, device="cpu")
    assert not out[1, 1, 1] and out[10, 10, 10]


@pytest.mark.parametrize("kw", [
    dict(median_size=3),
    dict(median_size=3, opening_radius_px=1, closing_radius_px=2),
    dict(median_size=5, opening_radius_px=2),
])
def test_chunked_denoise_is_identical_to_in_memory(noisy, kw):
    _, v = noisy
    a = denoise(v, device="cpu", **kw)
    b = denoise(v, chunks=(5, 7, 9), device="cpu", **kw).compute()  # many small chunks
    np.testing.assert_array_equal(a, b)


def test_chunked_nl_means_is_identical_to_in_memory(noisy):
    _, v = noisy
    v = v[:12, :24, :24]
    a = denoise(v, median_size=1, nlm=True, device="cpu")
    b = denoise(v, median_size=1, nlm=True, chunks=(6, 12, 12), device="cpu").compute()
    np.testing.assert_array_equal(a, b)


def test_filters_reduce_noise_against_truth(noisy):
    truth, v = noisy
    core = (slice(1, -1), slice(None), slice(None))
    rmse0 = np.sqrt(np.mean((v - truth)[core] ** 2))
    for out in (median_filter(v, size=3, device="cpu"), nl_means(v, patch_size=3, patch_distance=2)):
        # away from the interfaces, where every filter must leave the plateaus
        err = (out - truth)[2:4]
        assert np.sqrt(np.mean(err**2)) < 0.6 * rmse0


def test_dask_input_keeps_its_chunks(noisy):
    import dask.array as da

    _, v = noisy
    d = da.from_array(v, chunks=(10, 18, 18))
    out = denoise(d, median_size=3, device="cpu")
    assert isinstance(out, da.Array)
    np.testing.assert_array_equal(out.compute(), denoise(v, median_size=3, device="cpu"))


def test_bad_inputs():
    with pytest.raises(InputError, match="3-D"):
        median_filter(np.zeros((4, 4)))
    with pytest.raises(InputError, match="radius"):
        opening(np.zeros((4, 4, 4)), radius_px=-1)
    with pytest.raises(InputError, match="device"):
        median_filter(np.zeros((4, 4, 4)), device="tpu")


@pytest.mark.gpu
def test_gpu_denoise_matches_cpu(noisy):
    import cupy as cp

    _, v = noisy
    kw = dict(median_size=3, opening_radius_px=1, closing_radius_px=1)
    cpu = denoise(v, device="cpu", **kw)
    gpu = denoise(cp.asarray(v), **kw)
    assert isinstance(gpu, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=0, atol=1e-6)
    chunked = denoise(v, chunks=(8, 16, 16), device="gpu", **kw).compute()
    np.testing.assert_allclose(chunked, cpu, rtol=0, atol=1e-6)


def test_chunked_path_gives_identical_labels():
    """Denoise in many chunks, then label: the same labels as the in-memory path."""
    from pipelines.samples import anode_free_cell
    from segment import segment_layers

    cell = anode_free_cell(shape=(40, 64, 64), seed=2, max_thickness_um=40.0)
    rng = np.random.default_rng(0)
    v = (cell.mu_per_px + rng.normal(0, 6e-5, cell.mu_per_px.shape)).astype(np.float32)
    kw = dict(median_size=3, opening_radius_px=1, device="cpu")
    a = segment_layers(denoise(v, **kw))
    b = segment_layers(denoise(v, chunks=(10, 16, 16), **kw).compute())  # 64 chunks
    assert (a == 2).sum() > 0.1 * a.size / 4  # a real Li layer was labelled
    np.testing.assert_array_equal(a, b)
