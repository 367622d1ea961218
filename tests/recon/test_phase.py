"""Tests for recon.phase.paganin_filter against a Fresnel-propagation simulation.

Convention: wave number k = 2 pi / lambda; the object's exit wave is
exp(-k beta T) exp(-i k delta T), so the contact intensity is exp(-mu T) with mu = 2 k beta.
"""

from __future__ import annotations

import numpy as np
import pytest

from recon import InputError, minus_log, paganin_filter

ENERGY_KEV = 25.0
LAMBDA_UM = 12.398419843320026 / ENERGY_KEV * 1e-4  # 0.496 Angstrom
K_UM = 2 * np.pi / LAMBDA_UM  # rad/um
DELTA, BETA = 4e-7, 4e-10  # a light material at 25 keV (delta/beta = 1000)
PIXEL_UM = 1.0
N = 256


def sphere_thickness(radius_um=40.0, centre=(0.0, 0.0)):
    """Projected thickness (um) of a sphere on an N x N grid of PIXEL_UM pixels."""
    c = (np.arange(N) - (N - 1) / 2) * PIXEL_UM
    y, x = np.meshgrid(c, c, indexing="ij")
    r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2
    return 2.0 * np.sqrt(np.clip(radius_um**2 - r2, 0.0, None)), np.sqrt(r2)


def propagate_intensity(thickness_um, distance_um):
    """Exact angular-spectrum (free-space) propagation of the exit wave; returns I / I0."""
    exit_wave = np.exp(-K_UM * BETA * thickness_um) * np.exp(-1j * K_UM * DELTA * thickness_um)
    kx = 2 * np.pi * np.fft.fftfreq(N, d=PIXEL_UM)
    q2 = kx[:, None] ** 2 + kx[None, :] ** 2
    kz_minus_k = -q2 / (K_UM + np.sqrt(K_UM**2 - q2))  # sqrt(k^2 - q^2) - k, without cancellation
    field = np.fft.ifft2(np.fft.fft2(exit_wave) * np.exp(1j * distance_um * kz_minus_k))
    return np.abs(field) ** 2


def test_paganin_recovers_projected_thickness():
    thickness, r = sphere_thickness()
    distance_mm = 100.0
    intensity = propagate_intensity(thickness, distance_mm * 1e3)
    mu = 2 * K_UM * BETA  # 1/um
    # the simulation shows strong phase contrast: plain -log is far from mu * T at the rim
    inner = r < 0.8 * 40.0
    naive = minus_log(intensity) / mu
    assert np.max(np.abs(naive - thickness)[r < 39.0]) > 0.5 * thickness.max()
    out = paganin_filter(intensity, pixel_size_um=PIXEL_UM, distance_mm=distance_mm, energy_kev=ENERGY_KEV,
                         delta_beta=DELTA / BETA)
    assert out.dtype == np.float32 and out.shape == intensity.shape
    recovered = np.asarray(minus_log(out), dtype=np.float64) / mu
    rel = np.abs(recovered - thickness)[inner] / thickness.max()
    assert rel.max() < 0.03, rel.max()
    # outside the sphere, away from its rim, the thickness is recovered as ~0
    assert np.abs(recovered[r > 50.0]).max() < 0.03 * thickness.max()
    # total projected volume (um^3) is conserved
    assert recovered.sum() == pytest.approx(thickness.sum(), rel=0.02)


def test_paganin_hand_computed_cosine_attenuation():
    period_um = 64.0
    x = np.arange(N) * PIXEL_UM
    eps = 0.01
    img = np.tile(1.0 + eps * np.cos(2 * np.pi * x / period_um), (N, 1))
    out = paganin_filter(img, pixel_size_um=PIXEL_UM, distance_mm=100.0, energy_kev=ENERGY_KEV,
                         delta_beta=1000.0, pad=False)
    # alpha = z * (delta/beta) * lambda / (4 pi) = 1e5 um * 1000 * 4.9594e-5 um / (4 pi) = 394.66 um^2
    alpha = 1e5 * 1000.0 * 4.959367937e-5 / (4 * np.pi)
    factor = 1.0 / (1.0 + alpha * (2 * np.pi / period_um) ** 2)
    assert factor == pytest.approx(0.2083, abs=5e-4)
    amplitude = (out[:, :].max() - out[:, :].min()) / 2
    assert amplitude == pytest.approx(eps * factor, rel=1e-3)
    np.testing.assert_allclose(out.mean(), 1.0, rtol=1e-6)


