"""Simulator: phantom, analytic sinogram, Joseph projector, raw scans and writers.

Truths used: closed-form chord lengths of discs and ellipses, hand-computed phantom values,
ellipse areas (pi a b), scikit-image's Shepp-Logan image for orientation, exact centroids of
off-centre objects (s = x cos + y sin), Poisson statistics, and h5py reads of written files.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import recon
from recon import InputError
from recon._sim_kernels import paint_ellipses
from recon.simulate import _SL_GEOMETRY, _SL_MODIFIED, _SL_ORIGINAL

THETA = np.linspace(0.0, np.pi, 60, endpoint=False)


def disc(n, r, x0=0.0, y0=0.0, value=1.0, ss=8):
    """A disc of radius r pixels centred at (x0, y0), area-averaged pixels."""
    img = np.zeros((n, n))
    paint_ellipses(img, np.array([[value, r, r, x0, y0, 0.0]]), ss)
    return img.astype(np.float32)


# ---------------------------------------------------------------------------- phantom


def test_shepp_logan_values_at_known_points():
    n = 200
    img = recon.shepp_logan(n, supersample=1)
    assert img.shape == (n, n) and img.dtype == np.float32
    r = n / 2

    def at(x_unit, y_unit_up):  # table coordinates (y up) -> image pixel
        col = x_unit * r + (n - 1) / 2
        row = -y_unit_up * r + (n - 1) / 2
        return img[int(round(row)), int(round(col))]

    assert at(0.0, 0.0) == pytest.approx(1.0 - 0.8)  # skull interior (brain)
    assert at(0.0, 0.35) == pytest.approx(1.0 - 0.8 + 0.1)  # ellipse 5, drawn near the top
    assert at(0.22, 0.0) == pytest.approx(1.0 - 0.8 - 0.2, abs=1e-6)  # right ventricle
    assert at(0.0, 0.9) == pytest.approx(1.0)  # skull bone between ellipse 2 and 1
    assert at(0.0, 0.98) == 0.0 and img[0, 0] == 0.0  # outside
    orig = recon.shepp_logan(n, modified=False, supersample=1)
    assert orig[int(round((n - 1) / 2 - 0.35 * r)), int(round((n - 1) / 2))] == pytest.approx(2 - 0.98 + 0.01)


def test_shepp_logan_total_equals_ellipse_areas():
    n = 256
    r = n / 2
    for modified, values in ((True, _SL_MODIFIED), (False, _SL_ORIGINAL)):
        img = recon.shepp_logan(n, modified=modified, supersample=8)
        truth = np.sum(values * np.pi * _SL_GEOMETRY[:, 0] * _SL_GEOMETRY[:, 1]) * r * r
        assert img.sum(dtype=np.float64) == pytest.approx(truth, rel=2e-4)


def test_shepp_logan_orientation_matches_scikit_image():
    skdata = pytest.importorskip("skimage.data")
    ref = skdata.shepp_logan_phantom()  # 400 x 400, drawn as usual (row 0 at the top)
    img = recon.shepp_logan(ref.shape[0], supersample=1)
    corr = {name: np.corrcoef(x.ravel(), ref.ravel())[0, 1]
            for name, x in (("same", img), ("flipud", img[::-1]), ("fliplr", img[:, ::-1]))}
    assert corr["same"] > 0.95
    assert corr["same"] > corr["flipud"] + 0.1 and corr["same"] > corr["fliplr"]


def test_shepp_logan_bad_input():
    with pytest.raises(InputError, match="n must be"):
        recon.shepp_logan(1)
    with pytest.raises(InputError, match="supersample"):
        recon.shepp_logan(16, supersample=0)


# ---------------------------------------------------------------------------- analytic sinogram


def test_sinogram_conserves_mass_and_matches_single_disc_formula():
    n = 128
    sino = recon.shepp_logan_sinogram(n, THETA, bin_average=True, width=160)
    img_total = np.sum(_SL_MODIFIED * np.pi * _SL_GEOMETRY[:, 0] * _SL_GEOMETRY[:, 1]) * (n / 2) ** 2
    # the bin-averaged profile integrates exactly over the detector: every angle sees the whole mass
    np.testing.assert_allclose(sino.sum(axis=1), img_total, rtol=1e-7)
    # the bin average equals the mean of point samples across the bin (midpoint rule, K points)
    k = 400
    c0 = (160 - 1) / 2
    offsets = (np.arange(k) + 0.5) / k - 0.5
    mean_point = np.mean([recon.shepp_logan_sinogram(n, THETA, width=160, center=c0 - d) for d in offsets], axis=0)
    np.testing.assert_allclose(mean_point, sino, atol=2e-3 * sino.max())


def test_sinogram_of_outer_ellipse_at_zero_angle():
    # at theta = 0 the central column crosses the phantom vertically: sum of chord lengths 2 b r
    n = 101  # odd: column 50 is exactly on the axis
    sino = recon.shepp_logan_sinogram(n, np.array([0.0]))
    r = n / 2
    # the line x = 0 crosses ellipses 1, 2, 5, 6, 7, 9 (full height chords where centred on x = 0)
    expected = 0.0
    for (a, b, x0, y0, phi), v in zip(_SL_GEOMETRY, _SL_MODIFIED):
        if abs(x0) < 1e-12 and phi == 0.0:
            expected += v * 2 * b * r
    assert sino[0, 50] == pytest.approx(expected, rel=1e-12)


def test_forward_project_of_phantom_close_to_analytic_sinogram():
    n = 192
    img = recon.shepp_logan(n)
    fp = recon.forward_project(img, THETA)
    truth = recon.shepp_logan_sinogram(n, THETA, bin_average=True)
    rel = np.linalg.norm(fp - truth) / np.linalg.norm(truth)
    assert rel < 0.015
    truth_point = recon.shepp_logan_sinogram(n, THETA)
    assert np.linalg.norm(fp - truth_point) / np.linalg.norm(truth_point) < 0.03


# ---------------------------------------------------------------------------- projector


def test_forward_project_disc_matches_chord_length():
    n, r = 128, 40.0
    sino = recon.forward_project(disc(n, r), THETA)
    s = np.arange(n) - (n - 1) / 2
    chord = 2 * np.sqrt(np.maximum(r * r - s * s, 0.0))
    inner = np.abs(s) < r - 3
    err = np.abs(sino - chord[None])[:, inner]
    assert err.max() < 0.01 * 2 * r
    assert np.abs(sino - chord[None]).max() < 0.03 * 2 * r  # edges: pixelisation only
    np.testing.assert_allclose(sino.sum(axis=1), np.pi * r * r, rtol=2e-3)


@pytest.mark.parametrize("center,width", [(None, None), (40.3, 96)])
def test_forward_project_orientation(center, width):
    n = 64
    x, y = 13.3, -17.6  # an off-centre Gaussian blob (sigma 1.5 px) at (x, y) pixels
    cols, rows = np.meshgrid(np.arange(n) - (n - 1) / 2, np.arange(n) - (n - 1) / 2)
    img = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * 1.5**2)).astype(np.float32)
    theta = np.deg2rad([0, 30, 45, 90, 120, 135, 170, 250])
    sino = recon.forward_project(img, theta, center=center, width=width)
    w = width or n
    c = (w - 1) / 2 if center is None else center
    u = np.arange(w)
    centroid = (sino * u).sum(axis=1) / sino.sum(axis=1)
    np.testing.assert_allclose(centroid, x * np.cos(theta) + y * np.sin(theta) + c, atol=0.02)
    np.testing.assert_allclose(sino.sum(axis=1), img.sum(dtype=np.float64), rtol=3e-3)
    # a single bright pixel lands on the nearest detector column to x cos + y sin + center
    one = np.zeros((n, n), np.float32)
    one[50, 9] = 1.0
    xs, ys = 9 - (n - 1) / 2, 50 - (n - 1) / 2
    peak = recon.forward_project(one, theta, center=center, width=width).argmax(axis=1)
    assert np.all(np.abs(peak - (xs * np.cos(theta) + ys * np.sin(theta) + c)) <= 0.5 + 1e-9)


def test_forward_project_volume_is_stack_of_slices():
    rng = np.random.default_rng(1)
    vol = rng.random((3, 40, 40)).astype(np.float32)
    sino = recon.forward_project(vol, THETA[:10], width=50, center=25.2)
    assert sino.shape == (10, 3, 50) and sino.dtype == np.float32
    for z in range(3):
        np.testing.assert_allclose(sino[:, z], recon.forward_project(vol[z], THETA[:10], width=50, center=25.2),
                                   rtol=1e-6, atol=1e-6)


def test_forward_project_matches_plain_python_ray_sum():
    # a second implementation: dense supersampled point sampling along each ray, bilinear image
    from scipy.ndimage import map_coordinates

    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    n = 24
    img = gaussian_filter(rng.random((n, n)), 2.0).astype(np.float32)  # smooth: interpolants agree
    theta = np.deg2rad([0.0, 20.0, 63.0, 90.0, 145.0])
    sino = recon.forward_project(img, theta)
    t = np.arange(-n, n, 0.01)
    for i, th in enumerate(theta):
        for k in range(n):
            s = k - (n - 1) / 2
            x = s * np.cos(th) - t * np.sin(th)
            y = s * np.sin(th) + t * np.cos(th)
            vals = map_coordinates(img, [y + (n - 1) / 2, x + (n - 1) / 2], order=1, mode="grid-constant", cval=0.0)
            # bilinear and Joseph interpolation differ slightly on a smooth image
            assert sino[i, k] == pytest.approx(vals.sum() * 0.01, rel=0.01, abs=0.02)


def test_forward_project_matches_astra_joseph():
    # ASTRA's CPU 'linear' projector is Joseph's method too; its angle runs the other way
    # (its y axis points up), so our theta is its -theta. Agreement to float32 rounding.
    astra = pytest.importorskip("astra")
    rng = np.random.default_rng(4)
    n, width = 48, 60
    img = rng.random((n, n)).astype(np.float32)
    theta = np.sort(rng.uniform(0, 2 * np.pi, 25))
    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, width, -theta)
    pid = astra.create_projector("linear", proj_geom, vol_geom)
    try:
        sid, ref = astra.create_sino(img, pid)
        astra.data2d.delete(sid)
    finally:
        astra.projector.delete(pid)
    ours = recon.forward_project(img, theta, width=width)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.max())


def test_forward_project_bad_input():
    with pytest.raises(InputError, match="volume must be"):
        recon.forward_project(np.zeros(5), THETA)
    with pytest.raises(InputError, match="theta_rad"):
        recon.forward_project(np.zeros((4, 4)), np.array([0.0, np.nan]))
    with pytest.raises(InputError, match="width"):
        recon.forward_project(np.zeros((4, 4)), THETA, width=0)


@pytest.mark.gpu
def test_forward_project_gpu_matches_cpu():
    import cupy as cp

    rng = np.random.default_rng(3)
    vol = rng.random((4, 96, 96)).astype(np.float32)
    theta = np.linspace(0, np.pi, 73)
    cpu = recon.forward_project(vol, theta, center=50.7, width=110)
    gpu = recon.forward_project(cp.asarray(vol), theta, center=50.7, width=110)
    assert isinstance(gpu, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=1e-4, atol=1e-3)
    img_gpu = recon.forward_project(cp.asarray(vol[0]), theta)
    np.testing.assert_allclose(cp.asnumpy(img_gpu), recon.forward_project(vol[0], theta), rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------------------- simulate_scan


def test_simulate_scan_noiseless_matches_beer_lambert():
    n, r, mu = 64, 20.0, 0.02
    vol = np.stack([disc(n, r, value=mu)] * 2)
    i0, dark = 20000.0, 150.0
    proj = recon.simulate_scan(vol, THETA, incident_counts=i0, dark_level=dark, poisson=False,
                               n_flats=3, n_darks=2)
    assert isinstance(proj, recon.Projections)
    assert proj.data.dtype == np.uint16 and proj.shape == (THETA.size, 2, n)
    assert proj.data.chunks[0] == (THETA.size,) and proj.data.chunks[2] == (n,)
    s = np.arange(n) - (n - 1) / 2
    inner = np.abs(s) < r - 3
    expected = i0 * np.exp(-mu * 2 * np.sqrt(np.maximum(r * r - s * s, 0))) + dark
    data = proj.data.compute().astype(float)
    np.testing.assert_allclose(data[:, :, inner], np.broadcast_to(expected[inner], data[:, :, inner].shape), rtol=0.01)
    np.testing.assert_array_equal(proj.flats.compute(), round(i0 + dark))
    np.testing.assert_array_equal(proj.darks.compute(), round(dark))
    np.testing.assert_array_equal(proj.theta_rad, THETA)


def test_simulate_scan_poisson_statistics_and_seed():
    vol = np.zeros((4, 32, 32), np.float32)
    kw = dict(incident_counts=5000.0, dark_level=80.0, n_flats=60, n_darks=60)
    proj = recon.simulate_scan(vol, THETA[:5], seed=7, **kw)
    flats = proj.flats.compute().astype(float)
    darks = proj.darks.compute().astype(float)
    for x, lam in ((flats, 5080.0), (darks, 80.0)):
        assert abs(x.mean() - lam) < 4 * np.sqrt(lam / x.size)  # 4 standard errors
        assert x.var() == pytest.approx(lam, rel=4 * np.sqrt(2 / x.size))  # Poisson: variance = mean
    again = recon.simulate_scan(vol, THETA[:5], seed=7, **kw)
    np.testing.assert_array_equal(again.flats.compute(), proj.flats.compute())
    np.testing.assert_array_equal(again.data.compute(), proj.data.compute())
    other = recon.simulate_scan(vol, THETA[:5], seed=8, **kw)
    assert not np.array_equal(other.data.compute(), proj.data.compute())


def test_simulate_scan_defect_columns_survive_flat_field():
    vol = np.zeros((2, 32, 32), np.float32)
    proj = recon.simulate_scan(vol, THETA[:8], incident_counts=10000.0, dark_level=100.0, poisson=False,
                               dead_columns=(5, (9, 0.2)), hot_columns=(20, (25, 3000.0)), n_flats=2, n_darks=2)
    data = proj.data.compute().astype(float)
    flat = proj.flats.compute().mean(axis=0)
    dark = proj.darks.compute().mean(axis=0)
    trans = (data - dark) / (flat - dark)  # flat-field corrected transmission; 1 without defects
    np.testing.assert_allclose(trans[..., 5], 0.5, atol=1e-3)
    np.testing.assert_allclose(trans[..., 9], 0.2, atol=1e-3)
    np.testing.assert_allclose(trans[..., 20], 1.1, atol=1e-3)
    np.testing.assert_allclose(trans[..., 25], 1.3, atol=1e-3)
    good = np.setdiff1d(np.arange(32), [5, 9, 20, 25])
    np.testing.assert_allclose(trans[..., good], 1.0, atol=1e-6)


def test_simulate_scan_flat_profile_and_image_input():
    img = np.zeros((16, 16), np.float32)
    profile = np.linspace(0.5, 1.5, 16)
    proj = recon.simulate_scan(img, THETA[:3], flat_profile=profile, poisson=False, dark_level=0.0,
                               incident_counts=1000.0, pixel_size_um=1.7, energy_kev=25.5)
    assert proj.shape == (3, 1, 16) and proj.pixel_size_um == 1.7 and proj.energy_kev == 25.5
    np.testing.assert_allclose(proj.flats.compute()[0, 0], np.rint(1000 * profile))


def test_simulate_scan_slabs_give_the_same_counts(monkeypatch):
    import recon.simulate as sim

    vol = 0.01 * np.stack([recon.shepp_logan(32)] * 5)
    whole = recon.simulate_scan(vol, THETA[:20], poisson=False, dead_columns=(3,)).data.compute()
    monkeypatch.setattr(sim, "_SLAB_BYTES", 8 * 20 * 32 * 2)  # two detector rows per slab
    slabs = recon.simulate_scan(vol, THETA[:20], poisson=False, dead_columns=(3,)).data.compute()
    np.testing.assert_array_equal(slabs, whole)


def test_simulate_scan_bad_input():
    vol = np.zeros((8, 8), np.float32)
    with pytest.raises(InputError, match="uint16"):
        recon.simulate_scan(vol, THETA, incident_counts=70000.0)
    with pytest.raises(InputError, match="dead_columns"):
        recon.simulate_scan(vol, THETA, dead_columns=(8,))
    with pytest.raises(InputError, match="flat_profile"):
        recon.simulate_scan(vol, THETA, flat_profile=np.ones(5))
    with pytest.raises(InputError, match="volume_mu"):
        recon.simulate_scan(np.zeros(8), THETA)


# ---------------------------------------------------------------------------- writers


def small_scan():
    return recon.simulate_scan(0.02 * np.stack([recon.shepp_logan(24)] * 2), THETA[:12], n_flats=3, n_darks=2,
                               pixel_size_um=3.24, energy_kev=115.0)


def test_write_dxchange_layout_and_overwrite(tmp_path):
    proj = small_scan()
    path = recon.write_dxchange(tmp_path / "scan.h5", proj)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["/exchange/data"][()], proj.data.compute())
        np.testing.assert_array_equal(f["/exchange/data_white"][()], proj.flats.compute())
        np.testing.assert_array_equal(f["/exchange/data_dark"][()], proj.darks.compute())
        np.testing.assert_allclose(f["/exchange/theta"][()], np.rad2deg(THETA[:12]))
        assert f["/exchange/theta"].attrs["units"] == "degrees"
        assert f["/measurement/instrument/monochromator/energy"][()] == 115.0
    with pytest.raises(FileExistsError):
        recon.write_dxchange(path, proj)
    recon.write_dxchange(path, {"data": np.ones((2, 3, 4), np.uint16), "theta_deg": [0, 90]}, overwrite=True)
    with h5py.File(path, "r") as f:
        assert f["/exchange/data"].shape == (2, 3, 4) and "data_white" not in f["/exchange"]


def test_write_nxtomo_layout(tmp_path):
    proj = small_scan()
    path = recon.write_nxtomo(tmp_path / "scan.nx", proj, external_data=True)
    with h5py.File(path, "r") as f:
        link = f["/entry/instrument/detector"].get("data", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and link.filename == "scan_data.h5"
        keys = f["/entry/instrument/detector/image_key"][()]
        frames = f["/entry/instrument/detector/data"][()]
        np.testing.assert_array_equal(frames[keys == 0], proj.data.compute())
        assert sorted(np.unique(keys)) == [0, 1, 2] and (keys == 1).sum() == 3 and (keys == 2).sum() == 2
        np.testing.assert_allclose(f["/entry/sample/rotation_angle"][()][keys == 0], np.rad2deg(THETA[:12]))
        assert f["/entry/definition"][()] == b"NXtomo"
    with pytest.raises(FileExistsError):
        recon.write_nxtomo(path, proj)


def test_write_tiff_stack_refuses_non_empty_folder(tmp_path):
    proj = small_scan()
    out = recon.write_tiff_stack(tmp_path / "stack", proj)
    assert len(list(out["proj"].glob("*.tif"))) == 12
    np.testing.assert_allclose(np.loadtxt(out["theta_deg"]), np.rad2deg(THETA[:12]))
    with pytest.raises(FileExistsError):
        recon.write_tiff_stack(tmp_path / "stack", proj)
