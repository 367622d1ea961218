"""Numba CPU kernels for reconstruction: linear-interpolation back-projection and polar gridding.

Geometry (docs/architecture.md): pixel ``img[row, col]`` sits at ``x = col - (n-1)/2``,
``y = row - (n-1)/2``; a ray at angle theta hits detector column ``u = x cos + y sin + center``.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _valid_columns(base, c, umax, n):
    # columns col in [c0, c1) whose u = base + col * c lies in [0, umax]
    if abs(c) < 1e-12:
        if base < 0.0 or base > umax:
            return 0, 0
        return 0, n
    t0 = (0.0 - base) / c
    t1 = (umax - base) / c
    lo = min(t0, t1)
    hi = max(t0, t1)
    c0 = max(0, int(math.ceil(lo - 1e-6)))
    c1 = min(n, int(math.floor(hi + 1e-6)) + 1)
    return c0, max(c0, c1)


@numba.njit(fastmath=True, cache=True)
def _backproject_row(qp, cos_t, sin_t, y, center, half, acc):
    # one image row; kept out of the prange body (numba's parfor pass mis-handled this loop nest)
    n = acc.shape[0]
    umax = qp.shape[1] - 1  # padded index of the right zero column
    for a in range(qp.shape[0]):
        c = cos_t[a]
        base = y * sin_t[a] + center + 1.0 - half * c  # +1: index in the padded row
        c0, c1 = _valid_columns(base, c, umax, n)
        qa = qp[a]
        cf = np.float32(c)
        bf = np.float32(base)
        for col in range(c0, c1):
            u = bf + col * cf
            u = min(max(u, np.float32(0.0)), np.float32(umax))
            i0 = min(int(u), umax - 1)
            f = u - i0
            acc[col] += qa[i0] + f * (qa[i0 + 1] - qa[i0])


@numba.njit(parallel=True, fastmath=True, cache=True)
def backproject_linear(qp, cos_t, sin_t, center, n, scale, out):
    """Back-project filtered projections into ``out`` (n, n), float32.

    ``qp`` is (n_angles, width + 2) float32: the filtered projections with one zero column on
    each side, so that a projection falls linearly to zero over the pixel beyond each detector
    end (continuous, hence insensitive to rounding at the ends).
    ``out[row, col] = scale * sum_a q_a(x cos_a + y sin_a + center)`` with linear interpolation
    between detector columns.
    """
    half = (n - 1) * 0.5
    for row in numba.prange(n):
        acc = np.zeros(n, dtype=np.float32)
        _backproject_row(qp, cos_t, sin_t, row - half, center, half, acc)
        for col in range(n):
            out[row, col] = acc[col] * scale
    return out


def es_table(width: int, beta: float, ups: int) -> np.ndarray:
    """ES kernel exp(beta (sqrt(1 - (2t/width)^2) - 1)) at t = -width/2 + j/ups, float32, 2 guard zeros."""
    t = -0.5 * width + np.arange(width * ups + 2) / ups
    z2 = 1.0 - (2.0 * t / width) ** 2
    out = np.where(z2 > 0, np.exp(beta * (np.sqrt(np.maximum(z2, 0.0)) - 1.0)), 0.0)
    return out.astype(np.float32)


@numba.njit(parallel=True, fastmath=True, cache=True)
def polar_coefficients(spec1, spec2, v1, v2, tphase, pair, out):
    """Filtered, centre-shifted polar samples of one slice or of two packed slices.

    Parameters
    ----------
    spec1, spec2 : complex64 (n_angles, L/2 + 1)
        rfft of the zero-padded projections (spec2 is ignored unless ``pair``).
    v1, v2 : complex64 (n_k,)
        Filter x weight x exp(2 pi i nu_k center) per output sample index.
    tphase : complex64 (n_angles, L/2 + 1) or (0, 0)
        exp(2 pi i nu_k delta (cos + sin)) for a half-pixel grid offset; empty when none.
    pair : bool
        False: ``out[a, k] = spec1 v1 T`` for k = 0 .. L/2. True: k = -L/2 .. L/2 and
        ``out = (s1 v1 + i s2 v2) T`` with s(-k) = conj(s(k)), packing two real slices.
    out : complex64 (n_angles, n_k)
    """
    n_angles, n_k = out.shape
    nh = spec1.shape[1]
    off = nh - 1 if pair else 0
    has_t = tphase.shape[0] > 0
    for a in numba.prange(n_angles):
        for j in range(n_k):
            kk = j - off
            ka = abs(kk)
            s1 = spec1[a, ka]
            t = tphase[a, ka] if has_t else np.complex64(1.0)
            if kk < 0:
                s1 = s1.conjugate()
                t = t.conjugate()
            c = s1 * v1[j]
            if pair:
                s2 = spec2[a, ka]
                if kk < 0:
                    s2 = s2.conjugate()
                c = c + 1j * (s2 * v2[j])
            out[a, j] = c * t
    return out


@numba.njit(parallel=True, fastmath=True, cache=True)
def grid_polar(coef, gnu, cos_t, sin_t, width, table, ups, band_edges, grid):
    """Spread polar samples onto a periodic Cartesian grid with the ES kernel.

    Parameters
    ----------
    coef : complex64 (n_angles, n_k)
        Sample values.
    gnu : float64 (n_k,)
        Radial position of sample k in grid cells (frequency in cycles per pixel times G),
        increasing with k.
    cos_t, sin_t : float64 (n_angles,)
        Direction of each radial line; sample (a, k) sits at
        ``(gx, gy) = gnu[k] * (cos_t[a], sin_t[a])``.
    width : int
        Kernel width in grid cells.
    table : float32 (width * ups + 2,)
        Kernel sampled at ``t = -width/2 + j / ups`` (grid cells), linearly interpolated.
    ups : int
        Table samples per grid cell.
    band_edges : int64 (n_bands + 1,)
        Row bands of the grid, one per parallel task; each task writes only its own rows.
    grid : float32 (G, 2 G)
        Accumulator viewed as interleaved complex: row = gy index and column = gx index, both
        modulo G (frequency m sits at index m mod G).
    """
    n_angles, n_k = coef.shape
    g = grid.shape[0]
    half_w = 0.5 * width
    n_bands = band_edges.shape[0] - 1
    for b in numba.prange(n_bands):
        r0 = band_edges[b]
        r1 = band_edges[b + 1]
        wy = np.empty(width, dtype=np.float32)
        wx = np.empty(width, dtype=np.float32)
        for a in range(n_angles):
            ca = cos_t[a]
            sa = sin_t[a]
            for shift in (-g, 0, g):
                lo = r0 + shift - half_w - 1.0
                hi = r1 + shift + half_w + 1.0
                # samples k whose gy = gnu[k] * sa falls in (lo, hi); gnu is increasing
                k0 = 0
                k1 = n_k
                if sa > 1e-12:
                    k0 = np.searchsorted(gnu, lo / sa)
                    k1 = np.searchsorted(gnu, hi / sa)
                elif sa < -1e-12:
                    k0 = np.searchsorted(gnu, hi / sa)
                    k1 = np.searchsorted(gnu, lo / sa)
                elif not (lo < 0.0 < hi):
                    continue
                for k in range(k0, k1):
                    c = coef[a, k]
                    cr = c.real
                    ci = c.imag
                    if cr == 0.0 and ci == 0.0:
                        continue
                    gx = gnu[k] * ca
                    gy = gnu[k] * sa
                    my0 = int(math.floor(gy - half_w)) + 1
                    mx0 = int(math.floor(gx - half_w)) + 1
                    ty0 = max(0, r0 + shift - my0)
                    ty1 = min(width, r1 + shift - my0)
                    if ty0 >= ty1:
                        continue
                    # all taps of a sample share one fractional table position
                    py = (my0 - gy + half_w) * ups
                    px = (mx0 - gx + half_w) * ups
                    iy0 = int(py)
                    ix0 = int(px)
                    fy = py - iy0
                    fx = px - ix0
                    for t in range(width):
                        jy = iy0 + t * ups
                        jx = ix0 + t * ups
                        wy[t] = table[jy] + fy * (table[jy + 1] - table[jy])
                        wx[t] = table[jx] + fx * (table[jx + 1] - table[jx])
                    col0 = mx0 % g
                    for ty in range(ty0, ty1):
                        row = grid[my0 + ty - shift]
                        ry = cr * wy[ty]
                        iy = ci * wy[ty]
                        if col0 + width <= g:
                            for tx in range(width):
                                j = 2 * (col0 + tx)
                                row[j] += ry * wx[tx]
                                row[j + 1] += iy * wx[tx]
                        else:
                            for tx in range(width):
                                col = col0 + tx
                                if col >= g:
                                    col -= g
                                row[2 * col] += ry * wx[tx]
                                row[2 * col + 1] += iy * wx[tx]
    return grid


@numba.njit(parallel=True, fastmath=True, cache=True)
def hermitian_half(grid, out):
    """``out[r, c] = (grid[r, c] + conj(grid[-r, -c])) / 2`` for c = 0 .. G/2 (indices modulo G).

    The inverse FFT of the result (a C2R transform) is the real part of the inverse FFT of ``grid``.
    """
    g = grid.shape[0]
    nc = out.shape[1]
    for r in numba.prange(g):
        rr = (g - r) % g
        out[r, 0] = 0.5 * (grid[r, 0] + grid[rr, 0].conjugate())
        for c in range(1, nc):
            out[r, c] = 0.5 * (grid[r, c] + grid[rr, g - c].conjugate())
    return out
