"""Private helpers shared by ``recon.center`` and ``recon.extended``.

Input checks for sinograms and angles, selection of a uniform 0-180 degree half of a scan,
and a sub-pixel shift of detector rows that works for NumPy and CuPy arrays alike.
"""

from __future__ import annotations

import math

import numpy as np

from ._backend import array_module
from ._errors import InputError


def check_sinogram_2d(sinogram, name: str = "sinogram"):
    """Return ``sinogram`` as a floating array of shape ``(n_angles, width)`` (same backend).

    Raises
    ------
    InputError
        When it is not 2-D, is too small, or holds NaN/inf values.
    """
    xp = array_module(sinogram)
    sino = xp.asarray(sinogram)
    if sino.ndim != 2:
        raise InputError(
            f"{name} must be 2-D (n_angles, width); got shape {tuple(sino.shape)}"
            " (for a stack, pass one slice sinogram[:, i, :])"
        )
    if sino.shape[0] < 4 or sino.shape[1] < 8:
        raise InputError(
            f"{name} is too small: need at least 4 angles and 8 detector columns, got shape"
            f" {tuple(sino.shape)}"
        )
    if not np.issubdtype(sino.dtype, np.floating):
        sino = sino.astype(xp.float32)
    if not bool(xp.isfinite(sino).all()):
        raise InputError(
            f"{name} contains NaN or infinite values; clean it (e.g. minus_log guards) first"
        )
    return sino


def check_theta(theta_rad, n_angles: int, name: str = "theta_rad") -> np.ndarray:
    """Return the rotation angles as a 1-D float64 NumPy array (radians) after checks.

    Raises
    ------
    InputError
        When the length does not match ``n_angles``, values are not finite, or the angles
        are not strictly monotonic.
    """
    if type(theta_rad).__module__.startswith("cupy"):
        theta_rad = theta_rad.get()
    theta = np.asarray(theta_rad, dtype=np.float64).ravel()
    if theta.size != n_angles:
        raise InputError(
            f"{name} has {theta.size} angles but the sinogram has {n_angles} rows (angles)"
        )
    if not np.all(np.isfinite(theta)):
        raise InputError(f"{name} contains NaN or infinite values")
    d = np.diff(theta)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise InputError(f"{name} must be strictly increasing or decreasing (radians)")
    if abs(theta[-1] - theta[0]) > 4 * math.pi:
        raise InputError(
            f"{name} spans {math.degrees(abs(theta[-1] - theta[0])):.1f} degrees; angles must be"
            " in radians (did you pass degrees?)"
        )
    return theta


def angle_step(theta: np.ndarray) -> float:
    """Median absolute angular step in radians."""
    return float(np.median(np.abs(np.diff(theta))))


def half_turn_indices(theta: np.ndarray, n_out: int | None = None) -> np.ndarray:
    """Row indices of the projections nearest to a uniform grid over [theta0, theta0 + pi).

    Parameters
    ----------
    theta : ndarray
        Monotonic rotation angles in radians.
    n_out : int, optional
        Number of output angles (default: the number of steps in a half turn).

    Returns
    -------
    ndarray of int
        Indices into ``theta``; the projections at ``theta0 + j * pi / n_out``, nearest first.

    Raises
    ------
    InputError
        When the scan covers clearly less than a half turn (180 degrees).
    """
    step = angle_step(theta)
    span = abs(theta[-1] - theta[0])
    if span < math.pi - 2.5 * step:
        raise InputError(
            f"theta_rad spans {math.degrees(span):.2f} degrees; at least 180 degrees"
            f" (minus one step of {math.degrees(step):.3f} degrees) is needed"
        )
    n_half = max(2, int(round(math.pi / step)))
    if n_out is None or n_out > n_half:
        n_out = n_half
    rel = np.abs(theta - theta[0])
    targets = np.arange(n_out) * (math.pi / n_out)
    idx = np.searchsorted(rel, targets)
    idx = np.clip(idx, 1, rel.size - 1)
    left = rel[idx - 1]
    right = rel[idx]
    idx = np.where(np.abs(targets - left) <= np.abs(right - targets), idx - 1, idx)
    return idx.astype(np.intp)


def shift_rows(a, shift_px: float, *, pad_px: int = 16):
    """Shift every row of ``a`` along its last axis by ``shift_px`` pixels (Fourier shift).

    ``out[..., k] = a[..., k - shift_px]``; the rows are padded with their edge values first,
    so nothing wraps around, and the noise power is kept for any fractional shift (no
    interpolation smoothing). Works for NumPy and CuPy arrays.
    """
    xp = array_module(a)
    width = a.shape[-1]
    pad = int(math.ceil(abs(shift_px))) + int(pad_px)
    pad_width = [(0, 0)] * (a.ndim - 1) + [(pad, pad)]
    padded = xp.pad(a, pad_width, mode="edge")
    n = padded.shape[-1]
    freq = xp.fft.rfftfreq(n)
    ramp = xp.exp(-2j * math.pi * freq * shift_px)
    out = xp.fft.irfft(xp.fft.rfft(padded, axis=-1) * ramp, n=n, axis=-1)
    return out[..., pad : pad + width].astype(a.dtype, copy=False)


def shift_rows_int(a, shift_px: int):
    """Integer shift along the last axis with edge values filled in: ``out[k] = a[clip(k - s)]``."""
    xp = array_module(a)
    width = a.shape[-1]
    src = xp.clip(xp.arange(width) - int(shift_px), 0, width - 1)
    return a[..., src]


def parabola_vertex(x0: float, dx: float, f_m: float, f_0: float, f_p: float) -> float:
    """Abscissa of the vertex of the parabola through (x0 - dx, f_m), (x0, f_0), (x0 + dx, f_p).

    Falls back to ``x0`` when the three points are not convex; clipped to ``x0 +- dx / 2``.
    """
    denom = f_m - 2.0 * f_0 + f_p
    if not np.isfinite(denom) or denom <= 0:
        return float(x0)
    off = 0.5 * (f_m - f_p) / denom
    return float(x0 + dx * float(np.clip(off, -0.5, 0.5)))
