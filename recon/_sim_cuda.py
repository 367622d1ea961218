"""CUDA (CuPy RawKernel) version of Joseph's projector in :mod:`recon._sim_kernels`.

One thread per (angle, slice, detector column) walks its ray exactly as the numba kernel
does, so CPU and GPU results agree to float32 rounding. CuPy is imported only when called.
"""

from __future__ import annotations

import functools

import numpy as np

_SOURCE = r"""
extern "C" __global__ void joseph_project(
    const float* __restrict__ vol,     // (nz, ny, nx)
    const double* __restrict__ cos_t,
    const double* __restrict__ sin_t,
    const double center,
    const int nz, const int ny, const int nx,
    const int n_angles, const int width,
    float* __restrict__ out)           // (n_angles, nz, width)
{
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n_angles * nz * width;
    if (idx >= total) return;
    int k = (int)(idx % width);
    int z = (int)((idx / width) % nz);
    int a = (int)(idx / ((long long)width * nz));
    double c = cos_t[a], s = sin_t[a];
    double sv = k - center;
    double cx = 0.5 * (nx - 1), cy = 0.5 * (ny - 1);
    const float* img = vol + (long long)z * ny * nx;
    double acc = 0.0, w;
    if (fabs(c) >= fabs(s)) {
        w = 1.0 / fabs(c);
        for (int row = 0; row < ny; ++row) {
            double y = row - cy;
            double fc = (sv - y * s) / c + cx;
            double c0 = floor(fc);
            if (c0 < -1.0 || c0 > nx - 1) continue;
            double t = fc - c0;
            int i0 = (int)c0;
            if (i0 >= 0) acc += (1.0 - t) * img[(long long)row * nx + i0];
            if (i0 + 1 <= nx - 1) acc += t * img[(long long)row * nx + i0 + 1];
        }
    } else {
        w = 1.0 / fabs(s);
        for (int col = 0; col < nx; ++col) {
            double x = col - cx;
            double fr = (sv - x * c) / s + cy;
            double r0 = floor(fr);
            if (r0 < -1.0 || r0 > ny - 1) continue;
            double t = fr - r0;
            int i0 = (int)r0;
            if (i0 >= 0) acc += (1.0 - t) * img[(long long)i0 * nx + col];
            if (i0 + 1 <= ny - 1) acc += t * img[(long long)(i0 + 1) * nx + col];
        }
    }
    out[idx] = (float)(acc * w);
}
"""


@functools.cache
def _kernel():
    import cupy as cp

    return cp.RawKernel(_SOURCE, "joseph_project")


def joseph_project_gpu(vol3, theta: np.ndarray, center: float, width: int):
    """Project a CuPy volume ``(nz, ny, nx)`` to sinograms ``(n_angles, nz, width)``, float32."""
    import cupy as cp

    vol = cp.ascontiguousarray(vol3, dtype=cp.float32)
    nz, ny, nx = (int(v) for v in vol.shape)
    cos_t = cp.asarray(np.cos(theta), dtype=cp.float64)
    sin_t = cp.asarray(np.sin(theta), dtype=cp.float64)
    out = cp.empty((theta.size, nz, width), cp.float32)
    total = out.size
    threads = 256
    blocks = (total + threads - 1) // threads
    _kernel()(
        (blocks,), (threads,),
        (vol, cos_t, sin_t, np.float64(center), np.int32(nz), np.int32(ny), np.int32(nx),
         np.int32(theta.size), np.int32(width), out),
    )
    return out
