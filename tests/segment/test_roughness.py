"""Roughness parameters against closed-form values on analytic surfaces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special

from segment import InputError, roughness
from segment.roughness import level_surface

PX = 0.5  # um


def _grid(n=256):
    y, x = np.mgrid[0:n, 0:n] * PX
    return y, x


def sinusoid(amplitude=3.0, wavelength_um=32.0, n=256):
    y, x = _grid(n)
    return amplitude * np.sin(2 * np.pi * x / wavelength_um)


def test_sinusoid_ra_rq_within_1_percent():
    a = 3.0
    r = roughness(sinusoid(a), PX, level=None)
    assert r.Ra == pytest.approx(2 * a / np.pi, rel=0.01)
    assert r.Rq == pytest.approx(a / np.sqrt(2), rel=0.01)
    assert r.Sa == r.Ra and r.Sq == r.Rq
    assert r.Sz == pytest.approx(2 * a, rel=0.01)
    assert r.Ssk == pytest.approx(0.0, abs=1e-6)
    assert r.Sku == pytest.approx(1.5, rel=0.01)  # kurtosis of a sine: 3/2


def test_tilted_sinusoid_after_plane_levelling():
    """A tilt across the ridges (orthogonal to the sinusoid) is removed exactly by the plane."""
    a, lam = 2.0, 32.0
    y, x = _grid(256)
    xc = x.mean()  # a cosine even about the centre has no linear component of its own
    z = a * np.cos(2 * np.pi * (x - xc) / lam) + 0.05 * y - 0.02 * x + 7.0
    r = roughness(z, PX, level="plane")
    assert r.Ra == pytest.approx(2 * a / np.pi, rel=0.01)
    assert r.Rq == pytest.approx(a / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("level", ["plane", "poly2"])
def test_tilted_plane_is_flat_after_levelling(level):
    y, x = _grid(128)
    z = 5.0 + 0.3 * x - 0.2 * y
    r = roughness(z, PX, level=level)
    assert r.Ra < 1e-9 and r.Rq < 1e-9 and r.Sdr < 1e-12
    assert r.Sz < 1e-8
    # without levelling the tilt is roughness: Ra of a plane ramp over a square = known mean |dev|
    r0 = roughness(z, PX, level=None)
    assert r0.Ra > 1.0


def test_poly2_removes_paraboloid_but_plane_does_not():
    y, x = _grid(128)
    z = 1e-3 * (x - 30) ** 2 + 2e-3 * (y - 20) ** 2
    assert roughness(z, PX, level="poly2").Rq < 1e-9
    assert roughness(z, PX, level="plane").Rq > 0.1


def test_eggbox_sdr_matches_quadrature_within_2_percent():
    a, lam = 4.0, 32.0
    y, x = _grid(256)
    k = 2 * np.pi / lam
    z = a * np.sin(k * x) * np.sin(k * y)
    r = roughness(z, PX, level=None)

    def integrand(v, u):
        zx = a * k * np.cos(k * u) * np.sin(k * v)
        zy = a * k * np.sin(k * u) * np.cos(k * v)
        return np.sqrt(1 + zx**2 + zy**2)

    area, _ = integrate.dblquad(integrand, 0, lam, 0, lam, epsabs=1e-10, epsrel=1e-10)
    sdr_true = area / lam**2 - 1
    assert sdr_true > 0.1  # a clearly developed surface, not a trivial case
    assert r.Sdr == pytest.approx(sdr_true, rel=0.02)
    # egg-box statistics: Rq = A/2, Sz = 2A
    assert r.Rq == pytest.approx(a / 2, rel=0.01)
    assert r.Sz == pytest.approx(2 * a, rel=0.01)


def test_psd_peaks_at_the_sinusoid_frequency():
    lam = 16.0
    r = roughness(sinusoid(1.0, lam), PX, level=None)
    f_peak = r.psd_freq_per_um[np.argmax(r.psd_um4)]
    bin_width = r.psd_freq_per_um[1] - r.psd_freq_per_um[0]
    assert abs(f_peak - 1 / lam) <= bin_width
    # Parseval: integral of the 2-D PSD over frequency equals Sq^2
    z = sinusoid(1.0, lam)
    f = np.fft.fft2(z - z.mean())
    psd2 = np.abs(f) ** 2 * PX**2 / z.size
    df = 1 / (z.shape[0] * PX)
    assert psd2.sum() * df * df == pytest.approx(r.Rq**2, rel=1e-6)


def test_correlation_length_of_a_sinusoid_matches_bessel_root():
    """Radially averaged ACF of a 1-D sinusoid is J0(2 pi r / lambda); Sal is where it hits 0.2."""
    lam = 40.0
    r = roughness(sinusoid(1.0, lam, n=320), PX, level=None)
    from scipy.optimize import brentq

    u = brentq(lambda t: special.j0(t) - 0.2, 0.5, 2.4)
    expected = u * lam / (2 * np.pi)
    assert r.correlation_length_um == pytest.approx(expected, rel=0.05)


def test_nan_points_are_ignored():
    z = sinusoid(2.0)
    z2 = z.copy()
    z2[:, :64] = np.nan  # a whole period of 64 px missing keeps full periods
    r = roughness(z2, PX, level=None)
    assert r.n_points == z.size - 64 * 256
    assert r.Ra == pytest.approx(4 / np.pi, rel=0.01)


def test_level_surface_residual_has_zero_mean():
    y, x = _grid(64)
    z = 1 + 0.1 * x + np.cos(y)
    res = level_surface(z, pixel_size_um=PX, level="plane")
    assert abs(np.nanmean(res)) < 1e-12


def test_bad_inputs():
    with pytest.raises(InputError, match="2-D"):
        roughness(np.zeros(10), 1.0)
    with pytest.raises(InputError, match="pixel_size_um"):
        roughness(np.zeros((4, 4)), 0.0)
    with pytest.raises(InputError, match="level"):
        roughness(np.zeros((4, 4)), 1.0, level="cubic")
    with pytest.raises(InputError, match="valid points"):
        roughness(np.full((4, 4), np.nan), 1.0)
