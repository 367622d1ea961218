"""Ring-artefact (stripe) removal on sinograms.

Implements, from the papers' descriptions:

- Vo, Atwood & Drakopoulos 2018, "Superior techniques for eliminating ring artifacts in
  X-ray micro-tomography", Optics Express 26, 28396: sorting-based removal of small and
  medium stripes (:func:`remove_stripes_sorting`), large stripes
  (:func:`remove_large_stripes`), unresponsive and fluctuating (dead) stripes
  (:func:`remove_dead_stripes`) and their combination (:func:`remove_all_stripes`).
- Münch, Trtik, Marone & Stampanoni 2009, "Stripe and ring artifact removal with combined
  wavelet-Fourier filtering", Optics Express 17, 8567 (:func:`remove_stripes_fw`).

Sinograms are ``(n_angles, n_cols)`` or stacks ``(n_angles, n_slices, n_cols)``; each
slice's sinogram is processed on its own. Inputs may be NumPy or CuPy arrays; the output
is float32 of the same kind. Stripes are expected in attenuation (-log) sinograms.
"""

from __future__ import annotations

import numpy as np

from . import _stripes_detect as _sd
from ._backend import is_gpu_array, ndimage_module
from ._errors import InputError

__all__ = [
    "remove_stripes_sorting",
    "remove_large_stripes",
    "remove_dead_stripes",
    "remove_all_stripes",
    "remove_stripes_fw",
]


def remove_stripes_sorting(sino, *, size: int = 21, dim: int = 1):
    """Remove small and medium stripes by median filtering the angle-sorted sinogram.

    Each detector column is sorted along the angle axis, which turns stripes into smooth
    steps between columns; a median filter across columns on the sorted sinogram removes
    them, and the values are put back at their original angles (Vo et al. 2018, algorithm 3).

    Parameters
    ----------
    sino : ndarray, shape (n_angles, n_cols) or (n_angles, n_slices, n_cols)
        Sinogram(s) (line integrals, a.u.), NumPy or CuPy.
    size : int
        Median window across detector columns (pixels); wider than the widest stripe to
        remove (but smaller than the object's features), e.g. 21.
    dim : {1, 2}
        1: window ``1 x size`` (columns only); 2: ``size x size`` over (angles, columns).

    Returns
    -------
    ndarray, float32, same shape and array kind as ``sino``

    Examples
    --------
    >>> import numpy as np
    >>> sino = np.tile(np.linspace(1.0, 2.0, 64), (90, 1)) + np.random.default_rng(0).normal(0, 0.01, (90, 64))
    >>> sino[:, 30] += 0.2  # a stripe
    >>> out = remove_stripes_sorting(sino, size=11)
    >>> bool(abs(float(out[:, 30].mean() - sino[:, 29:32:2].mean())) < 0.02)
    True
    """
    size = _sd.check_size(size, "size")
    if dim not in (1, 2):
        raise InputError(f"dim must be 1 or 2, got {dim!r}")
    xp, stack, was_2d = _sd.as_stack(sino)
    srt, order = _sd.sort_angles(xp, stack)
    window = (1, 1, size) if dim == 1 else (size, 1, size)
    srt = ndimage_module(xp).median_filter(srt, size=window, mode="reflect")
    return _sd.from_stack(_sd.unsort_angles(xp, srt, order), was_2d)


def remove_large_stripes(sino, *, snr: float = 3.0, size: int = 51, drop_ratio: float = 0.1,
                         norm: bool = True):
    """Detect and remove large (wide) stripes (Vo et al. 2018, algorithm 5).

    The angle-sorted sinogram is smoothed across columns with a wide median filter; the
    ratio of each column's (trimmed) mean to the smoothed one reveals stripes, which are
    detected by thresholding the sorted ratios (algorithm 4) and replaced by the
    smoothed values put back at their angles. Optionally every column is first divided
    by its ratio, which also corrects small gain differences.

    Parameters
    ----------
    sino : ndarray, shape (n_angles, n_cols) or (n_angles, n_slices, n_cols)
        Sinogram(s) (line integrals, a.u.), NumPy or CuPy.
    snr : float
        Detection ratio (> 1): larger detects fewer stripes.
    size : int
        Median window across detector columns (pixels), wider than the widest stripe.
    drop_ratio : float
        Fraction (0 to 0.8) of the sorted values dropped (half at each end) before the
        column means, against false detections caused by outliers.
    norm : bool
        Divide each column by its mean ratio before the replacement.

    Returns
    -------
    ndarray, float32, same shape and array kind as ``sino``
    """
    snr = _sd.check_snr(snr)
    size = _sd.check_size(size, "size")
    if not (0.0 <= drop_ratio <= 0.8):
        raise InputError(f"drop_ratio must be between 0 and 0.8, got {drop_ratio!r}")
    xp, stack, was_2d = _sd.as_stack(sino)
    n_angles = stack.shape[0]
    n_drop = int(0.5 * drop_ratio * n_angles)
    srt, order = _sd.sort_angles(xp, stack)
    smooth = ndimage_module(xp).median_filter(srt, size=(1, 1, size), mode="reflect")
    kept = slice(n_drop, n_angles - n_drop)
    mean_raw = srt[kept].mean(axis=0, dtype=xp.float64)
    mean_smooth = smooth[kept].mean(axis=0, dtype=xp.float64)
    ratio = xp.where(mean_smooth != 0, mean_raw / xp.where(mean_smooth != 0, mean_smooth, 1), 1)
    mask = _sd.dilate_columns(xp, _sd.detect_stripes(xp, ratio, snr))
    if norm:
        safe = xp.where(ratio > 0, ratio, xp.float32(1.0)).astype(xp.float32)
        stack /= safe[None]
    corrected = _sd.unsort_angles(xp, smooth, order)
    stack = xp.where(mask[None], corrected, stack)
    return _sd.from_stack(stack.astype(xp.float32, copy=False), was_2d)


