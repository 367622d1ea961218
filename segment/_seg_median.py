"""Numba 3x3x3 median filter (CPU), identical to ``scipy.ndimage.median_filter(size=3, mode="reflect")``.

Along each row of the volume, every 3x3 column of the window (9 values across y and z) is
sorted once and shared by the three windows that contain it; the median of a window is the
14th smallest of its three sorted columns, found by a three-way merge of 14 steps. Rows run
in parallel threads.
"""

from __future__ import annotations

import numba
import numpy as np


def _kernel(p, out):
    nz, ny, nx = out.shape
    for zy in numba.prange(nz * ny):
        z = zy // ny
        y = zy - z * ny
        cols = np.empty((nx + 2, 9), p.dtype)
        for xp in range(nx + 2):  # sort each 3x3 column (insertion sort of 9 values)
            n = 0
            for dz in range(3):
                for dy in range(3):
                    v = p[z + dz, y + dy, xp]
                    j = n
                    while j > 0 and cols[xp, j - 1] > v:
                        cols[xp, j] = cols[xp, j - 1]
                        j -= 1
                    cols[xp, j] = v
                    n += 1
        for x in range(nx):
            a = 0
            b = 0
            c = 0
            for _ in range(13):  # drop the 13 smallest of the 27 values
                va = cols[x, a] if a < 9 else np.inf
                vb = cols[x + 1, b] if b < 9 else np.inf
                vc = cols[x + 2, c] if c < 9 else np.inf
                if va <= vb and va <= vc:
                    a += 1
                elif vb <= vc:
                    b += 1
                else:
                    c += 1
            va = cols[x, a] if a < 9 else np.inf
            vb = cols[x + 1, b] if b < 9 else np.inf
            vc = cols[x + 2, c] if c < 9 else np.inf
            out[z, y, x] = min(va, min(vb, vc))


_median3_parallel = numba.njit(cache=True, nogil=True, parallel=True)(_kernel)
#: single-threaded, for callers that already run blocks in parallel threads (Dask)
_median3_serial = numba.njit(cache=True, nogil=True)(_kernel)


def median3(volume: np.ndarray, *, parallel: bool = True) -> np.ndarray:
    """3x3x3 median with mirror ('reflect', edge-duplicating) boundaries of a float volume.

    ``parallel=False`` runs in the calling thread only (no nested thread pools under Dask).
    """
    v = np.ascontiguousarray(volume)
    p = np.pad(v, 1, mode="symmetric")
    out = np.empty_like(v)
    (_median3_parallel if parallel else _median3_serial)(p, out)
    return out
