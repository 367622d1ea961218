"""Rotation-axis (centre of rotation) estimation and a visual quick-look.

Convention (``docs/architecture.md``): detector column ``u`` is counted from the first column,
column ``k`` has its centre at ``u = k`` and the signed distance from the axis is
``s = u - center``; a centred axis on a detector of width ``W`` is ``(W - 1) / 2``. All
centres here are in pixels (detector columns) and may be fractional.

Methods
-------
``find_center_pc``
    Phase correlation of the projection at 0 degrees with the left-right flipped projection
    at 180 degrees: fast, needs an opposite pair of projections.
``find_center_vo``
    Fourier-metric method of Vo, Atwood and Drakopoulou, Optics Express 22, 19078 (2014): the
    0-180 degree sinogram is joined with its flipped copy, shifted for each candidate centre,
    into a 0-360 degree sinogram; at the right centre it has no discontinuity at 180 degrees
    and its 2-D Fourier transform is empty outside the "bow tie" ``|m| <= 2 pi |nu| R``
    (angular frequency ``m`` in cycles per turn, detector frequency ``nu`` in cycles per
    pixel, object radius ``R`` in pixels). The metric is the mean Fourier magnitude inside
    the complementary double wedge; the centre minimising it wins.
``find_center``
    ``"auto"``: phase correlation first, then the Vo search in a window around it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ._backend import array_module, to_device
from ._center_utils import (
    angle_step,
    check_sinogram_2d,
    check_theta,
    half_turn_indices,
    parabola_vertex,
    shift_rows,
    shift_rows_int,
)
from ._errors import InputError

__all__ = ["find_center", "find_center_vo", "find_center_pc", "center_quicklook"]

#: largest detector width / number of angles used by the coarse Vo search (binned above)
_COARSE_MAX_WIDTH = 384
_COARSE_MAX_ANGLES = 360


# --------------------------------------------------------------------------------------
# phase correlation
# --------------------------------------------------------------------------------------
def find_center_pc(
    sinogram,
    theta_rad,
    *,
    upsample_factor: int = 100,
    normalization: str | None = None,
    max_mismatch_rad: float | None = None,
) -> float:
    """Rotation centre from the projections at 0 and 180 degrees (phase correlation).

    The projection at ``theta`` and the left-right flipped projection at ``theta + pi`` are
    the same profile shifted by ``2 * center - (W - 1)`` pixels; the shift is measured with
    sub-pixel cross-correlation (:func:`skimage.registration.phase_cross_correlation`). Every
    pair of projections whose angles differ by (nearest to) 180 degrees is used together,
    e.g. all pairs of a 360-degree scan.

    Parameters
    ----------
    sinogram : (n_angles, width) array
        Minus-log line integrals (a.u.); NumPy or CuPy.
    theta_rad : (n_angles,) array
        Rotation angles in radians, strictly monotonic.
    upsample_factor : int, optional
        Sub-pixel resolution of the shift, 1 / upsample_factor pixels.
    normalization : {None, "phase"}, optional
        None (default) correlates the profiles directly, which is robust to noise on smooth
        profiles; "phase" whitens the spectrum (classic phase correlation).
    max_mismatch_rad : float, optional
        Largest accepted deviation (radians) of a pair's angle difference from pi. Default:
        1.5 angular steps. Pairs off by up to this much still give a usable first estimate.

    Returns
    -------
    float
        Axis position in pixels from the first detector column.

    Raises
    ------
    InputError
        For a bad sinogram/angles, or when no projection lies (nearly) opposite another.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 181)
    >>> s = np.arange(64) - 30.5
    >>> sino = np.exp(-((s[None, :] - 8 * np.cos(theta)[:, None]) ** 2) / 18)
    >>> round(find_center_pc(sino, theta), 1)
    30.5
    """
    from skimage.registration import phase_cross_correlation

    sino = check_sinogram_2d(sinogram)
    theta = check_theta(theta_rad, sino.shape[0])
    width = sino.shape[1]
    step = angle_step(theta)
    tol = 1.5 * step if max_mismatch_rad is None else float(max_mismatch_rad)

    rel = np.abs(theta - theta[0])
    j = np.clip(np.searchsorted(rel, rel + math.pi), 0, rel.size - 1)
    j_lo = np.clip(j - 1, 0, rel.size - 1)
    better_lo = np.abs(rel[j_lo] - rel - math.pi) < np.abs(rel[j] - rel - math.pi)
    j = np.where(better_lo, j_lo, j)
    mismatch = np.abs(rel[j] - rel - math.pi)
    best = float(mismatch.min())
    if best > tol:
        raise InputError(
            f"theta_rad has no pair of projections 180 degrees apart (closest pair is"
            f" {math.degrees(best + math.pi):.3f} degrees apart, tolerance"
            f" {math.degrees(tol):.3f} degrees); use find_center_vo instead"
        )
    rows = np.nonzero(mismatch <= best + 0.25 * step)[0]
    rows = rows[j[rows] != rows]
    sino = to_device(sino, "cpu")  # a few profiles only: the CPU is fine
    ref = sino[rows].astype(np.float64)
    opp = sino[j[rows]].astype(np.float64)[:, ::-1]
    # remove the mean so the correlation is not dominated by the background level, and
    # taper the ends; the taper would bias a large shift, so the shift is measured again
    # after aligning the flipped profile with the first estimate (the residual is small).
    window = np.hanning(width + 2)[1:-1]

    def _measure(a, b):
        a = (a - a.mean(axis=1, keepdims=True)) * window
        b = (b - b.mean(axis=1, keepdims=True)) * window
        shift, _, _ = phase_cross_correlation(
            a, b, upsample_factor=int(upsample_factor), normalization=normalization
        )
        return float(shift[-1])

    d = _measure(ref, opp)
    for _ in range(2):
        d += _measure(ref, shift_rows(opp, d))
    return (width - 1) / 2.0 + d / 2.0


# --------------------------------------------------------------------------------------
# Vo et al. Fourier metric
# --------------------------------------------------------------------------------------
def _wedge_mask(xp, n_rows: int, width: int, radius_px: float, drop: int):
    """Boolean mask of the double wedge where a consistent 0-360 sinogram has no energy.

    Rows: angular frequency ``m`` (cycles per full turn; the double sinogram has ``n_rows``
    rows over 360 degrees). Columns: non-negative detector frequency ``nu`` (cycles per
    pixel, the ``rfft`` half; the other half mirrors it for a real sinogram). A point at
    radius ``r`` traces ``s = r cos(theta - phi)``, whose Fourier series at detector frequency
    ``nu`` is a Bessel series ``J_m(2 pi nu r)``: negligible for ``|m| > 2 pi |nu| r``.
    Columns where the mask is empty are cut off.
    """
    m = xp.abs(xp.fft.fftfreq(n_rows) * n_rows)[:, None]
    nu = xp.fft.rfftfreq(width)[None, :]
    mask = (m > 2.0 * math.pi * nu * radius_px) & (m > drop)
    used = np.nonzero(to_device(mask.any(axis=0), "cpu"))[0]
    n_cols = int(used.max()) + 1 if used.size else 1
    return mask[:, :n_cols]


def _vo_metrics(top, flipped, shifts, mask, *, integer: bool):
    """Mean |FFT| inside ``mask`` of [top; shift(flipped, d)] for each shift ``d`` (pixels)."""
    xp = array_module(top)
    out = np.empty(len(shifts))
    n_mask = float(mask.sum())
    n_cols = mask.shape[1]
    top_f = xp.fft.rfft(top, axis=1)[:, :n_cols]
    for i, d in enumerate(shifts):
        bottom = shift_rows_int(flipped, int(d)) if integer else shift_rows(flipped, float(d))
        bottom_f = xp.fft.rfft(bottom, axis=1)[:, :n_cols]
        spec = xp.abs(xp.fft.fft(xp.concatenate([top_f, bottom_f], axis=0), axis=0))
        out[i] = float((spec * mask).sum()) / n_mask
    return out


def _bin_columns(a, factor: int):
    """Mean over ``factor`` adjacent detector columns (trailing columns dropped)."""
    if factor == 1:
        return a
    n = (a.shape[1] // factor) * factor
    return a[:, :n].reshape(a.shape[0], n // factor, factor).mean(axis=2)


def find_center_vo(
    sinogram,
    theta_rad,
    *,
    start: float | None = None,
    stop: float | None = None,
    step: float = 0.1,
    ratio: float = 0.5,
    drop: int | None = None,
) -> float:
    """Rotation centre by the Fourier metric of Vo et al. (Optics Express 22, 19078, 2014).

    The projections nearest to a uniform grid over 0-180 degrees are joined with their
    left-right flipped copies, shifted so that the flip is about the candidate centre, into
    a double (0-360 degree) sinogram. At the right centre the double sinogram is continuous
    and its 2-D Fourier magnitude vanishes inside the double wedge ``|m| > 2 pi |nu| R``;
    the metric is the mean magnitude there. The search is coarse first (integer shifts on a
    column-binned sinogram, then half-pixel centre steps at full resolution), then sub-pixel
    with Fourier-shifted copies every ``step`` pixels, and finally the vertex of a parabola
    through the best three values.

    Parameters
    ----------
    sinogram : (n_angles, width) array
        Minus-log line integrals (a.u.); NumPy or CuPy (the FFTs then run on the GPU).
        A 360-degree scan is fine: its first half turn is used.
    theta_rad : (n_angles,) array
        Rotation angles in radians, spanning at least 180 degrees (minus one step).
    start, stop : float, optional
        Search range of the centre in pixels. Default: the middle half of the detector,
        ``[W / 4, 3 W / 4]``.
    step : float, optional
        Step of the sub-pixel search in pixels (default 0.1).
    ratio : float, optional
        Assumed object diameter over detector width (0 < ratio <= 2), which sets the wedge
        radius ``R = ratio * W / 2`` pixels. Larger is safer for big objects; default 0.5.
    drop : int, optional
        Angular-frequency rows ``|m| <= drop`` (cycles per turn) left out of the metric; they
        carry slow intensity drifts. Default: ``max(1, round(0.02 * n_half))`` with
        ``n_half`` the number of angles in the half turn used.

    Returns
    -------
    float
        Axis position in pixels from the first detector column.

    Raises
    ------
    InputError
        For a bad sinogram, angles, search range or options.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.arange(180) * np.pi / 180
    >>> s = np.arange(96) - 50.0
    >>> blob = lambda x0, y0: np.exp(-((s[None] - x0 * np.cos(theta)[:, None]
    ...                                 - y0 * np.sin(theta)[:, None]) ** 2) / 8)
    >>> sino = blob(10, 3) + 0.5 * blob(-6, -12)
    >>> round(find_center_vo(sino, theta), 1)
    50.0
    """
    sino = check_sinogram_2d(sinogram)
    theta = check_theta(theta_rad, sino.shape[0])
    xp = array_module(sino)
    width = sino.shape[1]
    if start is None:
        start = width / 4.0
    if stop is None:
        stop = 3.0 * width / 4.0
    start, stop = float(start), float(stop)
    if not (0.0 <= start < stop <= width - 1):
        raise InputError(
            f"centre search range start={start}, stop={stop} pixels must satisfy"
            f" 0 <= start < stop <= {width - 1} (detector width {width})"
        )
    if not (0.0 < float(step) <= 0.5):
        raise InputError(f"step must be in (0, 0.5] pixels, got {step}")
    if not (0.0 < float(ratio) <= 2.0):
        raise InputError(f"ratio (object diameter / detector width) must be in (0, 2], got {ratio}")

    idx = half_turn_indices(theta)
    half = sino[xp.asarray(idx)].astype(xp.float32)
    n_half = half.shape[0]
    if drop is None:
        drop = max(1, int(round(0.02 * n_half)))
    radius = float(ratio) * width / 2.0

    # ---- coarse: binned columns (and fewer angles), integer shifts ----------------------
    factor = max(1, int(math.ceil(width / _COARSE_MAX_WIDTH)))
    idx_c = half_turn_indices(theta, min(n_half, _COARSE_MAX_ANGLES))
    coarse = _bin_columns(sino[xp.asarray(idx_c)].astype(xp.float32), factor)
    wb = coarse.shape[1]
    # binned column j covers original columns j*f .. j*f+f-1, centre at u = j*f + (f-1)/2
    cb_lo = (start - (factor - 1) / 2.0) / factor
    cb_hi = (stop - (factor - 1) / 2.0) / factor
    # integer binned centres (even shifts) first, then the odd neighbours of the best one
    d_lo = int(math.floor(2 * cb_lo - (wb - 1)))
    d_hi = int(math.ceil(2 * cb_hi - (wb - 1)))
    shifts = np.arange(d_lo, d_hi + 1, 2)
    mask_c = _wedge_mask(xp, 2 * coarse.shape[0], wb, radius / factor, drop)
    flipped_c = coarse[:, ::-1]
    metric = _vo_metrics(coarse, flipped_c, shifts, mask_c, integer=True)
    d_best = int(shifts[int(np.argmin(metric))])
    near = np.array([d_best - 1, d_best, d_best + 1])
    metric = _vo_metrics(coarse, flipped_c, near, mask_c, integer=True)
    cb = (near[int(np.argmin(metric))] + (wb - 1)) / 2.0
    c0 = cb * factor + (factor - 1) / 2.0

    # ---- full resolution, half-pixel centre steps (integer shifts) ---------------------
    mask = _wedge_mask(xp, 2 * n_half, width, radius, drop)
    flipped = half[:, ::-1]
    d0 = int(round(2 * c0 - (width - 1)))
    reach = (factor + 1) // 2 + 1  # the binned estimate is good to about half a bin
    shifts = np.arange(d0 - 2 * reach, d0 + 2 * reach + 1)
    d_min = math.floor(2 * start - (width - 1))
    d_max = math.ceil(2 * stop - (width - 1))
    shifts = shifts[(shifts >= d_min) & (shifts <= d_max)]
    if shifts.size == 0:
        shifts = np.array([d0])
    metric = _vo_metrics(half, flipped, shifts, mask, integer=True)
    c1 = (shifts[int(np.argmin(metric))] + (width - 1)) / 2.0

    # ---- sub-pixel: Fourier-shifted copies around c1, then a parabola ------------------
    n_fine = int(math.ceil(0.5 / step))
    cands = c1 + step * np.arange(-n_fine, n_fine + 1)
    fine = _vo_metrics(half, flipped, 2 * cands - (width - 1), mask, integer=False)
    k = int(np.argmin(fine))
    if 0 < k < cands.size - 1:
        return parabola_vertex(float(cands[k]), float(step), *map(float, fine[k - 1 : k + 2]))
    return float(cands[k])


# --------------------------------------------------------------------------------------
# dispatcher
# --------------------------------------------------------------------------------------
def find_center(
    sinogram,
    theta_rad,
    *,
    method: str = "auto",
    search_range: tuple[float, float] | None = None,
    radius_px: float | None = None,
    step: float = 0.1,
    ratio: float = 0.5,
) -> float:
    """Rotation-axis position in pixels from the first detector column (sub-pixel).

    Parameters
    ----------
    sinogram : (n_angles, width) array
        Minus-log line integrals (a.u.) of one detector row; NumPy or CuPy.
    theta_rad : (n_angles,) array
        Rotation angles in radians (at least a half turn; 360-degree scans use their first half
        for the Vo method and all opposite pairs for phase correlation).
    method : {"auto", "vo", "pc"}
        "pc": :func:`find_center_pc`. "vo": :func:`find_center_vo` over ``search_range``.
        "auto": phase correlation first (when the scan has opposite projections), then the Vo
        search within ``radius_px`` of it (and within ``search_range``).
    search_range : (float, float), optional
        Smallest and largest accepted centre in pixels. Default: middle half of the detector.
    radius_px : float, optional
        Half width (pixels) of the Vo window around the phase-correlation estimate in "auto".
        Default ``max(4, W / 64)``.
    step : float, optional
        Sub-pixel step of the Vo fine search (pixels).
    ratio : float, optional
        Object diameter over detector width for the Vo wedge mask.

    Returns
    -------
    float
        Centre of rotation in pixels (detector columns, ``s = u - center``).

    Raises
    ------
    InputError
        For an unknown method, a bad search range, or bad sinogram/angles.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 180, endpoint=False)
    >>> s = np.arange(128) - 60.3
    >>> sino = np.exp(-((s[None] - 20 * np.cos(theta)[:, None]) ** 2) / 20)
    >>> abs(find_center(sino, theta) - 60.3) < 0.1
    True
    """
    if method not in ("auto", "vo", "pc"):
        raise InputError(f"method must be 'auto', 'vo' or 'pc', got {method!r}")
    sino = check_sinogram_2d(sinogram)
    width = sino.shape[1]
    if search_range is None:
        lo, hi = width / 4.0, 3.0 * width / 4.0
    else:
        try:
            lo, hi = (float(v) for v in search_range)
        except (TypeError, ValueError):
            raise InputError(
                f"search_range must be two numbers (start, stop) in pixels, got {search_range!r}"
            ) from None
        if not (0.0 <= lo < hi <= width - 1):
            raise InputError(
                f"search_range {search_range!r} pixels must satisfy 0 <= start < stop <="
                f" {width - 1} (detector width {width})"
            )
    if method == "pc":
        return find_center_pc(sino, theta_rad)
    if method == "vo":
        return find_center_vo(sino, theta_rad, start=lo, stop=hi, step=step, ratio=ratio)

    radius = max(4.0, width / 64.0) if radius_px is None else float(radius_px)
    try:
        c_pc = find_center_pc(sino, theta_rad)
    except InputError:
        c_pc = None  # no opposite projections: search the whole range with Vo
    if c_pc is not None and lo <= c_pc <= hi:
        lo, hi = max(lo, c_pc - radius), min(hi, c_pc + radius)
    return find_center_vo(sino, theta_rad, start=lo, stop=hi, step=step, ratio=ratio)


# --------------------------------------------------------------------------------------
# quick-look
# --------------------------------------------------------------------------------------
def center_quicklook(
    sinogram,
    theta_rad,
    centers,
    path,
    *,
    algorithm: str = "fbp",
    ncols: int | None = None,
    dpi: int = 100,
):
    """Write a PNG grid of the slice reconstructed at each candidate centre.

    Each panel is titled with its centre (pixels); all panels share one colour scale (the
    1st-99.5th percentiles over all panels), so the sharpest, artefact-free panel stands out.

    Parameters
    ----------
    sinogram : (n_angles, width) array
        Minus-log line integrals (a.u.) of one detector row.
    theta_rad : (n_angles,) array
        Rotation angles in radians.
    centers : sequence of float
        Candidate centres in pixels from the first detector column.
    path : str or Path
        Output PNG file; its folder must exist.
    algorithm : str, optional
        Passed to :func:`recon.algorithms.reconstruct` (default "fbp").
    ncols : int, optional
        Panels per row (default: about the square root of the number of centres).
    dpi : int, optional
        Resolution of the PNG (dots per inch).

    Returns
    -------
    pathlib.Path
        The written PNG file.

    Raises
    ------
    InputError
        For an empty list of centres, a centre outside the detector, or a missing folder.
    """
    from .algorithms import reconstruct

    sino = check_sinogram_2d(sinogram)
    theta = check_theta(theta_rad, sino.shape[0])
    width = sino.shape[1]
    cents = np.atleast_1d(np.asarray(centers, dtype=np.float64)).ravel()
    if cents.size == 0:
        raise InputError("centers is empty; give at least one candidate centre in pixels")
    if not np.all(np.isfinite(cents)) or cents.min() < 0 or cents.max() > width - 1:
        raise InputError(
            f"centers must lie within the detector, 0..{width - 1} pixels; got {cents.tolist()}"
        )
    path = Path(path)
    if not path.parent.exists():
        raise InputError(f"folder for the quick-look PNG does not exist: {path.parent}")

    # one call: the same sinogram once per candidate, each with its own centre
    xp = array_module(sino)
    repeated = xp.repeat(sino[:, None, :], cents.size, axis=1)
    stack = reconstruct(repeated, theta, cents, algorithm=algorithm, filter_name="ramp")
    stack = np.asarray(to_device(stack, "cpu"), dtype=np.float32)
    stack = stack.reshape((cents.size,) + stack.shape[-2:])
    vmin, vmax = np.percentile(stack, [1.0, 99.5])

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = cents.size
    ncols = int(ncols) if ncols else int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    fig = Figure(figsize=(3.0 * ncols + 1.0, 3.0 * nrows + 0.4), dpi=dpi, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    im = None
    for ax, c, img in zip(axes, cents, stack):
        im = ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"centre {c:.2f} px", fontsize=9)
        ax.set_axis_off()
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle(f"rotation-centre quick-look ({algorithm}), shared scale", fontsize=10)
    fig.colorbar(im, ax=list(axes[:n]), shrink=0.8, label="attenuation per pixel (a.u.)")
    fig.savefig(path)
    return path
