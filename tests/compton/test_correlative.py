"""Correlative XCS-CT: unmixing simulated mixtures with known volume fractions."""

import numpy as np
import pytest

import compton
from compton import simulate as sim

EDGES = np.arange(60.0, 125.0, 0.2)
COMPS = ["NMC622", "PEO-LiTFSI", "Li metal"]


def _components(counts=(4e5, 2e5, 1e5)):
    return np.stack([sim.expected_spectrum(c, EDGES, counts=n) for c, n in zip(COMPS, counts)])


def test_published_two_region_subtraction_is_reproduced():
    """separator = (region 2 - 0.89 x region 3) / separator volume, region 3 pure electrode."""
    x = _components()[:2]
    f = np.array([[1.0, 0.0], [0.89, 0.11]])
    rng = np.random.default_rng(1)
    s = rng.poisson(f @ x).astype(float)
    un = compton.unmix(s, f)
    by_hand = (s[1] - 0.89 * s[0]) / 0.11
    np.testing.assert_allclose(un.spectra[1], by_hand, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(un.spectra[0], s[0], rtol=1e-9, atol=1e-9)
    # variance of the subtraction: (var2 + 0.89^2 var3) / 0.11^2
    np.testing.assert_allclose(un.sigma[1] ** 2, (np.clip(s[1], 1, None) + 0.89**2 * np.clip(s[0], 1, None)) / 0.11**2,
                               rtol=1e-9)


def test_unmixing_recovers_components_within_noise():
    x = _components()
    f = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.5, 0.1, 0.4], [0.3, 0.3, 0.4]])
    rng = np.random.default_rng(5)
    s = rng.poisson(f @ x).astype(float)
    un = compton.unmix(s, f)
    sel = x.sum(axis=0) > 200                                  # bins with signal
    pull = (un.spectra[:, sel] - x[:, sel]) / un.sigma[:, sel]
    assert abs(np.mean(pull)) < 0.1
    assert np.std(pull) == pytest.approx(1.0, abs=0.15)
    # and against a plain per-bin numpy lstsq with the same weights
    b = int(np.flatnonzero(sel)[10])
    w = 1 / np.sqrt(np.clip(s[:, b], 1, None))
    ref = np.linalg.lstsq(f * w[:, None], s[:, b] * w, rcond=None)[0]
    np.testing.assert_allclose(un.spectra[:, b], ref, rtol=1e-9)


def test_component_emf_with_honest_uncertainty():
    x = _components(counts=(3e6, 3e6, 3e6))
    f = np.array([[1.0, 0.0, 0.0], [0.6, 0.4, 0.0], [0.5, 0.2, 0.3]])
    rng = np.random.default_rng(11)
    emfs, sigs = [], []
    for _ in range(30):
        s = rng.poisson(f @ x).astype(float)
        rows, _ = compton.correlative_emf(s, f, EDGES, names=COMPS)
        emfs.append([r["emf"] for r in rows])
        sigs.append([r["sigma"] for r in rows])
    emfs, sigs = np.array(emfs), np.array(sigs)
    truth = [float(compton.emf_from_spectra(xi, EDGES).emf) for xi in x]
    assert np.allclose(emfs.mean(axis=0), truth, atol=3 * sigs.mean(axis=0) / np.sqrt(30) + 1e-3)
    np.testing.assert_allclose(sigs.mean(axis=0), emfs.std(axis=0, ddof=1), rtol=0.3)
    # components differ: Li metal's valence-rich profile has the highest EMF
    assert truth[2] > truth[1] and truth[2] > truth[0]


