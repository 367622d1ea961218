"""Per-column optimal layering: split every column into ordered bands that best match the classes.

For phases p_1 .. p_n stacked in this order along axis 0, each column (y, x) is cut at
0 <= b_1 <= ... <= b_{n-1} <= nz so that the number of voxels whose class matches the band's
class is maximal (a 1-D dynamic programme on prefix sums, vectorised over columns). Noise
specks cannot break the order of the layers, and a missing layer gets zero thickness.
"""

from __future__ import annotations

import numpy as np


def optimal_bands(classes: np.ndarray, band_class: list[int], *, block_cols: int = 1 << 16) -> np.ndarray:
    """Cut positions of the monotone layering that matches the most voxel classes.

    Parameters
    ----------
    classes : ndarray, (z, y, x) integer
        Voxel classes.
    band_class : list of int
        The class expected in each band, bottom (z = 0) to top.

    Returns
    -------
    ndarray, (n_bands - 1, y, x) int32
        Boundary indices: band k spans [b_{k-1}, b_k) with b_0 = 0 and b_n = nz.
    """
    return _bands(lambda blk, k: (blk == band_class[k]), classes, len(band_class), block_cols)


def optimal_bands_levels(volume: np.ndarray, levels, *, block_cols: int = 1 << 15) -> np.ndarray:
    """Cut positions of the ordered piecewise-constant fit with the given band levels.

    Each column is split into bands with intensities ``levels`` (bottom to top) minimising
    the sum of squared residuals: a change-point fit with a known order of the phases.
    """
    lv = [float(v) for v in levels]
    return _bands(lambda blk, k: -((blk - lv[k]) ** 2), volume, len(lv), block_cols)


def _bands(score, data: np.ndarray, n: int, block_cols: int) -> np.ndarray:
    nz = data.shape[0]
    flat = data.reshape(nz, -1)
    ncol = flat.shape[1]
    cuts = np.zeros((n - 1, ncol), np.int32)
    for c0 in range(0, ncol, block_cols):
        blk = flat[:, c0:c0 + block_cols]
        m = blk.shape[1]
        pref = np.zeros((n, nz + 1, m), np.float64)
        for k in range(n):
            np.cumsum(score(blk, k), axis=0, dtype=np.float64, out=pref[k, 1:])
        f = pref[0].copy()  # best score with only band 1 up to z
        back = []
        rows = np.arange(nz + 1)[:, None]
        for k in range(1, n):
            # f_k[z] = max_{a <= z} (f_{k-1}[a] - S_k[a]) + S_k[z]
            g = f - pref[k]
            run_max = np.maximum.accumulate(g, axis=0)
            is_new = np.empty(g.shape, dtype=bool)
            is_new[0] = True
            is_new[1:] = g[1:] > run_max[:-1]
            arg = np.maximum.accumulate(np.where(is_new, rows, 0), axis=0)
            back.append(arg.astype(np.int32))
            f = run_max + pref[k]
        z = np.full(m, nz, np.int32)
        cols = np.arange(m)
        for k in range(n - 1, 0, -1):
            z = back[k - 1][z, cols]
            cuts[k - 1, c0:c0 + m] = z
    return cuts.reshape((n - 1,) + data.shape[1:])


def profile_levels(profile: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Best n-segment piecewise-constant fit of a 1-D profile (free levels, least squares).

    Returns the cut indices (n - 1,) and the segment means (n,).
    """
    p = np.asarray(profile, np.float64)
    nz = p.size
    c1 = np.concatenate([[0.0], np.cumsum(p)])
    c2 = np.concatenate([[0.0], np.cumsum(p * p)])

    def sse(a, b):  # segment [a, b)
        ln = b - a
        if ln <= 0:
            return 0.0
        s = c1[b] - c1[a]
        return (c2[b] - c2[a]) - s * s / ln

    inf = np.inf
    cost = np.full((n + 1, nz + 1), inf)
    arg = np.zeros((n + 1, nz + 1), int)
    cost[0, 0] = 0.0
    for k in range(1, n + 1):
        for b in range(nz + 1):
            best, ba = inf, 0
            for a in range(0, b + 1):
                c = cost[k - 1, a] + sse(a, b)
                if c < best:
                    best, ba = c, a
            cost[k, b], arg[k, b] = best, ba
    cuts = []
    b = nz
    for k in range(n, 0, -1):
        a = arg[k, b]
        cuts.append(a)
        b = a
    cuts = np.array(cuts[::-1][1:], int)
    edges = np.concatenate([[0], cuts, [nz]])
    means = np.array([p[a:b].mean() if b > a else np.nan for a, b in zip(edges[:-1], edges[1:])])
    return cuts, means


def bands_to_labels(cuts: np.ndarray, nz: int) -> np.ndarray:
    """Band index 1..n of every voxel from the cut positions, (z, y, x) uint8."""
    z = np.arange(nz, dtype=np.int32)[:, None, None]
    lab = np.ones((nz,) + cuts.shape[1:], np.uint8)
    for k in range(cuts.shape[0]):
        lab += (z >= cuts[k][None]).astype(np.uint8)
    return lab
