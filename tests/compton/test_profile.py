"""Kinematics, Compton profiles and single-spectrum EMF against independent truths."""

import numpy as np
import pytest
from scipy.optimize import brentq

import compton
from compton import simulate as sim
from compton.profile import C_AU, MC2_KEV

E1 = 115.0


def exact_pz(e2, e1, theta):
    """Energy-momentum conservation for scattering off an electron of momentum p along the
    scattering vector (impulse approximation), p_z = -p . q_hat with q = k1 - k2 (a.u.)."""
    cos_t = np.cos(theta)
    q = np.sqrt(e1**2 + e2**2 - 2 * e1 * e2 * cos_t)       # |q| c in keV

    def f(pz_au):
        pc = pz_au / C_AU * MC2_KEV                           # |p| c in keV, p antiparallel to q
        e_in = np.sqrt(MC2_KEV**2 + pc**2)
        e_out = np.sqrt(MC2_KEV**2 + (q - pc) ** 2)           # |p + q| with p = -pz q_hat
        return e1 + e_in - e2 - e_out

    return brentq(f, -60.0, 60.0, xtol=1e-12)


@pytest.mark.parametrize("theta", [np.pi / 2, np.deg2rad(80), np.deg2rad(100), np.deg2rad(135)])
def test_pz_matches_exact_relativistic_within_half_percent(theta):
    ec = compton.compton_energy(E1, theta)
    e2 = np.linspace(ec - 7.0, ec + 7.0, 141)
    approx = compton.pz_from_energy(e2, E1, theta)
    exact = np.array([exact_pz(e, E1, theta) for e in e2])
    sel = (np.abs(exact) <= 5.0) & (np.abs(exact) > 1e-3)
    assert sel.sum() > 50
    assert np.max(np.abs(approx[sel] / exact[sel] - 1)) < 0.005
    assert np.all(np.sign(approx[sel]) == np.sign(exact[sel]))


def test_pz_is_zero_at_free_electron_compton_energy():
    for e1 in (59.54, 115.0, 200.0):
        for th in (0.3, np.pi / 2, 2.5):
            e2 = e1 / (1 + e1 * (1 - np.cos(th)) / MC2_KEV)
            assert compton.pz_from_energy(e2, e1, th) == pytest.approx(0.0, abs=1e-12)
    assert compton.compton_energy(115.0, np.pi / 2) == pytest.approx(93.9, abs=0.05)  # SCIENCE.md


def test_klein_nishina_thomson_limit_and_total():
    re2 = 2.8179403262e-13**2
    # low energy: Thomson (r_e^2/2)(1 + cos^2)
    assert compton.klein_nishina(1e-4, 1.0) == pytest.approx(0.5 * re2 * (1 + np.cos(1.0) ** 2), rel=1e-5)
    # integrated over the sphere vs the analytic Klein-Nishina total cross-section at 115 keV
    th = np.linspace(0, np.pi, 20001)
    total = np.trapezoid(compton.klein_nishina(E1, th) * 2 * np.pi * np.sin(th), th)
    k = E1 / MC2_KEV
    an = 2 * np.pi * re2 * ((1 + k) / k**2 * (2 * (1 + k) / (1 + 2 * k) - np.log(1 + 2 * k) / k)
                            + np.log(1 + 2 * k) / (2 * k) - (1 + 3 * k) / (1 + 2 * k) ** 2)
    assert total == pytest.approx(an, rel=1e-6)


@pytest.mark.parametrize("comp", ["Li", "NMC622", "PEO-LiTFSI"])
def test_noiseless_infinite_resolution_returns_xraylib_profile(comp):
    edges = np.arange(80.0, 108.0, 0.05)
    spec = compton.simulate_spectrum(comp, edges, counts=1e7, fwhm_kev=None, noise=False)
    prof = compton.compton_profile(spec, edges, pz_max=6.0)
    truth = compton.reference_profile(comp, prof.pz)
    span = sim.reference_cumulative(comp, prof.pz_edges[[0, -1]])
    truth = truth / (span[1] - span[0])                        # unit area over the same range
    sel = np.abs(prof.pz) <= 5
    assert np.max(np.abs(prof.J[sel] / truth[sel] - 1)) < 0.01
    ref = compton.reference_emf(comp)
    assert prof.emf()[0] == pytest.approx(ref, rel=0.005)
    assert compton.emf(prof.pz, prof.J)[0] == pytest.approx(ref, rel=0.005)
    assert compton.emf_from_spectra(spec, edges).emf == pytest.approx(ref, rel=0.005)


