"""Numba kernels of the simulator: Joseph's parallel-beam projector and ellipse painting.

Geometry (docs/architecture.md): pixel centres at ``x = col - (nx - 1) / 2``,
``y = row - (ny - 1) / 2``; a ray at angle theta and detector coordinate ``s`` is the line
``x cos(theta) + y sin(theta) = s``; detector column ``k`` has ``s = k - center``.

Joseph's method walks the ray one row (or one column) at a time, whichever axis the ray
crosses more steeply, and linearly interpolates the image between the two neighbouring
pixels on that row (column); every step contributes ``1 / |cos|`` (``1 / |sin|``), the ray
length per unit step. It is the exact line integral of the image interpolated linearly
along the stepping direction.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _span(a0, slope, n_in, n_step):
    """Indices ``i`` in [0, n_step) where ``a0 + slope * i`` can fall in [-1, n_in] (inclusive)."""
    if slope == 0.0:
        if a0 < -1.0 or a0 > n_in:
            return 0, -1
        return 0, n_step - 1
    i1 = (-1.0 - a0) / slope
    i2 = (n_in - a0) / slope
    lo = math.floor(min(i1, i2)) - 1
    hi = math.ceil(max(i1, i2)) + 1
    return max(0, lo), min(n_step - 1, hi)


@numba.njit(parallel=True, cache=True)
def joseph_project(vol_t, cos_t, sin_t, center, out):
    """Project ``vol_t`` (ny, nx, nz) into ``out`` (n_angles, width, nz), float32."""
    ny, nx, nz = vol_t.shape
    n_angles, width, _ = out.shape
    cx = 0.5 * (nx - 1)
    cy = 0.5 * (ny - 1)
    for a in numba.prange(n_angles):
        c = cos_t[a]
        s = sin_t[a]
        acc = np.zeros(nz, np.float64)
        for k in range(width):
            sv = k - center
            for z in range(nz):
                acc[z] = 0.0
            if abs(c) >= abs(s):
                # step over rows: x = (s - y sin) / cos
                w = 1.0 / abs(c)
                a0 = (sv + cy * s) / c + cx
                lo, hi = _span(a0, -s / c, nx, ny)
                for row in range(lo, hi + 1):
                    fc = a0 - row * s / c
                    c0 = math.floor(fc)
                    if c0 < -1 or c0 > nx - 1:
                        continue
                    t = fc - c0
                    i0 = int(c0)
                    if i0 >= 0:
                        w0 = 1.0 - t
                        for z in range(nz):
                            acc[z] += w0 * vol_t[row, i0, z]
                    if i0 + 1 <= nx - 1:
                        for z in range(nz):
                            acc[z] += t * vol_t[row, i0 + 1, z]
            else:
                # step over columns: y = (s - x cos) / sin
                w = 1.0 / abs(s)
                a0 = (sv + cx * c) / s + cy
                lo, hi = _span(a0, -c / s, ny, nx)
                for col in range(lo, hi + 1):
                    fr = a0 - col * c / s
                    r0 = math.floor(fr)
                    if r0 < -1 or r0 > ny - 1:
                        continue
                    t = fr - r0
                    i0 = int(r0)
                    if i0 >= 0:
                        w0 = 1.0 - t
                        for z in range(nz):
                            acc[z] += w0 * vol_t[i0, col, z]
                    if i0 + 1 <= ny - 1:
                        for z in range(nz):
                            acc[z] += t * vol_t[i0 + 1, col, z]
            for z in range(nz):
                out[a, k, z] = acc[z] * w


@numba.njit(parallel=True, cache=True)
def joseph_project_2d(img, cos_t, sin_t, center, out):
    """Project one image ``img`` (ny, nx) into ``out`` (n_angles, width), float32."""
    ny, nx = img.shape
    n_angles, width = out.shape
    cx = 0.5 * (nx - 1)
    cy = 0.5 * (ny - 1)
    for a in numba.prange(n_angles):
        c = cos_t[a]
        s = sin_t[a]
        for k in range(width):
            sv = k - center
            acc = 0.0
            if abs(c) >= abs(s):
                w = 1.0 / abs(c)
                # fc(row) = (sv - (row - cy) s) / c + cx
                a0 = (sv + cy * s) / c + cx
                lo, hi = _span(a0, -s / c, nx, ny)
                for row in range(lo, hi + 1):
                    fc = a0 - row * s / c
                    c0 = math.floor(fc)
                    if c0 < -1 or c0 > nx - 1:
                        continue
                    t = fc - c0
                    i0 = int(c0)
                    if i0 >= 0:
                        acc += (1.0 - t) * img[row, i0]
                    if i0 + 1 <= nx - 1:
                        acc += t * img[row, i0 + 1]
            else:
                w = 1.0 / abs(s)
                a0 = (sv + cx * c) / s + cy
                lo, hi = _span(a0, -c / s, ny, nx)
                for col in range(lo, hi + 1):
                    fr = a0 - col * c / s
                    r0 = math.floor(fr)
                    if r0 < -1 or r0 > ny - 1:
                        continue
                    t = fr - r0
                    i0 = int(r0)
                    if i0 >= 0:
                        acc += (1.0 - t) * img[i0, col]
                    if i0 + 1 <= ny - 1:
                        acc += t * img[i0 + 1, col]
            out[a, k] = acc * w


@numba.njit(parallel=True, cache=True)
def paint_ellipses(img, params, ss):
    """Add ellipses to ``img`` (ny, nx), averaging ``ss x ss`` sub-samples per pixel.

    ``params`` rows: value, semi-axis A (px), semi-axis B (px), centre x (px), centre y (px),
    rotation phi (radians), all in the pixel-centred frame of the module docstring.
    """
    ny, nx = img.shape
    cx = 0.5 * (nx - 1)
    cy = 0.5 * (ny - 1)
    inv = 1.0 / (ss * ss)
    for row in numba.prange(ny):
        for col in range(nx):
            total = 0.0
            for e in range(params.shape[0]):
                v, A, B, x0, y0, phi = params[e, 0], params[e, 1], params[e, 2], params[e, 3], params[e, 4], params[e, 5]
                cp = math.cos(phi)
                sp = math.sin(phi)
                y_c = row - cy - y0
                x_c = col - cx - x0
                rmax = max(A, B) + 1.0
                if abs(x_c) > rmax or abs(y_c) > rmax:
                    continue
                hits = 0
                for i in range(ss):
                    dy = (i + 0.5) / ss - 0.5
                    for j in range(ss):
                        dx = (j + 0.5) / ss - 0.5
                        xx = x_c + dx
                        yy = y_c + dy
                        xr = xx * cp + yy * sp
                        yr = -xx * sp + yy * cp
                        if (xr / A) ** 2 + (yr / B) ** 2 <= 1.0:
                            hits += 1
                total += v * hits * inv
            img[row, col] += total
