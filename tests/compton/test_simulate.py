"""Simulator: reference profiles, spectrum totals, geometry and frames round trip."""

import numpy as np
import pytest
import xraylib
from scipy.integrate import quad

import compton
from compton import simulate as sim


@pytest.mark.parametrize("z", [3, 8, 28])
@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_reference_profile_holds_all_electrons(z):
    sym = xraylib.AtomicNumberToSymbol(z)
    total = 2 * sim.reference_cumulative(sym, 100.0)
    assert total == pytest.approx(z, rel=2e-3)
    # tabulated cumulative vs adaptive quadrature of xraylib itself
    q, _ = quad(lambda p: xraylib.ComptonProfile(z, p), 0, 3.0, limit=400, epsabs=1e-7)
    assert sim.reference_cumulative(sym, 3.0) == pytest.approx(q, rel=1e-4)


def test_composition_sums_atoms():
    pz = np.linspace(-4, 4, 9)
    j = compton.reference_profile("LiNi0.6Mn0.2Co0.2O2", pz)
    by_hand = np.array([xraylib.ComptonProfile(3, abs(p)) + 0.6 * xraylib.ComptonProfile(28, abs(p))
                        + 0.2 * xraylib.ComptonProfile(25, abs(p)) + 0.2 * xraylib.ComptonProfile(27, abs(p))
                        + 2 * xraylib.ComptonProfile(8, abs(p)) for p in pz])
    np.testing.assert_allclose(j, by_hand, rtol=1e-3)
    assert sim.nmc622(0.5) == "Li0.5Ni0.6Mn0.2Co0.2O2"
    assert compton.reference_emf(sim.nmc622(1.0)) > compton.reference_emf(sim.nmc622(0.3))


def test_spectrum_counts_peak_and_resolution():
    edges = np.arange(60.0, 125.0, 0.2)
    s = sim.expected_spectrum("Li", edges, counts=1e5, fwhm_kev=None)
    assert s.sum() == pytest.approx(1e5, rel=1e-9)
    centres = 0.5 * (edges[1:] + edges[:-1])
    assert centres[np.argmax(s)] == pytest.approx(compton.compton_energy(115.0, np.pi / 2), abs=0.2)
    # a line convolved with the resolution has the requested FWHM
    line = sim.expected_spectrum("Li", edges, counts=0, fwhm_kev=0.8, lines={70.0: 1e6})
    half = line >= line.max() / 2
    fine = np.interp(np.arange(68, 72, 0.001), centres, line)
    assert (fine >= line.max() / 2).sum() * 0.001 == pytest.approx(0.8, abs=0.06)
    assert line.sum() == pytest.approx(1e6, rel=1e-6) and half.sum() >= 3
    noisy = compton.simulate_spectrum("Li", edges, counts=1e5, seed=0)
    assert noisy.dtype.kind == "i" and abs(noisy.sum() - 1e5) < 5 * np.sqrt(1e5)


def test_geometry_angles():
    g = compton.Geometry()
    th = g.scattering_angles()
    # edge pixel: in-plane offset 39.5 * 0.25 mm at 150 mm behind the pinhole; column 0 lies
    # towards the beam direction (+x) in this convention (flip=True mirrors it)
    expect = np.pi / 2 - np.arctan(39.5 * 0.25 / 150.0)
    assert th[40, 0] == pytest.approx(expect, abs=2e-4)
    assert th[40, -1] == pytest.approx(np.pi - expect, abs=2e-4)
    assert np.ptp(th[:, 10]) < 1e-3                      # rows barely change the angle
    gf = compton.Geometry(flip=True)
    np.testing.assert_allclose(gf.scattering_angles(), th[:, ::-1])
    with pytest.raises(compton.InputError, match="pinhole_to_beam_mm"):
        compton.Geometry(pinhole_to_beam_mm=-1)


def test_read_geometry_yaml(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("e0_kev: 120\ntheta_centre_deg: 85\npixel_pitch_um: 250\n")
    g = compton.read_geometry(p, shape=(8, 8))
    assert g.e0_kev == 120 and g.theta_centre_rad == pytest.approx(np.deg2rad(85)) and g.shape == (8, 8)
    p.write_text("pinhole_mm: 3\n")
    with pytest.raises(compton.InputError, match="unknown geometry key 'pinhole_mm'"):
        compton.read_geometry(p)


def test_frames_round_trip_through_process_frames():
    edges = np.arange(0.0, 200.0 + 0.2, 0.2)
    geo = compton.Geometry(shape=(80, 80))
    cube = compton.simulate_cube(["NMC622"], np.zeros((80, 80), int), edges, geometry=geo,
                                 counts_per_pixel=30, seed=2)
    frames = compton.simulate_frames(cube, 20000, gain_kev_per_adu=0.03, dark_adu=100.0, seed=3)
    out = compton.process_frames(frames, dark=100.0, threshold=20.0, gradients=0.03, intercepts=0.0,
                                 bin_width_kev=0.2, e_min_kev=0.0, e_max_kev=200.0, device="cpu")
    # a few same-frame collisions are lost; energies survive to within the ADU step
    assert out.counts.sum() == pytest.approx(cube.counts.sum(), rel=0.01)
    s_in = cube.counts.sum(axis=(0, 1)).astype(float)
    s_out = out.counts.sum(axis=(0, 1)).astype(float)
    c = 0.5 * (edges[1:] + edges[:-1])
    assert (s_in * c).sum() / s_in.sum() == pytest.approx((s_out * c).sum() / s_out.sum(), abs=0.05)
