"""Per-pixel energy calibration from simulated Am-241 floods with known gain and offset."""

from __future__ import annotations

import numpy as np
import pytest

import compton
from compton._sim_frames import am241_flood_spectra, sparse_frames


def test_recovers_known_gain_and_offset_within_half_percent():
    rng = np.random.default_rng(0)
    shape = (12, 12)
    gain = rng.uniform(0.027, 0.033, shape)  # keV/ADU, +-10 % pixel to pixel
    icpt = rng.uniform(-3.0, -2.0, shape)  # keV
    counts, edges = am241_flood_spectra(gain, icpt, counts_59=80000, seed=1)
    cal = compton.fit_calibration(counts, edges)
    assert not cal.failed.any(), cal.report()
    assert np.max(np.abs(cal.gradients / gain - 1)) < 0.005
    assert np.max(np.abs(cal.intercepts / icpt - 1)) < 0.005
    # every line found where the true calibration puts it
    true_adu = (np.asarray(cal.lines_kev)[None, None, :] - icpt[..., None]) / gain[..., None]
    np.testing.assert_allclose(cal.peaks_adu, true_adu, rtol=2e-3)


def test_reports_pixels_that_fail():
    shape = (4, 4)
    gain, icpt = np.full(shape, 0.03), np.full(shape, 0.5)
    counts, edges = am241_flood_spectra(gain, icpt, counts_59=5000, seed=2)
    counts[1, 2] = 0  # dead pixel
    counts[3, 3] = np.random.default_rng(0).poisson(30, counts.shape[2])  # noise, no lines
    cal = compton.fit_calibration(counts, edges)
    assert set(cal.reasons) == {(1, 2), (3, 3)}
    assert "too few counts" in cal.reasons[(1, 2)]
    assert cal.failed.sum() == 2 and "2 failed" in cal.report()
    good = ~cal.failed
    np.testing.assert_allclose(cal.gradients[good], 0.03, rtol=5e-3)
    assert cal.gradients[1, 2] == pytest.approx(np.median(cal.gradients[good]))


def test_flood_frames_through_pipeline_then_calibrated_cube():
    """Frames -> ADU cube -> fit -> calibrated cube: the 59.54 keV line lands at 59.54 keV."""
    from compton._sim_frames import AM241_LINES_KEV, AM241_WEIGHTS

    rng = np.random.default_rng(5)
    gain = rng.uniform(0.028, 0.032, (80, 80))
    icpt = rng.uniform(-1.0, 1.0, (80, 80))
    frames, _ = sparse_frames(3000, occupancy=0.3, fraction_double=0.0, fraction_triple=0.0,
                              lines_kev=AM241_LINES_KEV, weights=AM241_WEIGHTS,
                              gain_kev_per_adu=gain, intercept_kev=icpt, dark_adu=100.0,
                              noise_adu=2.0, seed=6)
    adu = compton.process_frames(frames, dark=100.0, threshold=150.0, bin_width_kev=2.0,
                                 e_max_kev=2400.0, device="cpu")
    patch = np.s_[:20, :20]  # fit a 20 x 20 patch (fits take ~10 ms per pixel)
    cal = compton.fit_calibration(adu.counts[patch], adu.bin_edges_kev, min_counts=100)
    ok = ~cal.failed
    assert ok.mean() > 0.9, cal.report()
    assert np.median(np.abs(cal.gradients[ok] / gain[patch][ok] - 1)) < 0.01
    g, c = gain.copy(), icpt.copy()
    g[patch], c[patch] = cal.gradients, cal.intercepts
    cube = compton.process_frames(frames, dark=100.0, threshold=150.0, gradients=g,
                                  intercepts=c, bin_width_kev=0.2, device="cpu")
    spec = cube.counts[patch].sum(axis=(0, 1))
    window = (cube.bin_centres_kev > 50) & (cube.bin_centres_kev < 70)
    peak = cube.bin_centres_kev[window][np.argmax(spec[window])]
    assert abs(peak - 59.54) < 0.3


@pytest.mark.parametrize(
    "counts, edges, match",
    [
        (np.zeros((4, 4)), np.arange(5.0), r"\[rows, cols, bins\]"),
        (np.zeros((2, 2, 4)), np.arange(4.0), "edges_adu"),
    ],
)
def test_bad_input(counts, edges, match):
    with pytest.raises(compton.InputError, match=match):
        compton.fit_calibration(counts, edges)
