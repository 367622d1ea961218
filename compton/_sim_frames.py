"""HEXITEC frame simulator for tests and benchmarks (not a physics simulator).

Sparse frames with known photon energies, single/double/triple-pixel charge-sharing
clusters, per-pixel dark level, noise, gain and offset; and Am-241 flood spectra with known
per-pixel gain and offset for the calibration fit.
"""

from __future__ import annotations

import numpy as np

#: Am-241 lines (keV) and relative intensities used for floods: the 59.54 keV gamma and the
#: Np L lines (13.94, 17.75, 20.8, 26.34 keV).
AM241_LINES_KEV = np.array([13.94, 17.75, 20.8, 26.34, 59.54])
AM241_WEIGHTS = np.array([0.30, 0.45, 0.12, 0.06, 1.0])

# neighbour offsets for the second and third pixel of a shared event
_EDGE = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)])
_DIAG = np.array([(1, 1), (1, -1), (-1, 1), (-1, -1)])


def sparse_frames(
    n_frames: int,
    *,
    shape: tuple[int, int] = (80, 80),
    occupancy: float = 0.01,
    fraction_double: float = 0.15,
    fraction_triple: float = 0.05,
    lines_kev=(59.54, 93.9),
    weights=None,
    fwhm_kev: float = 0.8,
    gain_kev_per_adu=0.03,
    intercept_kev=0.0,
    dark_adu=100.0,
    noise_adu: float = 3.0,
    seed: int = 0,
):
    """Simulate raw uint16 frames of sparse photon events.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : (int, int)
        Frame shape in pixels.
    occupancy : float
        Mean fraction of pixels hit per frame (including shared pixels).
    fraction_double, fraction_triple : float
        Fractions of photons whose charge is shared over 2 (edge or corner neighbour) and
        3 pixels (an L shape).
    lines_kev, weights : sequence of float
        Photon energies in keV and their relative weights.
    fwhm_kev : float
        Energy resolution (Gaussian FWHM, keV).
    gain_kev_per_adu, intercept_kev : float or array [rows, cols]
        Calibration ``E = gain * ADU + intercept``; the ADU of a deposit ``e`` is
        ``(e - intercept) / gain``.
    dark_adu : float or array [rows, cols]
        Dark offset in ADU added to every pixel.
    noise_adu : float
        Gaussian read noise in ADU (rms).
    seed : int
        Random seed.

    Returns
    -------
    frames : ndarray uint16 [n_frames, rows, cols]
    photons : dict of arrays
        ``frame``, ``row``, ``col`` (first pixel), ``size`` (1, 2 or 3 pixels) and
        ``energy_kev`` of each photon.
    """
    rng = np.random.default_rng(seed)
    rows, cols = shape
    gain = np.broadcast_to(np.asarray(gain_kev_per_adu, float), shape)
    icpt = np.broadcast_to(np.asarray(intercept_kev, float), shape)
    dark = np.broadcast_to(np.asarray(dark_adu, float), shape)
    mean_size = 1 + fraction_double + 2 * fraction_triple
    n_ph = rng.poisson(occupancy * rows * cols / mean_size * n_frames)
    frame = rng.integers(0, n_frames, n_ph)
    row = rng.integers(0, rows, n_ph)
    col = rng.integers(0, cols, n_ph)
    lines = np.asarray(lines_kev, float)
    w = np.ones(lines.size) if weights is None else np.asarray(weights, float)
    e = lines[rng.choice(lines.size, n_ph, p=w / w.sum())]
    e = e + rng.normal(0.0, fwhm_kev / 2.3548, n_ph)
    u = rng.random(n_ph)
    size = np.where(u < fraction_triple, 3, np.where(u < fraction_triple + fraction_double, 2, 1))
    deposit = np.zeros((n_frames, rows, cols))
    # shares of the charge: first pixel keeps the largest share
    f1 = rng.uniform(0.5, 0.9, n_ph)
    f2 = (1 - f1) * np.where(size == 3, rng.uniform(0.5, 1.0, n_ph), 1.0)
    f3 = 1 - f1 - f2
    share = [np.where(size == 1, 1.0, f1), np.where(size >= 2, f2, 0.0), np.where(size == 3, f3, 0.0)]
    d2 = np.where((rng.random(n_ph) < 0.7)[:, None], _EDGE[rng.integers(0, 4, n_ph)],
                  _DIAG[rng.integers(0, 4, n_ph)])
    # third pixel: beside the first, at a right angle to the second (an L shape)
    d3 = np.stack([d2[:, 1], -d2[:, 0]], axis=1)
    d3 = np.where((np.abs(d2).sum(axis=1) == 2)[:, None], np.stack([d2[:, 0], 0 * d2[:, 1]], axis=1), d3)
    for k, d in enumerate([np.zeros_like(d2), d2, d3]):
        rr, cc = row + d[:, 0], col + d[:, 1]
        m = (share[k] > 0) & (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)  # charge off the edge is lost
        np.add.at(deposit, (frame[m], rr[m], cc[m]), e[m] * share[k][m])
    hit = deposit > 0
    adu = dark + rng.normal(0.0, noise_adu, (n_frames, rows, cols))
    adu = np.where(hit, adu + (deposit - icpt) / gain, adu)
    frames = np.clip(np.rint(adu), 0, 65535).astype(np.uint16)
    photons = {"frame": frame, "row": row, "col": col, "size": size, "energy_kev": e}
    return frames, photons


def am241_flood_spectra(
    gain_kev_per_adu,
    intercept_kev,
    *,
    counts_59: int = 4000,
    bin_width_adu: float = 1.0,
    adu_max: float = 4096.0,
    fwhm_kev: float = 0.8,
    background: float = 0.05,
    seed: int = 0,
):
    """Per-pixel Am-241 flood spectra in ADU with known gain and offset.

    Parameters
    ----------
    gain_kev_per_adu, intercept_kev : array [rows, cols]
        True calibration ``E = gain * ADU + intercept`` (keV/ADU, keV).
    counts_59 : int
        Mean counts in the 59.54 keV line per pixel (other lines scale with
        :data:`AM241_WEIGHTS`).
    bin_width_adu, adu_max : float
        Histogram bins ``[0, adu_max)`` of this width in ADU.
    fwhm_kev : float
        Energy resolution FWHM (keV).
    background : float
        Flat background: this fraction of the 59.54 keV counts spread over 5 to 65 keV.
    seed : int
        Random seed.

    Returns
    -------
    counts : ndarray [rows, cols, bins]
    edges_adu : ndarray [bins + 1]
    """
    rng = np.random.default_rng(seed)
    gain = np.asarray(gain_kev_per_adu, float)
    icpt = np.asarray(intercept_kev, float)
    rows, cols = gain.shape
    edges = np.arange(0.0, adu_max + bin_width_adu / 2, bin_width_adu)
    nb = edges.size - 1
    counts = np.zeros((rows, cols, nb), np.int64)
    sigma = fwhm_kev / 2.3548
    for r in range(rows):
        for c in range(cols):
            n_lines = rng.poisson(counts_59 * AM241_WEIGHTS)
            e = np.concatenate(
                [rng.normal(line, sigma, n) for line, n in zip(AM241_LINES_KEV, n_lines)]
                + [rng.uniform(5.0, 65.0, rng.poisson(background * counts_59))]
            )
            adu = (e - icpt[r, c]) / gain[r, c]
            counts[r, c] = np.histogram(adu, edges)[0]
    return counts, edges