def remove_dead_stripes(sino, *, snr: float = 3.0, size: int = 51, residual: bool = True,
                        smooth_size: int = 10):
    """Detect and remove unresponsive and fluctuating stripes (Vo et al. 2018, algorithm 6).

    A dead (unresponsive) detector column barely changes with angle, a fluctuating one
    changes far more than its neighbours. The summed absolute difference between each
    column and its smoothed version along the angles, divided by its median across
    columns, flags both kinds (algorithm 4 thresholding); flagged columns are replaced by
    linear interpolation between the nearest good columns of each row.

    Parameters
    ----------
    sino : ndarray, shape (n_angles, n_cols) or (n_angles, n_slices, n_cols)
        Sinogram(s) (line integrals, a.u.), NumPy or CuPy.
    snr : float
        Detection ratio (> 1): larger detects fewer stripes.
    size : int
        Median window across detector columns (pixels) for the background level.
    residual : bool
        Follow with :func:`remove_large_stripes` to remove what is left.
    smooth_size : int
        Uniform-filter window along the angles (pixels) used to measure fluctuation.

    Returns
    -------
    ndarray, float32, same shape and array kind as ``sino``

    Notes
    -----
    The two outermost columns at each detector edge are never interpolated. A slice in
    which a third or more of the columns is flagged is left unchanged. The interpolation
    indices are computed on the host; the data stay on the device.
    """
    snr = _sd.check_snr(snr)
    size = _sd.check_size(size, "size")
    smooth_size = _sd.check_size(smooth_size, "smooth_size")
    xp, stack, was_2d = _sd.as_stack(sino)
    ndi = ndimage_module(xp)
    smooth = ndi.uniform_filter1d(stack, smooth_size, axis=0, mode="reflect")
    fluct = xp.abs(stack - smooth).sum(axis=0, dtype=xp.float64)  # (n_slices, n_cols)
    background = ndi.median_filter(fluct, size=(1, size), mode="reflect")
    fill = xp.abs(background).mean(axis=1, keepdims=True)
    fill = xp.where(fill > 0, fill, 1)
    background = xp.where(background == 0, fill, background)
    mask = _sd.dilate_columns(xp, _sd.detect_stripes(xp, fluct / background, snr))
    mask[:, :2] = False
    mask[:, -2:] = False
    stack = _sd.interpolate_columns(xp, stack, mask)
    if residual:
        stack = remove_large_stripes(stack, snr=snr, size=size)
    return _sd.from_stack(stack, was_2d)


def remove_all_stripes(sino, *, snr: float = 3.0, la_size: int = 51, sm_size: int = 21,
                       drop_ratio: float = 0.1, dim: int = 1):
    """Remove all stripe types in the order of Vo et al. 2018 (algorithms 6, 5, 4 and 3).

    Dead and fluctuating stripes first (:func:`remove_dead_stripes` without the residual
    step), then large stripes (:func:`remove_large_stripes`), then small and medium ones
    (:func:`remove_stripes_sorting`).

    Parameters
    ----------
    sino : ndarray, shape (n_angles, n_cols) or (n_angles, n_slices, n_cols)
        Sinogram(s) (line integrals, a.u.), NumPy or CuPy.
    snr : float
        Detection ratio (> 1) for dead and large stripes: larger detects fewer.
    la_size : int
        Median window (pixels) for large stripes, wider than the widest stripe.
    sm_size : int
        Median window (pixels) for small and medium stripes.
    drop_ratio : float
        Fraction of sorted values dropped in the large-stripe detection (0 to 0.8).
    dim : {1, 2}
        Window dimension of the final sorting filter (see :func:`remove_stripes_sorting`).

    Returns
    -------
    ndarray, float32, same shape and array kind as ``sino``

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(1.0 + 0.2 * np.hanning(256), (180, 1))
    >>> sino = clean + rng.normal(0, 0.005, clean.shape)
    >>> sino[:, 120:130] += 0.1  # a wide stripe
    >>> sino[:, 40] = 0.0  # a dead column
    >>> out = remove_all_stripes(sino)
    >>> float(np.abs(out - clean).mean(0).max()) < 0.02  # worst column error, was 1.0
    True
    """
    out = remove_dead_stripes(sino, snr=snr, size=la_size, residual=False)
    out = remove_large_stripes(out, snr=snr, size=la_size, drop_ratio=drop_ratio)
    return remove_stripes_sorting(out, size=sm_size, dim=dim)


