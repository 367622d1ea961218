"""Projection corrections: flat/dark normalisation, -log and zinger removal.

Every function takes NumPy or CuPy arrays and returns the same kind, as float32.
Projections are ``(n_angles, n_rows, n_cols)``; a single projection ``(n_rows, n_cols)``
is accepted wherever that makes sense.
"""

from __future__ import annotations

import numpy as np

from ._backend import array_module, ndimage_module
from ._errors import InputError

__all__ = ["normalize", "minus_log", "remove_zingers"]

_REDUCTIONS = ("mean", "median")


def _check_finite(xp, arr, name: str) -> None:
    if not bool(xp.isfinite(arr).all()):
        n_bad = int((~xp.isfinite(arr)).sum())
        raise InputError(f"{name} contains {n_bad} NaN or inf value(s); expected finite numbers")


def _reduce_reference(xp, ref, name: str, image_shape: tuple, method: str):
    """Reduce a flat or dark stack ``(n, rows, cols)`` to one float32 image ``(rows, cols)``."""
    ref = xp.asarray(ref)
    if ref.ndim not in (2, 3) or tuple(ref.shape[-2:]) != tuple(image_shape):
        raise InputError(
            f"{name} has shape {tuple(ref.shape)}; expected (n, {image_shape[0]}, {image_shape[1]}) "
            f"or {tuple(image_shape)} to match the projections' (rows, cols)"
        )
    if ref.ndim == 3 and ref.shape[0] == 0:
        raise InputError(f"{name} is empty (shape {tuple(ref.shape)}); expected at least one image")
    ref = ref.astype(xp.float32, copy=False)
    _check_finite(xp, ref, name)
    if ref.ndim == 2:
        return ref
    if method == "median":
        return xp.median(ref, axis=0).astype(xp.float32, copy=False)
    return ref.mean(axis=0, dtype=xp.float32)


def normalize(data, flats, darks=None, *, method: str = "mean", min_value: float = 1e-6):
    """Flat- and dark-field correct projections into transmission.

    Computes ``T = (data - dark) / (flat - dark)`` where ``flat`` and ``dark`` are the
    flat-field and dark-field stacks reduced over their first axis.

    Parameters
    ----------
    data : ndarray, shape (n_angles, n_rows, n_cols) or (n_rows, n_cols)
        Raw projections (detector counts, a.u.), NumPy or CuPy.
    flats : ndarray, shape (n_flats, n_rows, n_cols) or (n_rows, n_cols)
        Flat fields (open beam, counts a.u.); a 2-D array is taken as already reduced.
    darks : ndarray, shape (n_darks, n_rows, n_cols) or (n_rows, n_cols), optional
        Dark fields (beam off, counts a.u.); None means a dark level of zero.
    method : {"mean", "median"}
        How flats and darks are reduced over their first axis. "median" ignores
        zingers hitting single flat frames.
    min_value : float
        Lower bound (transmission, unitless) applied to the result, so that
        :func:`minus_log` stays finite where ``data <= dark``.

    Returns
    -------
    ndarray, float32, same shape and array kind as ``data``
        Transmission (unitless, 1 = open beam). Pixels whose flat is not above the dark
        (dead pixels) carry no information and are set to 1 (zero attenuation).

    Raises
    ------
    InputError
        Shapes of flats/darks not matching the projections, flats that are all zero or
        nowhere above the darks, NaN or inf in any input, an unknown ``method`` or a
        non-positive ``min_value``.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.full((2, 2, 2), 60.0)
    >>> flats = np.full((3, 2, 2), 110.0)
    >>> darks = np.full((2, 2, 2), 10.0)
    >>> normalize(data, flats, darks)[0, 0, 0]
    np.float32(0.5)
    """
    if method not in _REDUCTIONS:
        raise InputError(f"method must be one of {_REDUCTIONS}, got {method!r}")
    if not (np.isfinite(min_value) and min_value > 0):
        raise InputError(f"min_value must be a positive number (transmission), got {min_value!r}")
    xp = array_module(data)
    data = xp.asarray(data)
    if data.ndim not in (2, 3):
        raise InputError(
            f"projections have shape {tuple(data.shape)}; expected (n_angles, n_rows, n_cols) "
            "or (n_rows, n_cols)"
        )
    image_shape = tuple(data.shape[-2:])
    flat = _reduce_reference(xp, flats, "flats", image_shape, method)
    if darks is None:
        dark = xp.zeros(image_shape, dtype=xp.float32)
    else:
        dark = _reduce_reference(xp, darks, "darks", image_shape, method)
    data = data.astype(xp.float32, copy=False)
    _check_finite(xp, data, "projections")

    if not bool((flat != 0).any()):
        raise InputError(f"all-zero flats (shape {tuple(xp.asarray(flats).shape)}): no open-beam signal")
    denom = flat - dark
    good = denom > 0
    if not bool(good.any()):
        raise InputError(
            "flats are nowhere above the darks (all-zero flats after dark subtraction); "
            "check that flats and darks are not swapped"
        )
    denom = xp.where(good, denom, xp.float32(1.0))
    out = (data - dark) / denom
    out = xp.where(good, out, xp.float32(1.0))
    out = xp.maximum(out, xp.float32(min_value))
    return out.astype(xp.float32, copy=False)