def test_coarse_bins_give_bin_averaged_profile_and_emf():
    """0.2 keV bins: J equals the bin average of the xraylib profile; EMF within 0.5 %."""
    edges = np.arange(80.0, 108.0, 0.2)
    spec = compton.simulate_spectrum("Li", edges, counts=1e7, fwhm_kev=None, noise=False,
                                     absorption=("LiNi0.6Mn0.2Co0.2O2", 4.7, 0.5))
    prof = compton.compton_profile(spec, edges, absorption=("LiNi0.6Mn0.2Co0.2O2", 4.7, 0.5))
    cum = sim.reference_cumulative("Li", prof.pz_edges)
    truth = np.diff(cum) / np.diff(prof.pz_edges) / (cum[-1] - cum[0])
    assert np.allclose(prof.J, truth, rtol=1e-6)
    assert compton.emf_from_spectra(spec, edges, absorption=("LiNi0.6Mn0.2Co0.2O2", 4.7, 0.5)).emf == \
        pytest.approx(compton.reference_emf("Li"), rel=0.005)
    # ignoring the absorption correction biases J (the check can fail)
    raw = compton.compton_profile(spec, edges)
    assert not np.allclose(raw.J, truth, rtol=1e-3)


def test_emf_of_gaussian_profile_is_analytic():
    from scipy.special import erf

    s = 1.7
    pz = np.linspace(-8, 8, 4001)
    val, _ = compton.emf(pz, np.exp(-pz**2 / (2 * s * s)), 1.0, 5.0)
    a, b = erf(1 / (np.sqrt(2) * s)), erf(5 / (np.sqrt(2) * s))
    assert val == pytest.approx(a / (b - a), rel=1e-5)
    val2, _ = compton.emf(pz, np.exp(-pz**2 / (2 * s * s)), 0.5, 3.0)
    a, b = erf(0.5 / (np.sqrt(2) * s)), erf(3 / (np.sqrt(2) * s))
    assert val2 == pytest.approx(a / (b - a), rel=1e-5)


def test_symmetrise_and_unit_area():
    edges = np.arange(80.0, 108.0, 0.1)
    spec = compton.simulate_spectrum("NMC622", edges, counts=1e6, fwhm_kev=None, noise=False)
    prof = compton.compton_profile(spec, edges, symmetrise=True)
    assert np.sum(prof.J * np.diff(prof.pz_edges)) == pytest.approx(1.0, rel=2e-3)
    truth = compton.reference_profile("NMC622", prof.pz)
    span = sim.reference_cumulative("NMC622", prof.pz_edges[[0, -1]])
    inner = np.abs(prof.pz) < 5
    assert np.allclose(prof.J[inner], truth[inner] / (span[1] - span[0]), rtol=1e-2)
    n = compton.compton_profile(spec, edges, normalise=10.0)
    assert np.sum(n.J * np.diff(n.pz_edges)) == pytest.approx(10.0)


def test_background_and_lines_are_removed_exactly():
    """Flat + linear background and fluorescence lines in the side bands are annihilated by the
    side-band fit: the EMF equals that of the clean spectrum processed the same way."""
    edges = np.arange(60.0, 120.0, 0.2)
    clean = sim.expected_spectrum("NMC622", edges, counts=1e6)
    centres = 0.5 * (edges[1:] + edges[:-1])
    dirty = clean + 300 + 5.0 * (centres - 90) + sim.expected_spectrum(
        "Li", edges, counts=0, lines={74.97: 2e5, 72.80: 1.2e5, 84.94: 6e4})
    kw = dict(background="linear", sidebands_kev=[(70.0, 86.0), (108.0, 113.0)])
    a = compton.emf_from_spectra(clean, edges, **kw).emf
    b = compton.emf_from_spectra(dirty, edges, **kw).emf
    assert b == pytest.approx(a, rel=1e-6)
    raw_clean = compton.emf_from_spectra(clean, edges).emf
    assert abs(compton.emf_from_spectra(dirty, edges).emf / raw_clean - 1) > 0.015  # uncorrected
    pa = compton.compton_profile(dirty, edges, **kw)
    pb = compton.compton_profile(clean, edges, **kw)
    assert np.allclose(pa.J, pb.J, rtol=1e-6)


