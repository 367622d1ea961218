"""Per-column optimal layering: split every column into ordered bands that best match the classes.

For phases p_1 .. p_n stacked in this order along axis 0, each column (y, x) is cut at
0 <= b_1 <= ... <= b_{n-1} <= nz so that the number of voxels whose class matches the band's
class is maximal (a 1-D dynamic programme on running prefix scores, a Numba kernel parallel over
rows). Noise
specks cannot break the order of the layers, and a missing layer gets zero thickness.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, parallel=True)
def _bands_kernel(data, mode, params, cuts):
    """Per-column DP; mode 0: score 1 where data == params[k]; mode 1: score -(data - params[k])^2."""
    nz, ny, nx = data.shape
    n = params.size
    for y in numba.prange(ny):
        s = np.zeros((n, nx))
        f = np.zeros((n, nx))
        m = np.full((n, nx), -np.inf)
        arg = np.zeros((n, nx), np.int32)
        back = np.zeros((n, nz + 1, nx), np.int32)
        for z in range(nz + 1):
            for x in range(nx):
                if z > 0:
                    v = data[z - 1, y, x]
                    for k in range(n):
                        if mode == 0:
                            s[k, x] += 1.0 if v == params[k] else 0.0
                        else:
                            d = v - params[k]
                            s[k, x] -= d * d
                f[0, x] = s[0, x]
                for k in range(1, n):
                    # f_k[z] = max_{a <= z} (f_{k-1}[a] - S_k[a]) + S_k[z], first a reaching the max
                    g = f[k - 1, x] - s[k, x]
                    if g > m[k, x]:
                        m[k, x] = g
                        arg[k, x] = z
                    back[k, z, x] = arg[k, x]
                    f[k, x] = m[k, x] + s[k, x]
        for x in range(nx):
            zc = nz
            for k in range(n - 1, 0, -1):
                zc = back[k, zc, x]
                cuts[k - 1, y, x] = zc


def _as3d(a):
    a = np.asarray(a)
    if a.ndim == 1:
        return a[:, None, None]
    if a.ndim == 2:
        return a[:, :, None]
    return a


def optimal_bands(classes: np.ndarray, band_class: list[int]) -> np.ndarray:
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
    data = np.ascontiguousarray(_as3d(classes))
    cuts = np.zeros((len(band_class) - 1,) + data.shape[1:], np.int32)
    _bands_kernel(data, 0, np.asarray(band_class, np.float64), cuts)
    return cuts.reshape((len(band_class) - 1,) + np.shape(classes)[1:])


def optimal_bands_levels(volume: np.ndarray, levels) -> np.ndarray:
    """Cut positions of the ordered piecewise-constant fit with the given band levels.

    Each column is split into bands with intensities ``levels`` (bottom to top) minimising
    the sum of squared residuals: a change-point fit with a known order of the phases.
    """
    data = np.ascontiguousarray(_as3d(volume))
    lv = np.asarray(levels, np.float64)
    cuts = np.zeros((lv.size - 1,) + data.shape[1:], np.int32)
    _bands_kernel(data, 1, lv, cuts)
    return cuts.reshape((lv.size - 1,) + np.shape(volume)[1:])


@numba.njit(cache=True, nogil=True, parallel=True)
def first_crossing(v, mid, sign, lo, hi, persist, first, sub):
    """First z in [lo, hi) where sign * (v - mid) > 0 holds for ``persist`` voxels in a row.

    The run may extend past ``hi`` but not past the end of the column.

    ``first`` gets that index (``hi`` when none); ``sub`` the sub-voxel crossing of ``mid``
    between the centres of voxels first-1 and first (voxel i spans [i, i+1)), or ``first``
    when the crossing sits on a band edge.
    """
    nz, ny, nx = v.shape
    for y in numba.prange(ny):
        for x in range(nx):
            a = lo[y, x]
            b = hi[y, x]
            found = b
            for z in range(a, b):
                ok = True
                for i in range(persist):  # the run may look past the band, not past the column
                    if z + i >= nz:
                        break
                    if not sign * (v[z + i, y, x] - mid) > 0:
                        ok = False
                        break
                if ok:
                    found = z
                    break
            first[y, x] = found
            if found > a and found < b:
                i1 = min(max(found, 1), nz - 1)
                va = v[i1 - 1, y, x]
                vb = v[i1, y, x]
                t = 0.5
                if vb != va:
                    t = min(max((mid - va) / (vb - va), 0.0), 1.0)
                sub[y, x] = i1 - 0.5 + t
            else:
                sub[y, x] = found


def bands_to_labels(cuts: np.ndarray, nz: int) -> np.ndarray:
    """Band index 1..n of every voxel from the cut positions, (z, y, x) uint8."""
    z = np.arange(nz, dtype=np.int32)[:, None, None]
    lab = np.ones((nz,) + cuts.shape[1:], np.uint8)
    for k in range(cuts.shape[0]):
        lab += (z >= cuts[k][None]).astype(np.uint8)
    return lab


@numba.njit(cache=True, nogil=True, parallel=True)
def inclusion_candidates(v, labels, levels, margin, cuts, odd):
    """Voxels closer to another phase level than to their layer's by more than ``margin``, or
    darker than every level by ``margin``, at least two voxels away from every interface."""
    nz, ny, nx = v.shape
    n = levels.size
    lmin = levels.min()
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                lab = labels[z, y, x]
                val = v[z, y, x]
                d_own = abs(val - levels[lab - 1])
                d_other = np.inf
                for k in range(n):
                    if k != lab - 1:
                        d_other = min(d_other, abs(val - levels[k]))
                flag = (d_own > d_other and d_own > margin) or val < lmin - margin
                if flag:
                    for k in range(n - 1):
                        if abs(z - cuts[k, y, x] + 0.5) <= 1.5:
                            flag = False
                            break
                odd[z, y, x] = flag