def minus_log(transmission, *, min_value: float = 1e-6):
    """Line integrals of attenuation from transmission: ``-log(max(T, min_value))``.

    Parameters
    ----------
    transmission : ndarray
        Transmission (unitless), any shape, NumPy or CuPy.
    min_value : float
        Lower bound (unitless) applied before the logarithm so the result stays finite.

    Returns
    -------
    ndarray, float32, same shape and array kind
        Attenuation line integrals (unitless, mu times path length).

    Examples
    --------
    >>> import numpy as np
    >>> float(minus_log(np.array([np.exp(-2.0)]))[0])  # doctest: +ELLIPSIS
    2.0...
    """
    if not (np.isfinite(min_value) and min_value > 0):
        raise InputError(f"min_value must be a positive number (transmission), got {min_value!r}")
    xp = array_module(transmission)
    t = xp.asarray(transmission).astype(xp.float32, copy=False)
    return (-xp.log(xp.maximum(t, xp.float32(min_value)))).astype(xp.float32, copy=False)


def remove_zingers(projections, *, size: int = 3, threshold: float = 0.1,
                   relative: bool = True, bright_only: bool = True):
    """Replace zingers (isolated outlier pixels) by the local median, per projection.

    A pixel is an outlier when it differs from the ``size x size`` median of its own
    projection by more than the threshold; outliers are replaced by that median and
    all other pixels are returned unchanged.

    Parameters
    ----------
    projections : ndarray, shape (n_angles, n_rows, n_cols) or (n_rows, n_cols)
        Projections (raw counts, transmission or line integrals, a.u.), NumPy or CuPy.
    size : int
        Odd side (pixels) of the square median window over (rows, cols); 3 removes
        single-pixel zingers, 5 two-pixel clusters.
    threshold : float
        Detection threshold. With ``relative=True`` (default) it is a fraction of the
        local median: outliers satisfy ``x - med > threshold * |med|`` (0.1 = 10 %),
        suited to counts and transmission. With ``relative=False`` it is an absolute
        difference in the data's own units, suited to -log data near zero.
    relative : bool
        Interpret ``threshold`` relative to the local median (True) or absolute (False).
    bright_only : bool
        True (default): only pixels brighter than the median are outliers (zingers from
        direct hits). False: pixels differing in either direction are outliers.

    Returns
    -------
    ndarray, float32, same shape and array kind as ``projections``

    Examples
    --------
    >>> import numpy as np
    >>> img = np.ones((1, 5, 5)); img[0, 2, 2] = 50.0
    >>> float(remove_zingers(img)[0, 2, 2])
    1.0
    """
    if int(size) != size or size < 3 or size % 2 == 0:
        raise InputError(f"size must be an odd integer >= 3 (pixels), got {size!r}")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise InputError(f"threshold must be a finite number >= 0, got {threshold!r}")
    xp = array_module(projections)
    proj = xp.asarray(projections)
    if proj.ndim not in (2, 3):
        raise InputError(
            f"projections have shape {tuple(proj.shape)}; expected (n_angles, n_rows, n_cols) "
            "or (n_rows, n_cols)"
        )
    proj = proj.astype(xp.float32, copy=False)
    window = (size, size) if proj.ndim == 2 else (1, size, size)
    med = ndimage_module(xp).median_filter(proj, size=window, mode="reflect")
    diff = proj - med
    if not bright_only:
        diff = xp.abs(diff)
    limit = xp.float32(threshold) * xp.abs(med) if relative else xp.float32(threshold)
    return xp.where(diff > limit, med, proj).astype(xp.float32, copy=False)
