"""Private helpers for stripe removal: sinogram stacking, sorting and stripe detection."""

from __future__ import annotations

import numpy as np

from ._backend import array_module
from ._errors import InputError


def as_stack(sino, name: str = "sinogram"):
    """Return ``(xp, stack, was_2d)`` with ``stack`` a float32 ``(n_angles, n_slices, n_cols)`` copy."""
    xp = array_module(sino)
    arr = xp.asarray(sino)
    if arr.ndim not in (2, 3):
        raise InputError(
            f"{name} has shape {tuple(arr.shape)}; expected (n_angles, n_cols) "
            "or (n_angles, n_slices, n_cols)"
        )
    if min(arr.shape) < 1:
        raise InputError(f"{name} is empty (shape {tuple(arr.shape)})")
    was_2d = arr.ndim == 2
    stack = arr[:, None, :] if was_2d else arr
    return xp, stack.astype(xp.float32, copy=True), was_2d


def from_stack(stack, was_2d: bool):
    """Undo :func:`as_stack`'s reshaping."""
    return stack[:, 0, :] if was_2d else stack


def check_size(value, name: str, *, minimum: int = 1) -> int:
    """Check a window size (pixels) is an integer >= minimum."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum} (pixels), got {value!r}")
    return int(value)


def check_snr(snr) -> float:
    """Check the stripe-detection ratio."""
    if not (np.isfinite(snr) and snr > 0):
        raise InputError(f"snr must be a positive number (detection ratio, e.g. 3), got {snr!r}")
    return float(snr)


def sort_angles(xp, stack):
    """Sort every detector column of every slice along the angle axis (axis 0).

    Returns the sorted stack and the sort indices needed by :func:`unsort_angles`.
    """
    # a stable sort gives ties (e.g. a dead column) the same order on CPU and GPU
    order = xp.argsort(stack, axis=0, kind="stable") if xp is np else xp.argsort(stack, axis=0)
    return xp.take_along_axis(stack, order, axis=0), order


def unsort_angles(xp, sorted_stack, order):
    """Put values of a sorted stack back at their original angles (inverse of :func:`sort_angles`)."""
    out = xp.empty_like(sorted_stack)
    _, n_slices, n_cols = sorted_stack.shape
    s_idx = xp.arange(n_slices)[None, :, None]
    c_idx = xp.arange(n_cols)[None, None, :]
    out[order, s_idx, c_idx] = sorted_stack
    return out


def detect_stripes(xp, values, snr: float):
    """Flag stripe columns from per-column normalised values (Vo et al. 2018, algorithm 4).

    Parameters
    ----------
    values : ndarray, shape (n_slices, n_cols)
        One normalised value per detector column and slice (about 1 for normal columns).
    snr : float
        Detection ratio: larger detects fewer stripes.

    Returns
    -------
    ndarray of bool, shape (n_slices, n_cols)
        True at stripe columns.

    Notes
    -----
    The values of each slice are sorted; a straight line fitted to the middle half of the
    sorted curve describes the spread of normal columns, and the line's rise over the whole
    curve serves as the noise level. When an end of the sorted curve lies more than ``snr``
    noise levels beyond the line, the values beyond the line end by more than half that
    margin are flagged: high values (bright or fluctuating columns) and low values
    (dark or unresponsive columns) are tested separately.
    """
    n_slices, n = values.shape
    mask = xp.zeros(values.shape, dtype=bool)
    n_drop = int(0.25 * n)
    x = xp.arange(n, dtype=xp.float64)
    mid = slice(n_drop, n - n_drop)
    if n - 2 * n_drop < 3:
        return mask
    srt = xp.sort(values.astype(xp.float64), axis=1)
    xm = x[mid]
    ym = srt[:, mid]
    x_mean = xm.mean()
    y_mean = ym.mean(axis=1)
    slope = ((xm - x_mean)[None, :] * (ym - y_mean[:, None])).sum(axis=1) / ((xm - x_mean) ** 2).sum()
    start = y_mean - slope * x_mean  # fitted value at the first point
    end = start + slope * (n - 1)  # fitted value at the last point
    noise = xp.maximum(xp.abs(end - start), 1e-6)
    high = xp.abs(srt[:, -1] - end) / noise >= snr
    low = xp.abs(start - srt[:, 0]) / noise >= snr
    upper = (end + 0.5 * snr * noise)[:, None]
    lower = (start - 0.5 * snr * noise)[:, None]
    mask |= high[:, None] & (values > upper)
    mask |= low[:, None] & (values <= lower)
    return mask


def dilate_columns(xp, mask):
    """Grow a ``(n_slices, n_cols)`` stripe mask by one column on each side."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def interpolate_columns(xp, stack, mask, *, max_fraction: float = 1.0 / 3.0):
    """Replace flagged columns by linear interpolation between the nearest good columns.

    Slices where ``max_fraction`` or more of the columns are flagged are left unchanged
    (too many detections mean the detection is not trustworthy there).
    """
    mask_h = mask.get() if hasattr(mask, "get") else np.asarray(mask)
    n_slices, n_cols = mask_h.shape
    cols = np.arange(n_cols)
    s_all, c_all, l_all, r_all, w_all = [], [], [], [], []
    for s in range(n_slices):
        bad = mask_h[s]
        n_bad = int(bad.sum())
        if n_bad == 0 or n_bad >= max_fraction * n_cols:
            continue
        good_idx = cols[~bad]
        bad_idx = cols[bad]
        pos = np.searchsorted(good_idx, bad_idx)
        left = good_idx[np.clip(pos - 1, 0, good_idx.size - 1)]
        right = good_idx[np.clip(pos, 0, good_idx.size - 1)]
        span = (right - left).astype(np.float64)
        w = np.where(span > 0, (bad_idx - left) / np.where(span > 0, span, 1.0), 0.0)
        s_all.append(np.full(n_bad, s))
        c_all.append(bad_idx)
        l_all.append(left)
        r_all.append(right)
        w_all.append(w)
    if not s_all:
        return stack
    s_i, c_i, l_i, r_i = (xp.asarray(np.concatenate(a)) for a in (s_all, c_all, l_all, r_all))
    w = xp.asarray(np.concatenate(w_all).astype(np.float32))[None, :]
    stack[:, s_i, c_i] = (1 - w) * stack[:, s_i, l_i] + w * stack[:, s_i, r_i]
    return stack
