"""Tests for recon.stripes on analytic sinograms with known stripes.

The clean sinogram is computed analytically: a 2-D Gaussian of width sigma centred at
(x0, y0) projects to a 1-D Gaussian of the same width at s = x0 cos(theta) + y0 sin(theta).
A very wide Gaussian makes the sample fill the field of view (local tomography of a cell),
smaller ones add structure. Stripes (constant along the angles) are then added.

The error measure is the one that makes rings: the error averaged over all angles, per
detector column (RMS over columns). Noise averages out of it; a stripe does not.
"""

from __future__ import annotations

import numpy as np
import pytest

from recon import (
    InputError,
    remove_all_stripes,
    remove_dead_stripes,
    remove_large_stripes,
    remove_stripes_fw,
    remove_stripes_sorting,
)

N_ANGLES, N_COLS = 360, 512


def gaussian_blob_sinogram(seed: int, *, n_angles=N_ANGLES, n_cols=N_COLS, n_blobs=25, amp=1e-4):
    """Analytic sinogram (n_angles, n_cols) of a sum of 2-D Gaussians (pixel units)."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    s = np.arange(n_cols) - (n_cols - 1) / 2.0
    sino = np.zeros((n_angles, n_cols))
    blobs = [(0.0, 0.0, 400.0, 1.0 / (np.sqrt(2 * np.pi) * 400.0))]  # fills the field of view
    for _ in range(n_blobs):
        r, phi = rng.uniform(0, 120), rng.uniform(0, 2 * np.pi)
        blobs.append((r * np.cos(phi), r * np.sin(phi), rng.uniform(30, 80), rng.uniform(0.2, 1.0) * amp))
    for x0, y0, sigma, peak in blobs:
        centre = x0 * np.cos(theta) + y0 * np.sin(theta)
        sino += peak * np.sqrt(2 * np.pi) * sigma * np.exp(-((s[None] - centre[:, None]) ** 2) / (2 * sigma**2))
    return sino


@pytest.fixture(scope="module")
def clean():
    return gaussian_blob_sinogram(0)


@pytest.fixture(scope="module")
def noisy(clean):
    return clean + np.random.default_rng(1).normal(0.0, 0.005, clean.shape)


def small_stripes(n_cols=N_COLS, seed=2):
    """Column offsets (line-integral units) on 30 random single columns."""
    rng = np.random.default_rng(seed)
    offsets = np.zeros(n_cols)
    cols = rng.choice(np.arange(10, n_cols - 10), 30, replace=False)
    offsets[cols] = rng.choice([-1.0, 1.0], 30) * rng.uniform(0.02, 0.05, 30)
    return offsets


def add_dead(sino):
    out = sino.copy()
    out[:, 100] = 0.0  # unresponsive pixel: constant
    out[:, 101] = 0.0
    out[:, 400] = sino[:, 400].mean()  # unresponsive at a plausible level
    rng = np.random.default_rng(3)
    out[:, 250] += rng.normal(0.0, 0.2, sino.shape[0])  # fluctuating pixel
    return out


def stripe_error(out, clean):
    """RMS over columns of the angle-averaged error: what becomes rings."""
    return float(np.sqrt(np.mean(np.mean(out - clean, axis=0) ** 2)))


def assert_close_up_to_ties(a, b, name=""):
    """Equal values (ties) may be sorted in another order: a few swapped values are allowed."""
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    assert diff.mean() < 1e-5, name
    assert diff.max() < 1e-3, name
    assert np.mean(diff > 1e-5) < 1e-3, name


def test_sorting_removes_small_stripes(clean, noisy):
    striped = noisy + small_stripes()
    before = stripe_error(striped, clean)
    out = remove_stripes_sorting(striped, size=21)
    assert out.dtype == np.float32 and out.shape == striped.shape
    assert stripe_error(out, clean) < before / 5
    out2 = remove_stripes_sorting(striped, size=21, dim=2)
    assert stripe_error(out2, clean) < before / 5


def test_fw_removes_small_stripes(clean, noisy):
    striped = noisy + small_stripes()
    before = stripe_error(striped, clean)
    out = remove_stripes_fw(striped)
    assert out.dtype == np.float32 and out.shape == striped.shape
    assert stripe_error(out, clean) < before / 4
    assert stripe_error(remove_stripes_fw(striped, level=3, wavelet="db3", sigma=1.0), clean) < before / 2.5


def test_large_stripes_removes_a_wide_stripe_that_sorting_keeps(clean, noisy):
    striped = noisy.copy()
    striped[:, 300:315] += 0.1  # 15 columns wide, 10 % of the signal
    before = stripe_error(striped, clean)
    out = remove_large_stripes(striped, snr=3, size=51)
    assert stripe_error(out, clean) < before / 3
    # the small-stripe filter alone does not remove it (a window of 21 cannot)
    assert stripe_error(remove_stripes_sorting(striped, size=21), clean) > before / 2


def test_dead_stripes_removed(clean, noisy):
    striped = add_dead(noisy)
    before = stripe_error(striped, clean)
    out = remove_dead_stripes(striped, snr=3, size=51, residual=False)
    after = stripe_error(out, clean)
    assert after < before / 10
    # the dead columns themselves are restored close to the truth
    for col in (100, 101, 250, 400):
        assert np.abs(out[:, col] - clean[:, col]).mean() < 0.01


def test_remove_all_stripes_on_every_kind(clean, noisy):
    striped = add_dead(noisy + small_stripes())
    striped[:, 300:315] += 0.1
    before = stripe_error(striped, clean)
    out = remove_all_stripes(striped, snr=3, la_size=51, sm_size=21)
    assert stripe_error(out, clean) < before / 5


def test_clean_sinogram_changed_very_little(clean, noisy):
    scale = float(np.sqrt(np.mean(clean**2)))
    for func in (remove_stripes_sorting, remove_all_stripes, remove_stripes_fw, remove_large_stripes):
        out = func(noisy)
        change = float(np.sqrt(np.mean((out - noisy) ** 2))) / scale
        assert change < 0.005, func.__name__
        # the methods' own bias (mostly from the median filters on the object) stays small
        assert stripe_error(out, clean) < 0.003, func.__name__


def test_stack_equals_slice_by_slice(noisy):
    other = gaussian_blob_sinogram(5) + np.random.default_rng(6).normal(0, 0.005, noisy.shape)
    stack = np.stack([add_dead(noisy + small_stripes()), other + small_stripes(seed=9)], axis=1)
    for func in (remove_stripes_sorting, remove_all_stripes, remove_stripes_fw):
        out = func(stack)
        assert out.shape == stack.shape and out.dtype == np.float32
        for k in range(2):
            np.testing.assert_allclose(out[:, k], func(stack[:, k]), atol=1e-5, err_msg=func.__name__)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_against_algotom(clean, noisy):
    """algotom is a second implementation of the same Vo et al. algorithms."""
    removal = pytest.importorskip("algotom.prep.removal")
    striped = add_dead(noisy + small_stripes())
    striped[:, 300:315] += 0.1
    pairs = [
        (remove_stripes_sorting(striped, size=21), removal.remove_stripe_based_sorting(striped, 21)),
        (remove_large_stripes(striped, snr=3, size=51), removal.remove_large_stripe(striped, 3.0, 51)),
        (remove_dead_stripes(striped, snr=3, size=51), removal.remove_dead_stripe(striped, 3.0, 51)),
        (remove_all_stripes(striped), removal.remove_all_stripe(striped, 3.0, 51, 21)),
    ]
    for mine, theirs in pairs:
        assert_close_up_to_ties(mine, theirs)


def test_input_errors(noisy):
    with pytest.raises(InputError, match="sinogram has shape"):
        remove_stripes_sorting(np.ones(10))
    with pytest.raises(InputError, match="size must be an integer"):
        remove_stripes_sorting(noisy, size=0)
    with pytest.raises(InputError, match="dim must be"):
        remove_stripes_sorting(noisy, dim=3)
    with pytest.raises(InputError, match="snr"):
        remove_all_stripes(noisy, snr=-1)
    with pytest.raises(InputError, match="drop_ratio"):
        remove_large_stripes(noisy, drop_ratio=0.95)
    with pytest.raises(InputError, match="wavelet"):
        remove_stripes_fw(noisy, wavelet="nope")
    with pytest.raises(InputError, match="sigma"):
        remove_stripes_fw(noisy, sigma=0)


@pytest.mark.gpu
def test_gpu_matches_cpu(noisy):
    import cupy as cp

    stack = np.stack([add_dead(noisy + small_stripes()), noisy], axis=1)
    stack[:, 0, 300:315] += 0.1
    for func in (remove_stripes_sorting, remove_large_stripes, remove_dead_stripes, remove_all_stripes,
                 remove_stripes_fw):
        cpu = func(stack)
        gpu = func(cp.asarray(stack))
        assert isinstance(gpu, cp.ndarray) and gpu.dtype == cp.float32, func.__name__
        assert_close_up_to_ties(gpu.get(), cpu, func.__name__)