def test_paganin_identity_without_propagation():
    thickness, _ = sphere_thickness()
    contact = propagate_intensity(thickness, 0.0)  # z = 0: pure absorption image
    np.testing.assert_allclose(contact, np.exp(-2 * K_UM * BETA * thickness), rtol=1e-10)
    out = paganin_filter(contact, pixel_size_um=PIXEL_UM, distance_mm=0.0, energy_kev=ENERGY_KEV, delta_beta=1000.0)
    np.testing.assert_allclose(out, contact, rtol=1e-6)
    tiny = paganin_filter(contact, pixel_size_um=PIXEL_UM, distance_mm=1e-6, energy_kev=ENERGY_KEV, delta_beta=1000.0)
    np.testing.assert_allclose(tiny, contact, rtol=1e-5)


def test_paganin_stack_and_padding():
    thickness, _ = sphere_thickness(centre=(100.0, 0.0))  # touches the right edge
    stack = np.stack([propagate_intensity(thickness, d) for d in (5e4, 1e5)])
    out = paganin_filter(stack, pixel_size_um=PIXEL_UM, distance_mm=100.0, energy_kev=ENERGY_KEV, delta_beta=1000.0)
    assert out.shape == stack.shape
    single = paganin_filter(stack[1], pixel_size_um=PIXEL_UM, distance_mm=100.0, energy_kev=ENERGY_KEV,
                            delta_beta=1000.0)
    np.testing.assert_allclose(out[1], single, rtol=1e-6)


def test_paganin_padding_prevents_wrap_around():
    # a linear wedge is unchanged by the filter (|k|^2 of a ramp is zero) except where the
    # periodic FFT joins its bright right edge to its dark left edge
    ramp = np.tile(np.linspace(0.6, 0.9, N), (N // 2, 1))
    kw = dict(pixel_size_um=PIXEL_UM, distance_mm=100.0, energy_kev=ENERGY_KEV, delta_beta=1000.0)
    padded = paganin_filter(ramp, **kw)
    plain = paganin_filter(ramp, pad=False, **kw)
    err_padded = np.abs(padded - ramp).max()
    err_plain = np.abs(plain - ramp)[:, :10].max()
    assert err_plain > 0.05  # wrap-around pulls the left edge towards 0.9
    assert err_padded < 0.1 * err_plain
    np.testing.assert_allclose(padded[:, 60:-60], ramp[:, 60:-60], atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pixel_size_um=0.0), "pixel_size_um"),
        (dict(distance_mm=-1.0), "distance_mm"),
        (dict(energy_kev=float("nan")), "energy_kev"),
        (dict(delta_beta="x"), "delta_beta"),
    ],
)
def test_paganin_errors(kwargs, match):
    args = dict(pixel_size_um=1.0, distance_mm=10.0, energy_kev=25.0, delta_beta=100.0)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        paganin_filter(np.ones((8, 8)), **args)
    with pytest.raises(InputError, match="transmission has shape"):
        paganin_filter(np.ones(8), pixel_size_um=1.0, distance_mm=10.0, energy_kev=25.0, delta_beta=100.0)


@pytest.mark.gpu
def test_paganin_gpu_matches_cpu():
    import cupy as cp

    thickness, _ = sphere_thickness()
    stack = np.stack([propagate_intensity(thickness, d) for d in (5e4, 1e5)])
    kw = dict(pixel_size_um=PIXEL_UM, distance_mm=100.0, energy_kev=ENERGY_KEV, delta_beta=1000.0)
    cpu = paganin_filter(stack, **kw)
    gpu = paganin_filter(cp.asarray(stack), **kw)
    assert isinstance(gpu, cp.ndarray) and gpu.dtype == cp.float32
    np.testing.assert_allclose(gpu.get(), cpu, rtol=1e-5, atol=1e-6)
