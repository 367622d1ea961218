"""Per-pixel energy calibration ``E = gradient * ADU + intercept`` from flood measurements.

Files of per-pixel values (gradients, intercepts, thresholds) hold one number per line,
row-major, as written by the HEXITEC data acquisition.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._errors import InputError

#: Am-241 lines (keV) used by default: the 59.54 keV gamma and the Np L lines.
AM241_KEV = (59.54, 17.75, 13.94)
#: Cd and Te K fluorescence lines of the detector itself (keV).
CDTE_KEV = (22.9, 26.1, 27.2, 31.0)


def read_values(path, *, shape: tuple[int, int] = (80, 80)) -> np.ndarray:
    """Read a one-value-per-line file (row-major) into a float64 array of ``shape``.

    Parameters
    ----------
    path : str or Path
        Text file; blank lines are ignored.
    shape : (int, int)
        Expected (rows, cols) in pixels.

    Raises
    ------
    InputError
        Missing file, a line that is not a number, or not ``rows * cols`` values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found (expected one value per line)")
    values = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            try:
                values.append(float(text))
            except ValueError:
                raise InputError(f"{path}: line {lineno} is not a number: {text[:40]!r}") from None
    n = int(np.prod(shape))
    if len(values) != n:
        raise InputError(
            f"{path}: has {len(values)} values; expected {n} (one per pixel of a "
            f"{shape[0]} x {shape[1]} frame, row-major)"
        )
    arr = np.asarray(values, dtype=np.float64).reshape(shape)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: contains non-finite values (nan or inf)")
    return arr


