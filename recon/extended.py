"""360-degree scans with an off-centre rotation axis (extended, "half-acquisition" field of view).

When the axis sits near one edge of the detector, the projection at ``theta`` sees one side of
the sample and the projection at ``theta + pi``, flipped left-right, sees the other side. The
two overlap in a strip of ``overlap`` pixels around the axis. Stitching each projection of the
first half turn with its flipped opposite gives an ordinary 180-degree sinogram of a detector
almost twice as wide.

Conventions (``docs/architecture.md``): column ``k`` has its centre at ``u = k``; the axis is at
``u = center`` and ``s = u - center``. Here ``overlap`` is the width in pixels of the detector
strip seen by both a projection and its flipped opposite, edges of the pixels included:

- ``side="right"`` (axis near the last column): ``center = W - 0.5 - overlap / 2``;
- ``side="left"`` (axis near the first column): ``center = overlap / 2 - 0.5``.

A centred axis, ``center = (W - 1) / 2``, has ``overlap = W`` on either side.
"""

from __future__ import annotations

import math

import numpy as np

from ._backend import array_module, to_device
from ._center_utils import angle_step, check_theta, parabola_vertex, shift_rows
from ._errors import InputError

__all__ = ["find_overlap_360", "sino_360_to_180"]

SIDES = ("left", "right")
#: largest number of projection pairs used by the overlap search (evenly spread)
_MAX_PAIRS = 180
#: overlap strips whose variance per pixel is below this fraction of the whole data's are
#: considered empty (air on both sides) and never chosen
_MIN_STRIP_VARIANCE = 0.01
#: columns up to this far (pixels) beyond the flipped projection's edge are still filled
_EDGE_TOL_PX = 0.05


def _check_stack(sinogram, name: str = "sinogram360"):
    """Return a floating (n_angles, width) or (n_angles, n_slices, width) array (same backend)."""
    xp = array_module(sinogram)
    sino = xp.asarray(sinogram)
    if sino.ndim not in (2, 3):
        raise InputError(
            f"{name} must be (n_angles, width) or (n_angles, n_slices, width); got shape"
            f" {tuple(sino.shape)}"
        )
    if sino.shape[0] < 4 or sino.shape[-1] < 4:
        raise InputError(f"{name} is too small: shape {tuple(sino.shape)}")
    if not np.issubdtype(sino.dtype, np.floating):
        sino = sino.astype(xp.float32)
    if not bool(xp.isfinite(sino).all()):
        raise InputError(f"{name} contains NaN or infinite values; clean it first")
    return sino


