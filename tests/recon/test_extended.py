"""360-degree extended-field-of-view scans: overlap/side detection and 360 -> 180 stitching.

Truth: analytic Gaussian-blob sinograms. A 360-degree scan of a wide object with the axis near
one detector edge is simulated directly; the stitched sinogram must equal the analytic
180-degree sinogram of a detector wide enough to see the whole object, with the returned centre.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from recon import InputError, find_center, find_overlap_360, sino_360_to_180

# amplitude (a.u./px), sigma (px), x0 (px), y0 (px): spread over a radius of ~130 px, so a
# 200-px detector with the axis near one edge sees only part of it at each angle
BLOBS = [
    (1.0, 6.0, 20.0, 10.0),
    (0.5, 3.0, -30.0, 15.0),
    (0.8, 10.0, 5.0, -25.0),
    (0.3, 2.0, -10.0, -40.0),
    (0.6, 4.0, 45.0, -5.0),
    (0.7, 5.0, -80.0, 30.0),
    (0.4, 7.0, 60.0, -90.0),
    (0.5, 3.0, -120.0, -20.0),
    (0.9, 8.0, 100.0, 40.0),
]
WIDTH = 200


def blob_sinogram(theta_rad, width, center, *, noise=0.0, seed=0):
    """Analytic sinogram of BLOBS on ``width`` columns with the axis at ``center`` (pixels)."""
    s = np.arange(width) - center
    c, sn = np.cos(theta_rad)[:, None], np.sin(theta_rad)[:, None]
    out = np.zeros((np.size(theta_rad), width))
    for amp, sig, x0, y0 in BLOBS:
        arg = (s[None] - x0 * c - y0 * sn) / sig
        out += amp * math.sqrt(2 * math.pi) * sig * np.exp(-0.5 * arg**2)
    return out + noise * np.random.default_rng(seed).standard_normal(out.shape)


THETA360 = np.linspace(0, 2 * np.pi, 720, endpoint=False)


@pytest.mark.parametrize(
    "center, side, overlap",
    [
        (WIDTH - 1 - 30.5, "right", 62.0),  # axis 30.5 px from the last column's centre
        (WIDTH - 1 - 45.27, "right", 91.54),
        (30.5, "left", 62.0),
        (12.3, "left", 25.6),
    ],
)
def test_overlap_and_side_found(center, side, overlap):
    sino = blob_sinogram(THETA360, WIDTH, center, noise=0.05, seed=3)
    o, s, c = find_overlap_360(sino, THETA360)
    assert s == side
    assert abs(o - overlap) < 0.5, o
    assert abs(c - center) < 0.25, c
    # restricting the side gives the same answer
    o2, s2, _ = find_overlap_360(sino, THETA360, side=side)
    assert s2 == side and abs(o2 - o) < 1e-9


@pytest.mark.parametrize("center", [WIDTH - 1 - 30.5, WIDTH - 1 - 45.27, 30.5, 12.3])
def test_stitched_sinogram_matches_wide_analytic(center):
    sino = blob_sinogram(THETA360, WIDTH, center)
    wide, theta180, c_wide = sino_360_to_180(sino, THETA360)
    np.testing.assert_allclose(theta180, THETA360[:360])
    # the new detector reaches as far from the axis on the other side as the old one did
    if center > WIDTH / 2:  # right: old columns kept, centre unchanged
        new_width = int(math.floor(2 * center)) + 1
        expected_center = center
    else:  # left: columns added in front; the old last column stays W - 1 - center from the axis
        new_width = int(math.floor(2 * (WIDTH - 1 - center))) + 1
        expected_center = new_width - 1 - (WIDTH - 1 - center)
    assert wide.shape == (360, new_width)
    assert abs(c_wide - expected_center) < 0.05
    truth = blob_sinogram(theta180, wide.shape[1], c_wide)
    err = np.abs(wide - truth)
    assert err.max() < 0.01 * truth.max(), err.max()
    assert err.mean() < 1e-3 * truth.max(), err.mean()


def test_stitched_sinogram_gives_back_its_centre():
    # an independent method (Vo metric on the wide 180-degree sinogram) finds the returned centre
    center = WIDTH - 1 - 30.5
    sino = blob_sinogram(THETA360, WIDTH, center, noise=0.05, seed=7)
    wide, theta180, c_wide = sino_360_to_180(sino, THETA360)
    assert abs(find_center(wide, theta180, method="vo") - c_wide) < 0.3


def test_given_overlap_and_side_and_3d_stack():
    center = 30.5
    theta = np.linspace(0, 2 * np.pi, 361)  # 360 included: the last angle is ignored
    slices = [blob_sinogram(theta, WIDTH, center), 2.0 * blob_sinogram(theta, WIDTH, center)]
    stack = np.stack(slices, axis=1).astype(np.float32)  # (n_angles, n_slices, width)
    wide3, theta180, c3 = sino_360_to_180(stack, theta, overlap=62.0, side="left")
    assert wide3.dtype == np.float32 and wide3.shape == (180, 2, 2 * WIDTH - 62)
    for i, sl in enumerate(slices):
        wide2, _, c2 = sino_360_to_180(sl, theta, overlap=62.0, side="left")
        np.testing.assert_allclose(wide3[:, i, :], wide2, rtol=1e-5, atol=1e-4)
        assert c2 == c3
    truth = blob_sinogram(theta180, wide3.shape[-1], c3)
    np.testing.assert_allclose(wide3[:, 0, :], truth, atol=0.01 * truth.max())
    # side found from the given overlap
    _, _, c_auto = sino_360_to_180(slices[0], theta, overlap=62.0)
    assert c_auto == c3


def test_linear_ramp_weights_in_overlap():
    # first half turn all ones, second half all zeros: the blend shows the weights directly
    n, overlap = 40, 10
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    sino = np.zeros((n, 50))
    sino[: n // 2] = 1.0
    wide, _, c = sino_360_to_180(sino, theta, overlap=overlap, side="right")
    assert c == 50 - 0.5 - overlap / 2
    row = wide[0]
    assert row.shape == (90,)
    np.testing.assert_allclose(row[:40], 1.0)
    np.testing.assert_allclose(row[50:], 0.0, atol=1e-12)
    ramp = row[40:50]
    np.testing.assert_allclose(np.diff(ramp), -1.0 / 11, atol=1e-12)  # linear, decreasing
    np.testing.assert_allclose(ramp[0] + ramp[-1], 1.0)  # symmetric about the overlap centre


def test_bad_inputs_raise_input_error():
    sino = blob_sinogram(THETA360, WIDTH, 168.5)
    with pytest.raises(InputError, match="360-degree"):
        find_overlap_360(sino[:360], THETA360[:360])  # a half turn only
    with pytest.raises(InputError, match="360-degree"):
        sino_360_to_180(sino[:360], THETA360[:360])
    odd = np.linspace(0, 2 * np.pi, 361, endpoint=False)  # no opposite projections
    with pytest.raises(InputError, match="even number"):
        sino_360_to_180(blob_sinogram(odd, WIDTH, 168.5), odd)
    with pytest.raises(InputError, match="side"):
        sino_360_to_180(sino, THETA360, overlap=62, side="top")
    with pytest.raises(InputError, match="overlap"):
        sino_360_to_180(sino, THETA360, overlap=0.5, side="right")
    with pytest.raises(InputError, match="overlap range"):
        find_overlap_360(sino, THETA360, min_overlap=50, max_overlap=10)
    with pytest.raises(InputError, match="angles"):
        find_overlap_360(sino, THETA360[:-2])
    with pytest.raises(InputError, match=r"\(n_angles, width\)"):
        sino_360_to_180(sino[:, None, None, :], THETA360)
    with pytest.raises(InputError, match="degrees"):
        sino_360_to_180(sino, np.rad2deg(THETA360))


@pytest.mark.gpu
def test_gpu_matches_cpu():
    import cupy as cp

    sino = blob_sinogram(THETA360, WIDTH, 168.5, noise=0.05).astype(np.float32)
    o_cpu, s_cpu, c_cpu = find_overlap_360(sino, THETA360)
    o_gpu, s_gpu, c_gpu = find_overlap_360(cp.asarray(sino), THETA360)
    assert s_gpu == s_cpu and abs(o_gpu - o_cpu) < 0.02
    wide_cpu, _, cw_cpu = sino_360_to_180(sino, THETA360, overlap=o_cpu, side=s_cpu)
    wide_gpu, _, cw_gpu = sino_360_to_180(cp.asarray(sino), THETA360, overlap=o_cpu, side=s_cpu)
    assert isinstance(wide_gpu, cp.ndarray) and cw_gpu == cw_cpu
    np.testing.assert_allclose(cp.asnumpy(wide_gpu), wide_cpu, atol=1e-3)


def test_real_texture_from_tooth(tooth_path):
    """A half-acquisition scan made from the real tooth sinogram.

    The 180-degree tooth scan (axis near 295.9 px) is extended to 360 degrees by appending each
    projection flipped about a chosen axis (scipy spline shift, independent of the code under
    test); cropping the detector puts that axis 39.12 px from the last column. The overlap must be
    found, and the stitched sinogram must give back the uncropped columns.
    """
    import h5py
    from scipy import ndimage as ndi

    with h5py.File(tooth_path, "r") as f:
        data = f["/exchange/data"][:, 0, :].astype(np.float64)
        white = f["/exchange/data_white"][:, 0, :].astype(np.float64).mean(axis=0)
        dark = f["/exchange/data_dark"][:, 0, :].astype(np.float64).mean(axis=0)
    sino = -np.log(np.clip((data - dark) / (white - dark), 1e-6, None))
    n, width = sino.shape
    axis = 295.88
    opposite = ndi.shift(sino[:, ::-1], (0, 2 * axis - (width - 1)), order=3, mode="nearest")
    theta = np.arange(2 * n) * np.pi / n  # the tooth angles are 0, 180/181, ... degrees
    first, last = 100, 335
    scan = np.concatenate([sino, opposite])[:, first : last + 1]
    w = scan.shape[1]
    true_overlap = 2 * (w - 0.5 - (axis - first))  # 79.24 px

    overlap, side, center = find_overlap_360(scan, theta)
    assert side == "right"
    assert abs(overlap - true_overlap) < 0.5, overlap
    wide, _, c_wide = sino_360_to_180(scan, theta, overlap=overlap, side=side)
    assert abs(c_wide - (axis - first)) < 0.25
    truth = sino[:, first : first + wide.shape[1]]
    err = np.abs(wide - truth)
    # line integrals up to ~2; spline vs Fourier interpolation differ by a few 1e-3 at edges
    assert np.median(err) < 0.002 and np.percentile(err, 99) < 0.02, (np.median(err), err.max())