def write_values(path, values) -> None:
    """Write a per-pixel array as one value per line, row-major (exact round trip).

    Parameters
    ----------
    path : str or Path
        Output text file (overwritten).
    values : array [rows, cols]
        Values, e.g. gradients in keV/ADU or intercepts in keV.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    with open(path, "w") as fh:
        fh.write("\n".join(repr(float(v)) for v in arr))
        fh.write("\n")


@dataclass
class Calibration:
    """Result of :func:`fit_calibration`.

    Attributes
    ----------
    gradients : ndarray [rows, cols]
        keV per ADU. Failed pixels hold the median of the good pixels.
    intercepts : ndarray [rows, cols]
        keV. Failed pixels hold the median of the good pixels.
    failed : ndarray bool [rows, cols]
        Pixels whose fit failed.
    reasons : dict
        ``(row, col) -> reason`` for each failed pixel.
    peaks_adu : ndarray [rows, cols, n_lines]
        Fitted peak positions in ADU (nan where not found).
    lines_kev : tuple of float
        The lines used, in keV, in the order of ``peaks_adu``.
    """

    gradients: np.ndarray
    intercepts: np.ndarray
    failed: np.ndarray
    reasons: dict = field(default_factory=dict)
    peaks_adu: np.ndarray | None = None
    lines_kev: tuple = AM241_KEV

    def report(self) -> str:
        """A short text report: pixels fitted, pixels failed and why."""
        n = self.failed.size
        k = int(self.failed.sum())
        lines = [f"calibrated {n - k} of {n} pixels; {k} failed"]
        for (r, c), why in list(self.reasons.items())[:50]:
            lines.append(f"  pixel (row {r}, col {c}): {why}")
        if k > 50:
            lines.append(f"  ... and {k - 50} more")
        return "\n".join(lines)


def _gauss_lin(x, a, mu, s, b0, b1):
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2) + b0 + b1 * (x - mu)


def _fit_peak(x, y, mu0, sigma0):
    """Fit a Gaussian on a linear background near ``mu0``; return (mu, sigma) or None."""
    from scipy.optimize import curve_fit

    for _ in range(3):  # re-centre the window while the peak is off its centre
        m = np.abs(x - mu0) <= 3.0 * sigma0
        if m.sum() < 6:
            return None
        xs, ys = x[m], y[m]
        if ys.sum() < 20:
            return None
        b = 0.5 * (ys[:2].mean() + ys[-2:].mean())
        a0 = max(ys.max() - b, 1.0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(
                    _gauss_lin, xs, ys, p0=(a0, xs[np.argmax(ys)], sigma0, b, 0.0),
                    sigma=np.sqrt(np.maximum(ys, 1.0)), maxfev=2000,
                )
        except (RuntimeError, ValueError):
            return None
        mu, s = float(p[1]), abs(float(p[2]))
        if not (xs[0] <= mu <= xs[-1]) or not (0.3 * sigma0 < s < 3.0 * sigma0) or p[0] <= 0:
            return None
        centred = abs(mu - mu0) < 0.5 * sigma0
        mu0, sigma0 = mu, s
        if centred:
            break
    return mu0, sigma0


def fit_calibration(
    counts,
    edges_adu,
    *,
    lines_kev=AM241_KEV,
    fwhm_kev: float = 0.8,
    min_counts: int = 200,
    max_residual_kev: float = 0.5,
    max_intercept_kev: float = 10.0,
) -> Calibration:
    """Fit per-pixel gradient and intercept from flood spectra with known lines.

    For each pixel the highest-energy line (59.54 keV for Am-241) is taken as the
    highest-ADU prominent peak of the smoothed spectrum; the second line is matched to the
    lower peak whose pairing predicts the remaining lines best (a coarse gradient and
    intercept); each line is then located by a Gaussian-plus-linear-background fit near its
    predicted position, and ``E = gradient * ADU + intercept`` is fitted by least squares to
    all lines found. A pixel fails (and is reported) with too few counts, unrecognised lines,
    fewer than two fitted lines or a line residual above ``max_residual_kev``.

    Parameters
    ----------
    counts : array [rows, cols, bins]
        Per-pixel flood spectra in ADU (e.g. :func:`compton.process_frames` without
        calibration).
    edges_adu : array [bins + 1]
        Bin edges in ADU.
    lines_kev : sequence of float
        Known line energies in keV (default Am-241 59.54, 17.75, 13.94; add Cd/Te lines
        :data:`CDTE_KEV` for fluorescence-rich floods).
    fwhm_kev : float
        Approximate energy resolution FWHM in keV (sets the fit windows).
    min_counts : int
        Pixels with fewer counts in total fail ("too few counts").
    max_residual_kev : float
        A pixel fails when a line deviates from the fitted straight line by more than this.
    max_intercept_kev : float
        Largest plausible |intercept| in keV (limits the line-matching search).

    Returns
    -------
    Calibration
        gradients (keV/ADU), intercepts (keV), failed mask and reasons.

    Examples
    --------
    >>> import numpy as np
    >>> from compton._sim_frames import am241_flood_spectra
    >>> g, c = np.full((2, 2), 0.03), np.full((2, 2), -0.4)
    >>> counts, edges = am241_flood_spectra(g, c, counts_59=20000, seed=1)
    >>> cal = fit_calibration(counts, edges)
    >>> bool(np.allclose(cal.gradients, g, rtol=5e-3)), int(cal.failed.sum())
    (True, 0)
    """
    counts = np.asarray(counts)
    edges = np.asarray(edges_adu, dtype=np.float64)
    if counts.ndim != 3:
        raise InputError(f"counts must be [rows, cols, bins]; got shape {counts.shape}")
    if edges.shape != (counts.shape[2] + 1,) or np.any(np.diff(edges) <= 0):
        raise InputError(
            f"edges_adu must be increasing with {counts.shape[2] + 1} values; got shape {edges.shape}"
        )
    lines = np.asarray(sorted(lines_kev, reverse=True), dtype=np.float64)
    if lines.size < 2:
        raise InputError("need at least two known lines to fit a gradient and an intercept")
    x = 0.5 * (edges[:-1] + edges[1:])
    rows, cols, _ = counts.shape
    grad = np.full((rows, cols), np.nan)
    icpt = np.full((rows, cols), np.nan)
    peaks = np.full((rows, cols, lines.size), np.nan)
    reasons: dict = {}
    sig_kev = fwhm_kev / 2.3548
    for r in range(rows):
        for c in range(cols):
            y = counts[r, c].astype(np.float64)
            why = _fit_pixel(x, y, lines, sig_kev, min_counts, max_residual_kev, peaks[r, c],
                             max_intercept_kev)
            if isinstance(why, str):
                reasons[(r, c)] = why
            else:
                grad[r, c], icpt[r, c] = why
    failed = ~np.isfinite(grad)
    if (~failed).any():
        grad[failed] = np.median(grad[~failed])
        icpt[failed] = np.median(icpt[~failed])
    return Calibration(gradients=grad, intercepts=icpt, failed=failed, reasons=reasons,
                       peaks_adu=peaks, lines_kev=tuple(lines))


def _coarse(x, sm, lines, max_intercept_kev):
    """Match smoothed-spectrum maxima to the lines: (gradient, intercept) first guess or None."""
    is_max = (sm[1:-1] > sm[:-2]) & (sm[1:-1] >= sm[2:]) & (sm[1:-1] > 0.05 * sm.max())
    cand = x[np.nonzero(is_max)[0] + 1]
    if cand.size < 2:
        return None
    mu0 = cand[-1]  # the highest line is the highest-ADU prominent peak
    best, best_key = None, None
    for p in cand[:-1]:
        g = (lines[0] - lines[1]) / (mu0 - p)
        c = lines[0] - g * mu0
        if not (g > 0 and abs(c) <= max_intercept_kev):
            continue
        dev = [np.min(np.abs(g * cand + c - e)) for e in lines[2:]]
        key = (-sum(d < 1.0 for d in dev), sum(min(d, 1.0) for d in dev))
        if best_key is None or key < best_key:
            best, best_key = (g, c), key
    return best


def _fit_pixel(x, y, lines, sig_kev, min_counts, max_residual_kev, peaks_out, max_intercept_kev):
    from scipy.ndimage import gaussian_filter1d

    if y.sum() < min_counts:
        return f"too few counts ({int(y.sum())} < {min_counts})"
    bw = x[1] - x[0]
    first = _coarse(x, gaussian_filter1d(y, 2.0), lines, max_intercept_kev)
    if first is None:
        return "known lines not recognised among the spectrum peaks"
    g, c = first
    found_adu, found_kev = [], []
    for k, e in enumerate(lines):
        guess = (e - c) / g
        f = _fit_peak(x, y, guess, max(sig_kev / g, 1.5 * bw))
        if f is None or abs(f[0] - guess) * g > 1.0:
            continue
        peaks_out[k] = f[0]
        found_adu.append(f[0])
        found_kev.append(e)
    if len(found_adu) < 2:
        return "fewer than two lines fitted"
    g, c = np.polyfit(found_adu, found_kev, 1)
    res = np.abs(g * np.asarray(found_adu) + c - np.asarray(found_kev))
    if res.max() > max_residual_kev:
        return f"line residual {res.max():.2f} keV > {max_residual_kev} keV"
    if not g > 0:
        return "non-positive gradient"
    return float(g), float(c)