def _opposite_pairs(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (first half turn, opposite projection) of a 360-degree scan.

    Raises
    ------
    InputError
        When the angles do not span 360 degrees, or when no projection lies 180 degrees from
        each projection of the first half turn (e.g. an odd number of angles over [0, 360)).
    """
    step = angle_step(theta)
    span = abs(theta[-1] - theta[0])
    if span < 2.0 * math.pi - 1.5 * step:
        raise InputError(
            f"theta_rad spans {math.degrees(span):.2f} degrees; a 360-degree scan is expected"
            f" (at least 360 degrees minus one step of {math.degrees(step):.3f} degrees)"
        )
    n_half = int(round(math.pi / step))
    n = theta.size
    expected = (
        "expected an even number of equally spaced angles over [0, 360) degrees (or one more"
        " with 360 included)"
    )
    if 2 * n_half > n:
        raise InputError(
            f"theta_rad has {n} angles with a step of {math.degrees(step):.4f} degrees, but a half"
            f" turn needs {n_half} steps ({2 * n_half} angles for a full turn); {expected}"
        )
    first = np.arange(n_half)
    second = first + n_half
    mismatch = np.abs(np.abs(theta[second] - theta[first]) - math.pi)
    worst = float(mismatch.max())
    if worst > 0.25 * step:
        raise InputError(
            f"theta_rad is sampled so that projection {int(first[mismatch.argmax()])} has no"
            f" opposite one (closest is {math.degrees(worst):.4f} degrees away from 180);"
            f" {expected};"
            f" got {n} angles over {math.degrees(span):.3f} degrees"
        )
    return first, second


def _check_side(side):
    if side is not None and side not in SIDES:
        raise InputError(f"side must be 'left', 'right' or None, got {side!r}")


def _center_from_overlap(overlap: float, side: str, width: int) -> float:
    return width - 0.5 - overlap / 2.0 if side == "right" else overlap / 2.0 - 0.5


def _pairs_as_rows(sino, first, second, max_pairs: int | None):
    """Reference and opposite rows as 2-D arrays (rows, width), slices folded into rows."""
    xp = array_module(sino)
    if max_pairs is not None and first.size > max_pairs:
        pick = np.linspace(0, first.size - 1, max_pairs).round().astype(np.intp)
        first, second = first[pick], second[pick]
    ref = sino[xp.asarray(first)].astype(xp.float64)
    opp = sino[xp.asarray(second)].astype(xp.float64)
    width = sino.shape[-1]
    return ref.reshape(-1, width), opp.reshape(-1, width)


def _integer_metric(ref, opp):
    """Normalised mismatch for every integer overlap 1..W on both sides (NumPy result).

    For side "right" and overlap ``o`` the last ``o`` columns of ``ref`` are compared with the
    last ``o`` columns of ``opp`` in reverse order; for "left" the first ``o`` columns. The
    mismatch is ``sum (a - b)^2 / sum ((a - mean a)^2 + (b - mean b)^2)`` over all rows of the
    strip: 0 for a perfect match, about 1 for unrelated or noise-only strips; strips with
    almost no signal (see ``_MIN_STRIP_VARIANCE``) get ``inf``. The cross term
    ``sum a b`` of all overlaps at once is a linear convolution of the rows (one FFT).
    """
    xp = array_module(ref)
    n_rows, width = ref.shape
    nfft = 2 * width
    conv = xp.fft.irfft(
        (xp.fft.rfft(ref, n=nfft, axis=1) * xp.fft.rfft(opp, n=nfft, axis=1)).sum(axis=0), n=nfft
    )
    overlaps = np.arange(1, width + 1)
    # strips with (almost) no signal, e.g. air on both sides, match trivially: reject them
    total = 2.0 * n_rows * width
    var_all = float(((ref - ref.mean()) ** 2).sum() + ((opp - opp.mean()) ** 2).sum()) / total
    out = {}
    for side in SIDES:
        if side == "left":
            cols = lambda a: a  # noqa: E731 - prefix sums over the first o columns
            s_ab = conv[: width]  # conv[o - 1]
        else:
            cols = lambda a: a[:, ::-1]  # noqa: E731 - suffix sums over the last o columns
            s_ab = conv[2 * width - 2 :: -1][: width]  # conv[2 W - 1 - o]
        s_a = xp.cumsum(cols(ref).sum(axis=0))
        s_b = xp.cumsum(cols(opp).sum(axis=0))
        s_aa = xp.cumsum(cols(ref * ref).sum(axis=0))
        s_bb = xp.cumsum(cols(opp * opp).sum(axis=0))
        n = xp.asarray(overlaps * n_rows, dtype=xp.float64)
        sse = s_aa + s_bb - 2.0 * s_ab
        var = (s_aa - s_a * s_a / n) + (s_bb - s_b * s_b / n)
        metric = sse / xp.maximum(var, 1e-300)
        flat = var / (2.0 * n) < _MIN_STRIP_VARIANCE * var_all
        out[side] = to_device(xp.where(flat, xp.inf, metric), "cpu")
    return overlaps, out


def _strip_metric(ref, opp, overlap: float, side: str, cols: slice) -> float:
    """Normalised mismatch of ``ref`` and flipped ``opp`` for a (sub-pixel) overlap."""
    width = ref.shape[1]
    c = _center_from_overlap(overlap, side, width)
    b = shift_rows(opp[:, ::-1], 2.0 * c - (width - 1))[:, cols]
    a = ref[:, cols]
    var = float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum())
    return float(((a - b) ** 2).sum()) / max(var, 1e-30)


def find_overlap_360(
    sinogram360,
    theta_rad,
    *,
    side: str | None = None,
    min_overlap: int = 4,
    max_overlap: int | None = None,
    step: float = 0.05,
) -> tuple[float, str, float]:
    """Overlap width and side of a 360-degree scan with an off-centre axis.

    Each projection of the first half turn is compared with the left-right flipped projection
    180 degrees later, for every integer overlap on both sides (normalised squared mismatch over
    the shared strip, all overlaps at once through one FFT convolution); the best overlap is
    then refined with Fourier-shifted copies every ``step`` pixels and a parabola through the
    three best values.

    Parameters
    ----------
    sinogram360 : (n_angles, width) or (n_angles, n_slices, width) array
        Minus-log line integrals (a.u.) over a full turn; NumPy or CuPy.
    theta_rad : (n_angles,) array
        Rotation angles in radians: equally spaced over 360 degrees, an even number over
        [0, 360) (a last angle at 360 degrees is ignored).
    side : {"left", "right"}, optional
        Edge of the detector the axis is near; searched on both sides when None.
    min_overlap, max_overlap : int, optional
        Range of overlaps searched, in pixels (default 4 to the detector width).
    step : float, optional
        Step of the sub-pixel refinement, in pixels (default 0.05).

    Returns
    -------
    overlap_px : float
        Width in pixels of the strip seen by both a projection and its flipped opposite.
    side : {"left", "right"}
        Edge of the detector near which the axis lies.
    center_px : float
        Axis position in the original detector columns (``W - 0.5 - overlap / 2`` for "right",
        ``overlap / 2 - 0.5`` for "left").

    Raises
    ------
    InputError
        For angles not spanning 360 degrees or without opposite pairs, a bad side, or a bad
        overlap range.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    >>> s = np.arange(100) - 80.5           # axis 18.5 px from the last column: overlap 38 px
    >>> c, sn = np.cos(theta)[:, None], np.sin(theta)[:, None]
    >>> sino = sum(np.exp(-((s[None] - x * c - y * sn) ** 2) / 20) for x, y in [(30, 5), (-9, 40)])
    >>> overlap, side, center = find_overlap_360(sino, theta)
    >>> round(overlap, 1), side, round(center, 1)
    (38.0, 'right', 80.5)
    """
    sino = _check_stack(sinogram360)
    theta = check_theta(theta_rad, sino.shape[0])
    _check_side(side)
    width = sino.shape[-1]
    max_overlap = width if max_overlap is None else int(max_overlap)
    if not (1 <= int(min_overlap) < max_overlap <= width):
        raise InputError(
            f"overlap range min_overlap={min_overlap}, max_overlap={max_overlap} pixels must"
            f" satisfy 1 <= min_overlap < max_overlap <= {width} (detector width)"
        )
    if not (0.0 < float(step) <= 0.5):
        raise InputError(f"step must be in (0, 0.5] pixels, got {step}")
    first, second = _opposite_pairs(theta)
    ref, opp = _pairs_as_rows(sino, first, second, _MAX_PAIRS)

    overlaps, metrics = _integer_metric(ref, opp)
    keep = (overlaps >= int(min_overlap)) & (overlaps <= max_overlap)
    best = None
    for s in SIDES if side is None else (side,):
        m = np.where(keep, metrics[s], np.inf)
        k = int(np.argmin(m))
        if best is None or m[k] < best[0]:
            best = (float(m[k]), int(overlaps[k]), s)
    _, o_int, side_found = best

    # sub-pixel: fixed strip of columns valid for every candidate in o_int +- 1
    lo = max(1.0, o_int - 1.0)
    n_cols = max(2, int(math.floor(lo)) - 2)
    cols = slice(width - n_cols, width) if side_found == "right" else slice(0, n_cols)
    n_fine = int(math.ceil(1.0 / step))
    cands = o_int + step * np.arange(-n_fine, n_fine + 1)
    cands = cands[(cands >= max(1.0, min_overlap - 0.5)) & (cands <= width)]
    fine = np.array([_strip_metric(ref, opp, float(o), side_found, cols) for o in cands])
    k = int(np.argmin(fine))
    if 0 < k < cands.size - 1:
        overlap = parabola_vertex(float(cands[k]), float(step), *map(float, fine[k - 1 : k + 2]))
    else:
        overlap = float(cands[k])
    return overlap, side_found, _center_from_overlap(overlap, side_found, width)


def _stitch_right(ref, opp, overlap: float):
    """Stitch for an axis near the last column; returns (wide rows, centre in wide columns)."""
    xp = array_module(ref)
    width = ref.shape[-1]
    c = _center_from_overlap(overlap, "right", width)
    # the last column sits at 2c (opposite column 0); an estimated overlap a hair above an
    # integer must not cost a whole column, hence the small tolerance (edge value used)
    new_width = int(math.floor(2.0 * c + _EDGE_TOL_PX)) + 1
    d = 2.0 * c - (width - 1)  # flipped opposite, shifted by d, is opp(2c - k)
    d_int = int(math.floor(d))
    lead = ref.shape[:-1]
    # flipped opposite placed at columns d_int .. d_int + W - 1 of a wide row (edge values
    # around it), then shifted by the fractional part
    src = xp.clip(xp.arange(new_width) - d_int, 0, width - 1)
    wide_b = opp[..., ::-1][..., src]
    frac = d - d_int
    if frac > 1e-9:
        wide_b = shift_rows(wide_b, frac)
    # linear ramp over the overlap: reference weight 1 -> 0 from the first valid opposite
    # column to the last detector column
    lo = int(math.ceil(d - _EDGE_TOL_PX))
    hi = width - 1
    k = xp.arange(width, dtype=xp.float64)
    w_ref = xp.clip((hi + 1 - k) / (hi - lo + 2), 0.0, 1.0)
    w_ref = xp.where(k < lo, 1.0, w_ref).astype(ref.dtype)
    out = xp.empty(lead + (new_width,), dtype=ref.dtype)
    out[..., :width] = w_ref * ref + (1 - w_ref) * wide_b[..., :width]
    out[..., width:] = wide_b[..., width:]
    return out, c


def sino_360_to_180(
    sinogram360, theta_rad, *, overlap: float | None = None, side: str | None = None
):
    """Convert a 360-degree off-centre-axis scan into a wide 180-degree sinogram.

    Each projection of the first half turn is joined with its left-right flipped opposite
    (the projection 180 degrees later), placed about the axis with sub-pixel accuracy; in the
    overlap strip the two are blended with linear ramp weights.

    Parameters
    ----------
    sinogram360 : (n_angles, width) or (n_angles, n_slices, width) array
        Minus-log line integrals (a.u.) over a full turn; NumPy or CuPy (the result follows).
    theta_rad : (n_angles,) array
        Rotation angles in radians, an even number equally spaced over [0, 360) degrees (or one
        more with 360 included).
    overlap : float, optional
        Overlap width in pixels (see :func:`find_overlap_360`); found automatically when None.
    side : {"left", "right"}, optional
        Edge the axis is near; found automatically when None.

    Returns
    -------
    sinogram180 : array
        ``(n_half, [n_slices,] new_width)``, ``n_half`` the angles of a half turn and
        ``new_width = 2 W - ceil(overlap)`` (``2 W - overlap`` for an integer overlap).
    theta180_rad : numpy.ndarray
        The angles of the first half turn (radians).
    center : float
        Axis position in the new sinogram's columns (pixels).

    Raises
    ------
    InputError
        For angles not spanning 360 degrees or without opposite pairs (e.g. an odd number of
        angles over [0, 360)), a bad side, or an overlap outside 1..W pixels.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    >>> sino = np.random.default_rng(0).random((360, 2, 100))
    >>> wide, theta180, center = sino_360_to_180(sino, theta, overlap=40, side="right")
    >>> wide.shape, theta180.shape, center
    ((180, 2, 160), (180,), 79.5)
    """
    sino = _check_stack(sinogram360)
    theta = check_theta(theta_rad, sino.shape[0])
    _check_side(side)
    width = sino.shape[-1]
    first, second = _opposite_pairs(theta)
    if overlap is None:
        overlap, side, _ = find_overlap_360(sino, theta, side=side)
    else:
        overlap = float(overlap)
        if not (1.0 <= overlap <= width):
            raise InputError(
                f"overlap must be between 1 and {width} pixels (detector width), got {overlap}"
            )
        if side is None:
            ref, opp = _pairs_as_rows(sino, first, second, _MAX_PAIRS)
            overlaps, metrics = _integer_metric(ref, opp)
            k = int(np.clip(round(overlap), 1, width)) - 1
            side = "left" if metrics["left"][k] < metrics["right"][k] else "right"

    xp = array_module(sino)
    ref = sino[xp.asarray(first)]
    opp = sino[xp.asarray(second)]
    if side == "right":
        out, center = _stitch_right(ref, opp, overlap)
    else:
        out, center_r = _stitch_right(ref[..., ::-1], opp[..., ::-1], overlap)
        out = xp.ascontiguousarray(out[..., ::-1])
        center = out.shape[-1] - 1 - center_r
    return out, theta[first].copy(), float(center)