def test_region_spectra_and_fractions_from_masks():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(4, 6, 10))
    lab = np.array([[0, 0, 1, 1, 2, 2]] * 4)
    lab[0, 0] = -1
    rs = compton.region_spectra(counts, lab)
    for r in range(3):
        expect = sum(counts[i, j] for i in range(4) for j in range(6) if lab[i, j] == r)
        np.testing.assert_array_equal(rs[r], expect)
    vol = np.zeros((10, 8, 8), int)
    vol[:, :, 4:] = 1
    vol[:, :, 6:] = 2
    masks = [np.zeros_like(vol, bool) for _ in range(2)]
    masks[0][:, :, :4] = True
    masks[1][:, :, 3:7] = True
    fr = compton.component_fractions(vol, masks, [0, 1, 2])
    np.testing.assert_allclose(fr, [[1, 0, 0], [0.25, 0.5, 0.25]])


def test_unmix_rejects_degenerate_fractions():
    with pytest.raises(compton.InputError, match="full column rank"):
        compton.unmix(np.ones((2, 5)), np.array([[0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(compton.InputError, match="share R"):
        compton.unmix(np.ones((3, 5)), np.ones((2, 2)))


def test_align_spectra_removes_angle_blur_before_summing():
    edges = np.arange(60.0, 125.0, 0.2)
    geo = compton.Geometry(shape=(4, 20), pixel_pitch_um=1000.0)   # +-3.8 degrees over the columns
    cube = compton.simulate_cube(["Li"], np.zeros((4, 20), int), edges, geometry=geo,
                                 counts_per_pixel=1e5, noise=False, fwhm_kev=None)
    th = geo.scattering_angles()
    aligned = compton.align_spectra(cube.counts, edges, th, theta_ref_rad=np.pi / 2)
    ref = compton.reference_emf("Li")
    assert float(compton.emf_from_spectra(aligned.sum(axis=(0, 1)), edges).emf) == pytest.approx(ref, rel=0.01)
    raw = float(compton.emf_from_spectra(cube.counts.sum(axis=(0, 1)), edges).emf)
    assert raw < 0.8 * ref                                     # summing unaligned spectra blurs
    assert aligned.sum() == pytest.approx(cube.counts.sum(), rel=0.01)


def test_component_emf_from_maps_with_per_pixel_angles():
    """Regions of mixed pixels at different angles: the window-sum unmixing recovers each
    component's xraylib EMF within its uncertainty (infinite resolution: a finite resolution in
    keV is a different p_z blur at each angle, so the EMF itself would vary across pixels)."""
    edges = np.arange(60.0, 125.0, 0.2)
    shape = (6, 30)
    geo = compton.Geometry(shape=shape, pixel_pitch_um=800.0)
    lab = np.zeros(shape, int)
    lab[:, 10:20] = 1
    lab[:, 20:] = 2
    f = np.array([[0.8, 0.2, 0.0], [0.1, 0.6, 0.3], [0.3, 0.1, 0.6]])
    pure = [compton.simulate_cube([c], np.zeros(shape, int), edges, geometry=geo, counts_per_pixel=2e5,
                                  noise=False, fwhm_kev=None) for c in COMPS]
    expect = sum(f[lab, k][..., None] * pure[k].counts for k in range(3))
    truth = [compton.reference_emf(c) for c in COMPS]
    rng = np.random.default_rng(3)
    vals, sigs = [], []
    for _ in range(20):
        cube = pure[0]
        cube = type(cube)(counts=rng.poisson(expect), bin_edges_kev=edges, accepted=cube.accepted,
                          rejected=cube.rejected)
        res = compton.emf_map(cube, geometry=geo)
        rows = compton.component_emf(res, lab, f, names=COMPS)
        vals.append([r["emf"] for r in rows])
        sigs.append([r["sigma"] for r in rows])
    vals, sigs = np.array(vals), np.array(sigs)
    assert np.all(np.abs(vals.mean(axis=0) - truth) < 3 * sigs.mean(axis=0) / np.sqrt(20) + 2e-3), (vals.mean(axis=0), truth)
    np.testing.assert_allclose(sigs.mean(axis=0), vals.std(axis=0, ddof=1), rtol=0.4)
