"""EMF maps: linearity in Li content, honest uncertainties, per-pixel angles, CPU vs GPU."""

import numpy as np
import pytest

import compton
from compton import simulate as sim

EDGES = np.arange(60.0, 125.0, 0.2)


def test_emf_linear_in_li_content_with_realistic_counts():
    xs = np.linspace(0.3, 1.0, 8)
    vals, sig = [], []
    for i, x in enumerate(xs):
        s = compton.simulate_spectrum(compton.nmc622(x), EDGES, counts=2e6, fwhm_kev=0.8, seed=i)
        r = compton.emf_from_spectra(s, EDGES)
        vals.append(float(r.emf))
        sig.append(float(r.sigma))
    slope, icpt = np.polyfit(xs, vals, 1)
    resid = np.array(vals) - (icpt + slope * xs)
    r2 = 1 - np.sum(resid**2) / np.sum((vals - np.mean(vals)) ** 2)
    assert slope > 0
    assert r2 >= 0.99
    # the reference-profile EMF rises too, with a similar slope (resolution flattens it a bit)
    ref = [compton.reference_emf(compton.nmc622(x)) for x in xs]
    assert np.polyfit(xs, ref, 1)[0] == pytest.approx(slope, rel=0.25)


@pytest.mark.parametrize("background", [None, "linear"])
def test_sigma_matches_scatter_of_50_realisations(background):
    comp = compton.nmc622(0.6)
    lines = {74.97: 4e4, 72.80: 2.5e4, 84.94: 1.5e4} if background else None
    expect = sim.expected_spectrum(comp, EDGES, counts=2e5, background_per_kev=1500.0 if background else 0.0,
                                   lines=lines)
    kw = dict(background="linear", sidebands_kev=[(70.0, 86.0), (108.0, 113.0)]) if background else {}
    rng = np.random.default_rng(7)
    noisy = rng.poisson(expect, size=(50, expect.size))
    res = compton.emf_from_spectra(noisy, EDGES, **kw)    # 50 spectra at once
    scatter = np.std(res.emf, ddof=1)
    assert np.mean(res.sigma) == pytest.approx(scatter, rel=0.20)
    # covariance: with a shared background fit the windows are correlated, and ignoring that
    # changes sigma
    if background:
        assert np.all(res.cov != 0)
        naive = res.emf * np.sqrt((res.sigma_low / res.e_low) ** 2 + (res.sigma_high / res.e_high) ** 2)
        assert not np.allclose(naive, res.sigma, rtol=0.01)


def test_emf_map_uses_per_pixel_angles():
    geo = compton.Geometry(shape=(6, 40))
    theta = geo.scattering_angles()
    assert np.ptp(theta) > np.deg2rad(2)                 # columns see different angles
    cube = compton.simulate_cube(["Li"], np.zeros((6, 40), int), EDGES, geometry=geo,
                                 counts_per_pixel=1e6, noise=False, fwhm_kev=None)
    good = compton.emf_map(cube, geometry=geo)
    wrong = compton.emf_map(cube, theta_rad=np.pi / 2)
    ref = compton.reference_emf("Li")
    assert np.allclose(good.emf, ref, rtol=0.005)
    assert np.max(np.abs(wrong.emf / ref - 1)) > 0.02      # one angle for all pixels is wrong


def test_emf_map_matches_per_pixel_profiles():
    """The vectorised map equals a plain loop of single-spectrum profiles."""
    geo = compton.Geometry(shape=(3, 5), pixel_pitch_um=2000.0)
    labels = np.array([[0, 1, 2, 0, 1], [1, 2, 0, 1, 2], [2, 0, 1, 2, 0]])
    cube = compton.simulate_cube(["Li", "NMC622", "PEO-LiTFSI"], labels, EDGES, geometry=geo,
                                 counts_per_pixel=5e4, seed=3)
    res = compton.emf_map(cube, geometry=geo)
    th = geo.scattering_angles()
    for r in range(3):
        for c in range(5):
            prof = compton.compton_profile(cube.counts[r, c], EDGES, theta_rad=th[r, c], pz_max=6)
            val, sig = prof.emf()
            assert res.emf[r, c] == pytest.approx(val, rel=1e-9)
            assert res.sigma[r, c] == pytest.approx(sig, rel=1e-6)


def test_concentration_calibration_recovers_li_content():
    xs = np.array([0.3, 0.5, 0.7, 0.9, 1.0])
    meas = [compton.emf_from_spectra(compton.simulate_spectrum(compton.nmc622(x), EDGES, counts=2e6, seed=int(10 * x)),
                                     EDGES) for x in xs]
    cal = compton.fit_emf_calibration(xs, [float(m.emf) for m in meas], sigma_emf=[float(m.sigma) for m in meas])
    assert cal.r2 > 0.99
    s = compton.simulate_spectrum(compton.nmc622(0.8), EDGES, counts=2e6, seed=99)
    r = compton.emf_from_spectra(s, EDGES)
    x, sx = cal.concentration(r.emf, r.sigma)
    assert abs(x - 0.8) < 3 * sx + 0.02
    assert 0 < sx < 0.1


def test_calibration_fit_against_numpy_polyfit():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 12)
    y = 1.2 + 0.5 * x + rng.normal(0, 0.01, x.size)
    cal = compton.fit_emf_calibration(x, y)
    (b, a), cov = np.polyfit(x, y, 1, cov=True)
    assert cal.slope == pytest.approx(b) and cal.intercept == pytest.approx(a)
    assert cal.cov[1, 1] == pytest.approx(cov[0, 0], rel=1e-6)
    with pytest.raises(compton.InputError, match="different x"):
        compton.fit_emf_calibration([1, 1], [2, 3])


@pytest.mark.gpu
def test_gpu_matches_cpu():
    import cupy as cp

    geo = compton.Geometry(shape=(16, 16))
    cube = compton.simulate_cube(["NMC622"], np.zeros((16, 16), int), EDGES, geometry=geo,
                                 counts_per_pixel=2e4, seed=1)
    kw = dict(geometry=geo, background="linear", sidebands_kev=[(70.0, 86.0), (108.0, 113.0)])
    cpu = compton.emf_map(cube, device="cpu", **kw)
    gpu = compton.emf_map(cube, device="gpu", **kw)
    assert isinstance(gpu.emf, np.ndarray)
    np.testing.assert_allclose(gpu.emf, cpu.emf, rtol=1e-10)
    np.testing.assert_allclose(gpu.sigma, cpu.sigma, rtol=1e-8)
    on_dev = compton.emf_from_spectra(cp.asarray(cube.counts), EDGES, theta_rad=cp.asnumpy(cp.asarray(geo.scattering_angles())))
    assert isinstance(on_dev.emf, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(on_dev.emf), compton.emf_map(cube, geometry=geo, device="cpu").emf, rtol=1e-10)


def test_emf_from_spectra_input_errors():
    with pytest.raises(compton.InputError, match="does not match the spectra's leading shape"):
        compton.emf_from_spectra(np.ones((3, 4, EDGES.size - 1)), EDGES, theta_rad=np.ones(5))
    with pytest.raises(compton.InputError, match="does not cover"):
        compton.emf_from_spectra(np.ones(50), np.arange(10.0, 20.0, 0.2))
    with pytest.raises(compton.InputError, match="units keV"):
        cube = compton.simulate_cube(["Li"], np.zeros((2, 2), int), EDGES, noise=False)
        cube.units = "ADU"
        compton.emf_map(cube)