def test_deconvolution_sharpens_towards_the_true_profile():
    edges = np.arange(80.0, 108.0, 0.2)
    blurred = compton.simulate_spectrum("Li", edges, counts=1e7, fwhm_kev=0.8, noise=False)
    sharp = compton.simulate_spectrum("Li", edges, counts=1e7, fwhm_kev=None, noise=False)
    ref = compton.emf_from_spectra(sharp, edges).emf
    e_blur = compton.emf_from_spectra(blurred, edges).emf
    e_dec = compton.emf_from_spectra(compton.deconvolve_resolution(blurred, edges, fwhm_kev=0.8, n_iter=200), edges).emf
    assert abs(e_dec - ref) < 0.5 * abs(e_blur - ref)


def test_input_errors_name_the_problem():
    with pytest.raises(compton.InputError, match="energies_kev has 5 values"):
        compton.compton_profile(np.ones(10), np.arange(5.0))
    with pytest.raises(compton.InputError, match="0 < low < high"):
        compton.emf(np.linspace(-6, 6, 10), np.ones(10), 5.0, 1.0)
    with pytest.raises(compton.InputError, match="composition 'Xx2'"):
        compton.simulate_spectrum("Xx2", np.arange(80.0, 100.0, 0.2))
    with pytest.raises(compton.InputError, match="sidebands_kev"):
        compton.compton_profile(np.ones(100), np.arange(85.0, 105.0, 0.2), background="linear")


def test_subtract_background_matches_the_in_place_fit():
    edges = np.arange(60.0, 120.0, 0.2)
    centres = 0.5 * (edges[1:] + edges[:-1])
    rng = np.random.default_rng(2)
    expect = sim.expected_spectrum("NMC622", edges, counts=2e5) + 50 + 0.5 * (centres - 90)
    spectra = rng.poisson(expect, size=(40, expect.size)).astype(float)
    kw = dict(sidebands_kev=[(70.0, 86.0), (108.0, 113.0)])
    net, var = compton.subtract_background(spectra, edges, degree=1, **kw)
    direct = compton.emf_from_spectra(spectra, edges, background="linear", **kw)
    np.testing.assert_allclose(compton.emf_from_spectra(net, edges).emf, direct.emf, rtol=1e-10)
    # a constant + linear background is annihilated: same net spectrum as without it
    clean = sim.expected_spectrum("NMC622", edges, counts=2e5)
    np.testing.assert_allclose(compton.subtract_background(expect, edges, **kw)[0],
                               compton.subtract_background(clean, edges, **kw)[0], atol=1e-8)
    # per-bin variance against the scatter over the 40 spectra
    peak = np.abs(centres - 94) < 3
    assert np.mean(var[:, peak]) == pytest.approx(np.mean(np.var(net[:, peak], axis=0, ddof=1)), rel=0.15)


@pytest.mark.gpu
def test_deconvolution_gpu_matches_cpu():
    import cupy as cp

    edges = np.arange(80.0, 108.0, 0.2)
    s = np.stack([compton.simulate_spectrum("Li", edges, counts=1e5, seed=i) for i in range(4)]).astype(float)
    cpu = compton.deconvolve_resolution(s, edges, fwhm_kev=0.8, n_iter=20)
    gpu = compton.deconvolve_resolution(cp.asarray(s), edges, fwhm_kev=0.8, n_iter=20)
    assert isinstance(gpu, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=1e-8, atol=1e-8)
