"""Reconstruction filters: the discrete ramp times an apodisation window.

All filters are real and even; they are returned for the non-negative frequencies of an
``rfft`` of length ``n_pad`` (``n_pad // 2 + 1`` values), frequency ``nu_k = k / n_pad`` in
cycles per pixel.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from ._errors import InputError

FILTERS = ("ramp", "shepp", "cosine", "hann", "parzen")


def check_filter(filter_name: str) -> str:
    """Return ``filter_name`` when it is one of :data:`FILTERS`, else raise InputError."""
    if filter_name not in FILTERS:
        raise InputError(f"filter_name must be one of {FILTERS}, got {filter_name!r}")
    return filter_name


def padded_length(width_px: int, out_size_px: int) -> int:
    """FFT length (pixels) for filtering: at least twice the detector and the slice, fast for FFTs."""
    return scipy.fft.next_fast_len(2 * max(int(width_px), int(out_size_px)), real=True)


def window(filter_name: str, nu: np.ndarray) -> np.ndarray:
    """Apodisation window of ``filter_name`` at frequencies ``nu`` (cycles per pixel, |nu| <= 0.5).

    ramp: 1; shepp: sin(pi nu) / (pi nu); cosine: cos(pi nu); hann: (1 + cos(2 pi nu)) / 2;
    parzen: the Parzen window of t = 2 |nu| (1 - 6 t^2 + 6 t^3 for t <= 1/2, 2 (1 - t)^3 above).
    """
    check_filter(filter_name)
    nu = np.abs(np.asarray(nu, dtype=np.float64))
    if filter_name == "ramp":
        return np.ones_like(nu)
    if filter_name == "shepp":
        return np.sinc(nu)
    if filter_name == "cosine":
        return np.cos(np.pi * nu)
    if filter_name == "hann":
        return 0.5 * (1.0 + np.cos(2.0 * np.pi * nu))
    t = np.clip(2.0 * nu, 0.0, 1.0)
    return np.where(t <= 0.5, 1.0 - 6.0 * t**2 + 6.0 * t**3, 2.0 * (1.0 - t) ** 3)


@functools.lru_cache(maxsize=32)
def _ramp(n_pad: int) -> np.ndarray:
    # Band-limited ramp sampled in real space (Kak & Slaney, eq. 3.61): h[0] = 1/4,
    # h[j] = -1 / (pi j)^2 for odd j, 0 for even j; its DFT avoids the DC offset of a
    # sampled |nu| on a finite padded detector.
    j = np.arange(n_pad)
    j = np.minimum(j, n_pad - j)
    h = np.zeros(n_pad)
    h[0] = 0.25
    odd = j % 2 == 1
    h[odd] = -1.0 / (np.pi * j[odd]) ** 2
    return scipy.fft.rfft(h).real


@functools.lru_cache(maxsize=64)
def _response_cached(filter_name: str, n_pad: int) -> np.ndarray:
    nu = np.arange(n_pad // 2 + 1) / n_pad
    out = (_ramp(n_pad) * window(filter_name, nu)).astype(np.float32)
    out.setflags(write=False)
    return out


def filter_response(filter_name: str, n_pad: int) -> np.ndarray:
    """Frequency response of ``filter_name`` for an rfft of length ``n_pad`` (pixels).

    Parameters
    ----------
    filter_name : str
        One of :data:`FILTERS`.
    n_pad : int
        FFT length in pixels (the zero-padded detector width).

    Returns
    -------
    numpy.ndarray
        float32, ``n_pad // 2 + 1`` values at ``nu_k = k / n_pad`` cycles per pixel: about
        ``|nu| * window(nu)`` (read-only, cached per length).
    """
    check_filter(filter_name)
    if int(n_pad) < 2:
        raise InputError(f"the padded detector length must be >= 2 pixels, got {n_pad}")
    return _response_cached(filter_name, int(n_pad))