def _default_fw_level(shape: tuple, wavelet: str) -> int:
    """Deepest level keeping >= 32 angle samples in the coarsest coefficients, within PyWavelets' limit."""
    import pywt

    max_level = pywt.dwt_max_level(min(shape), pywt.Wavelet(wavelet).dec_len)
    by_angles = int(np.floor(np.log2(max(shape[0], 1) / 32.0)))
    return max(1, min(max_level, by_angles))


def _fw_one(sino2d: np.ndarray, *, level: int | None, wavelet: str, sigma: float, pad: bool):
    """Münch et al. filter on one host sinogram ``(n_angles, n_cols)``."""
    import pywt

    n_angles, n_cols = sino2d.shape
    if pad:
        pad_a, pad_c = n_angles // 4, n_cols // 8
        work = np.pad(sino2d, ((pad_a, pad_a), (pad_c, pad_c)), mode="reflect" if n_angles > 1 else "edge")
    else:
        pad_a = pad_c = 0
        work = sino2d
    if level is None:
        level = _default_fw_level(work.shape, wavelet)
    coeffs = pywt.wavedec2(work, wavelet, level=level)
    for i in range(1, len(coeffs)):
        c_h, c_v, c_d = coeffs[i]
        n = c_v.shape[0]
        freq = np.fft.fftfreq(n) * n  # angular frequency index, cycles per scan
        damp = 1.0 - np.exp(-(freq**2) / (2.0 * sigma**2))
        c_v = np.fft.ifft(np.fft.fft(c_v, axis=0) * damp[:, None], axis=0).real
        coeffs[i] = (c_h, c_v, c_d)
    out = pywt.waverec2(coeffs, wavelet)
    return out[pad_a : pad_a + n_angles, pad_c : pad_c + n_cols]


def remove_stripes_fw(sino, *, level: int | None = None, wavelet: str = "db5", sigma: float = 2.0,
                      pad: bool = True):
    """Combined wavelet-Fourier stripe filter (Münch et al. 2009).

    The sinogram is decomposed with a 2-D discrete wavelet transform; stripes, constant
    along the angles, live in the vertical-detail coefficients at low angular frequency.
    At every level those coefficients are Fourier transformed along the angle axis and
    multiplied by ``1 - exp(-m^2 / (2 sigma^2))`` (m: angular frequency index), which
    removes the stripe part; the inverse transforms give the filtered sinogram.

    Parameters
    ----------
    sino : ndarray, shape (n_angles, n_cols) or (n_angles, n_slices, n_cols)
        Sinogram(s) (line integrals, a.u.), NumPy or CuPy.
    level : int, optional
        Number of wavelet levels; more levels remove wider stripes but also damp more of
        the object's own slow angular variation. None: the deepest level whose coarsest
        coefficients keep at least 32 (padded) angle samples, within the largest level
        PyWavelets allows for the smaller padded dimension (4 for 360 angles).
    wavelet : str
        PyWavelets discrete wavelet name, e.g. "db5".
    sigma : float
        Width (angular frequency index, cycles per scan) of the Gaussian damping.
    pad : bool
        Pad by reflection (a quarter of the angles, an eighth of the columns on each side)
        against wrap-around and boundary artefacts; the result is cropped back.

    Returns
    -------
    ndarray, float32, same shape and array kind as ``sino``

    Notes
    -----
    PyWavelets has no GPU implementation: CuPy input is copied to the host, filtered
    there slice by slice, and the result copied back to the device.
    """
    import pywt

    if wavelet not in pywt.wavelist(kind="discrete"):
        raise InputError(f"wavelet must be a PyWavelets discrete wavelet name (e.g. 'db5'), got {wavelet!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma must be a positive number (angular frequency index), got {sigma!r}")
    if level is not None:
        level = _sd.check_size(level, "level")
    xp, stack, was_2d = _sd.as_stack(sino)
    host = stack.get() if is_gpu_array(stack) else stack
    out = np.empty_like(host)
    for s in range(host.shape[1]):
        out[:, s, :] = _fw_one(host[:, s, :].astype(np.float64), level=level, wavelet=wavelet,
                               sigma=sigma, pad=pad)
    return _sd.from_stack(xp.asarray(out, dtype=xp.float32), was_2d)
