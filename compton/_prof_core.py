"""Private helpers for profiles and EMF: bin edges, window weights, background operator."""

from __future__ import annotations

import numpy as np

from ._errors import InputError

MC2_KEV = 510.99895000          # electron rest energy (keV)
C_AU = 137.035999084            # m c in atomic units of momentum (= 1 / alpha)
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

#: detector/shielding fluorescence lines (keV): Cd and Te (CdZnTe), W (pinhole), Pb (shielding)
DETECTOR_LINES_KEV = {
    "Cd Ka2": 22.98, "Cd Ka1": 23.17, "Cd Kb1": 26.10,
    "Te Ka2": 27.20, "Te Ka1": 27.47, "Te Kb1": 31.00,
    "W Ka2": 57.98, "W Ka1": 59.32, "W Kb1": 67.24, "W Kb2": 69.10,
    "Pb Ka2": 72.80, "Pb Ka1": 74.97, "Pb Kb1": 84.94, "Pb Kb2": 87.30,
}


def edges_from_axis(energies_kev, n_bins: int, name: str = "energies_kev") -> np.ndarray:
    """Bin edges (n_bins + 1) from edges or from (uniform or not) bin centres."""
    e = np.asarray(energies_kev, dtype=np.float64)
    if e.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {e.shape}")
    if e.size == n_bins + 1:
        edges = e
    elif e.size == n_bins:
        if n_bins < 2:
            raise InputError(f"{name}: need at least 2 bin centres, got {n_bins}")
        mid = 0.5 * (e[1:] + e[:-1])
        edges = np.concatenate([[e[0] - (mid[0] - e[0])], mid, [e[-1] + (e[-1] - mid[-1])]])
    else:
        raise InputError(
            f"{name} has {e.size} values; expected {n_bins} bin centres or {n_bins + 1} edges "
            f"for a spectrum of {n_bins} bins")
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise InputError(f"{name} must be finite and strictly increasing")
    return edges


def check_windows(low: float, high: float) -> tuple[float, float]:
    low, high = float(low), float(high)
    if not (0 < low < high) or not np.isfinite(high):
        raise InputError(f"EMF windows need 0 < low < high (a.u.), got low={low}, high={high}")
    return low, high


def hat_window_weights(pz, a: float, b: float) -> np.ndarray:
    """Weights w with sum(w * J) = integral over [a, b] of the linear interpolant of (pz, J)."""
    pz = np.asarray(pz, np.float64)
    w = np.zeros_like(pz)
    p0, p1 = pz[:-1], pz[1:]
    h = p1 - p0
    lo = np.clip(p0, a, b)
    hi = np.clip(p1, a, b)
    # integral of (p1 - p)/h and (p - p0)/h over [lo, hi]
    i_left = ((p1 - lo) ** 2 - (p1 - hi) ** 2) / (2 * h)
    i_right = ((hi - p0) ** 2 - (lo - p0) ** 2) / (2 * h)
    np.add.at(w, np.arange(pz.size - 1), i_left)
    np.add.at(w, np.arange(1, pz.size), i_right)
    return w


def background_operator(edges: np.ndarray, sidebands_kev, *, degree: int, lines_kev,
                        fwhm_kev: float):
    """Linear least-squares background from side bands.

    Returns ``(side_idx, P, M_all)``: the sideband bin indices, ``P = pinv(M_side)`` [r, ns]
    and the design matrix over all bins [n, r], so that the fitted background of spectrum c is
    ``M_all @ (P @ c[side_idx])`` (polynomial in energy plus fixed-position Gaussian lines).
    """
    centres = 0.5 * (edges[:-1] + edges[1:])
    side = np.zeros(centres.size, bool)
    try:
        bands = [(float(a), float(b)) for a, b in sidebands_kev]
    except (TypeError, ValueError):
        raise InputError(f"sidebands_kev must be pairs (low_kev, high_kev), got {sidebands_kev!r}") from None
    for a, b in bands:
        if not a < b:
            raise InputError(f"sideband ({a}, {b}) keV: low must be below high")
        side |= (centres >= a) & (centres <= b)
    if degree < 0:
        raise InputError(f"background degree must be >= 0, got {degree}")
    e_mid = centres[side].mean() if side.any() else centres.mean()
    cols = [((centres - e_mid) / 10.0) ** k for k in range(degree + 1)]
    lo_fit, hi_fit = min(a for a, _ in bands), max(b for _, b in bands)
    sig = fwhm_kev * FWHM_TO_SIGMA
    for e_line in lines_kev or ():
        in_side = any(a - sig <= e_line <= b + sig for a, b in bands)
        if in_side and lo_fit <= e_line <= hi_fit + 3 * sig:
            cols.append(gaussian_bin_integrals(edges, e_line, sig))
    m_all = np.stack(cols, axis=1)
    side_idx = np.flatnonzero(side)
    if side_idx.size < m_all.shape[1]:
        raise InputError(
            f"sidebands {bands} keV hold {side_idx.size} bins, fewer than the "
            f"{m_all.shape[1]} background parameters")
    p = np.linalg.pinv(m_all[side_idx])
    return side_idx, p, m_all


def gaussian_bin_integrals(edges: np.ndarray, centre_kev: float, sigma_kev: float) -> np.ndarray:
    """Fraction of a unit-area Gaussian in each bin."""
    from scipy.special import erf

    z = (edges - centre_kev) / (np.sqrt(2.0) * sigma_kev)
    return 0.5 * np.diff(erf(z))


def _interval_weights(pz_edges, a: float, b: float):
    """Weights on bin-average J for the integral over [a, b]: exact overlaps, plus a linear
    (central-difference) slope correction for bins only partly inside. [..., n]."""
    lo = pz_edges[..., :-1]
    hi = pz_edges[..., 1:]
    width = hi - lo
    c_lo = np.clip(lo, a, b)
    c_hi = np.clip(hi, a, b)
    ov = np.clip(c_hi - c_lo, 0.0, None)
    w = ov.copy()
    u0 = (c_lo - lo) / width
    u1 = (c_hi - lo) / width
    g = np.where(ov > 0, 0.5 * ((u1 - 0.5) ** 2 - (u0 - 0.5) ** 2), 0.0)
    centres = 0.5 * (lo + hi)
    span = centres[..., 2:] - centres[..., :-2]
    h = width[..., 1:-1] ** 2 * g[..., 1:-1] / span          # slope term of bins 1..n-2
    w[..., 2:] += h
    w[..., :-2] -= h
    return w


def window_weights(pz_edges, low: float, high: float):
    """Weights on bin-average J giving the valence and core window integrals. [..., n] each."""
    w_l = _interval_weights(pz_edges, -low, low)
    w_h = _interval_weights(pz_edges, -high, -low) + _interval_weights(pz_edges, low, high)
    return w_l, w_h
