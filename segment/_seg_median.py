"""Numba 3x3x3 median filter (CPU), identical to ``scipy.ndimage.median_filter(size=3, mode="reflect")``.

The same forgetful selection as the CUDA kernel (``segment._cuda_median``), run on blocks of
up to 256 voxels of a row at once so that every compare-exchange is one vector min and one
vector max: 15 of the 27 neighbours are kept, the smallest and the largest are dropped and the
next neighbour is loaded, twelve times, and the median of the last three is the median of all
27 (195 compare-exchanges a voxel, no data-dependent branches). Only comparisons are used, so
the result is one of the input values, bit for bit SciPy's order statistic (NaN-free input;
infinities are fine). Rows run in parallel threads.
"""

from __future__ import annotations

import numba
import numpy as np

#: voxels of a row handled together (15 x 256 values of the block stay in L1/L2)
BLOCK = 256


def _kernel(p, out):
    nz, ny, nx = out.shape
    for zy in numba.prange(nz * ny):
        z = zy // ny
        y = zy - z * ny
        buf = np.empty((15, BLOCK), p.dtype)
        for x0 in range(0, nx, BLOCK):
            w = min(BLOCK, nx - x0)
            # neighbour k of (z, y, x) is p[z + k // 9, y + (k // 3) % 3, x + k % 3] (p is padded)
            for k in range(15):
                src = p[z + k // 9, y + (k // 3) % 3]
                for t in range(w):
                    buf[k, t] = src[x0 + k % 3 + t]
            for s in range(12):
                # the set is buf[s..14]: its minimum to buf[s], its maximum to buf[14]
                for i in range(s + 1, 15):
                    for t in range(w):
                        a = buf[s, t]
                        b = buf[i, t]
                        buf[s, t] = min(a, b)
                        buf[i, t] = max(a, b)
                for i in range(s + 1, 14):
                    for t in range(w):
                        a = buf[i, t]
                        b = buf[14, t]
                        buf[i, t] = min(a, b)
                        buf[14, t] = max(a, b)
                # forget both: the minimum by moving on, the maximum under the next neighbour
                k = 15 + s
                src = p[z + k // 9, y + (k // 3) % 3]
                for t in range(w):
                    buf[14, t] = src[x0 + k % 3 + t]
            for t in range(w):  # median of the last three
                a = buf[12, t]
                b = buf[13, t]
                c = buf[14, t]
                out[z, y, x0 + t] = max(min(a, b), min(max(a, b), c))


# 'nnan' and 'nsz' let the compare-exchanges become vector min/max instructions; the result is
# still an input value (infinities included), so it stays exact for NaN-free input
_OPTIONS = dict(cache=True, nogil=True, boundscheck=False, fastmath={"nnan", "nsz"})
_median3_parallel = numba.njit(parallel=True, **_OPTIONS)(_kernel)
#: single-threaded, for callers that already run blocks in parallel threads (Dask)
_median3_serial = numba.njit(**_OPTIONS)(_kernel)


def median3(volume: np.ndarray, *, parallel: bool = True) -> np.ndarray:
    """3x3x3 median with mirror ('reflect', edge-duplicating) boundaries of a float volume.

    ``parallel=False`` runs in the calling thread only (no nested thread pools under Dask).
    """
    v = np.ascontiguousarray(volume)
    p = np.pad(v, 1, mode="symmetric")
    out = np.empty_like(v)
    (_median3_parallel if parallel else _median3_serial)(p, out)
    return out
