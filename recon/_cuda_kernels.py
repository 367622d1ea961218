"""CUDA kernels (CuPy RawKernel, float32) mirroring :mod:`recon._cpu_kernels`.

CuPy is imported only inside functions, so this module imports without a GPU.
"""

from __future__ import annotations

import functools

_BACKPROJECT_SRC = r"""
extern "C" __global__
void backproject_linear(const float* __restrict__ qp, const float* __restrict__ cos_t,
                        const float* __restrict__ sin_t, const int n_angles, const int width_p,
                        const float center, const int n, const float scale,
                        float* __restrict__ out)
{
    // qp: (n_angles, width_p) with one zero column on each side of the detector
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= n || col >= n) return;
    const float half = 0.5f * (float)(n - 1);
    const float x = (float)col - half;
    const float y = (float)row - half;
    const int umax = width_p - 1;
    float acc = 0.0f;
    for (int a = 0; a < n_angles; ++a) {
        const float u = x * cos_t[a] + y * sin_t[a] + center + 1.0f;
        if (u >= 0.0f && u <= (float)umax) {
            int i0 = (int)u;
            if (i0 > umax - 1) i0 = umax - 1;
            const float f = u - (float)i0;
            const float* qa = qp + (size_t)a * width_p;
            acc += qa[i0] + f * (qa[i0 + 1] - qa[i0]);
        }
    }
    out[(size_t)row * n + col] = acc * scale;
}
"""

_GRID_SRC = r"""
#include <cupy/complex.cuh>
extern "C" __global__
void grid_polar(const complex<float>* __restrict__ coef, const float* __restrict__ gnu,
                const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                const int n_angles, const int n_k, const int width, const float beta,
                const int g, float* __restrict__ grid)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_angles * n_k) return;
    const int a = (int)(idx / n_k);
    const int k = (int)(idx - (long long)a * n_k);
    const complex<float> c = coef[idx];
    if (c.real() == 0.0f && c.imag() == 0.0f) return;
    const float half_w = 0.5f * (float)width;
    const float gx = gnu[k] * cos_t[a];
    const float gy = gnu[k] * sin_t[a];
    const int mx0 = (int)floorf(gx - half_w) + 1;
    const int my0 = (int)floorf(gy - half_w) + 1;
    float wx[16];
    for (int t = 0; t < width; ++t) {
        float z = ((float)(mx0 + t) - gx) / half_w;
        float z2 = 1.0f - z * z;
        wx[t] = z2 > 0.0f ? expf(beta * (sqrtf(z2) - 1.0f)) : 0.0f;
    }
    for (int ty = 0; ty < width; ++ty) {
        float z = ((float)(my0 + ty) - gy) / half_w;
        float z2 = 1.0f - z * z;
        if (z2 <= 0.0f) continue;
        const float wy = expf(beta * (sqrtf(z2) - 1.0f));
        int row = (my0 + ty) % g;
        if (row < 0) row += g;
        const float cr = c.real() * wy;
        const float ci = c.imag() * wy;
        for (int tx = 0; tx < width; ++tx) {
            int col = (mx0 + tx) % g;
            if (col < 0) col += g;
            float* cell = grid + 2 * ((size_t)row * g + col);
            atomicAdd(cell, cr * wx[tx]);
            atomicAdd(cell + 1, ci * wx[tx]);
        }
    }
}
"""


@functools.cache
def _kernel(name: str):
    import cupy as cp

    src = {"backproject_linear": _BACKPROJECT_SRC, "grid_polar": _GRID_SRC}[name]
    return cp.RawKernel(src, name, options=("--use_fast_math",))


def backproject_gpu(qp, cos_t, sin_t, center: float, n: int, scale: float):
    """Back-project ``qp`` (CuPy float32 (n_angles, width + 2): filtered projections with one zero
    column on each side) -> (n, n) float32; ``center`` in unpadded detector pixels."""
    import cupy as cp

    q = cp.ascontiguousarray(qp, dtype=cp.float32)
    n_angles, width = q.shape
    out = cp.empty((n, n), cp.float32)
    block = (32, 8)
    grid = ((n + block[0] - 1) // block[0], (n + block[1] - 1) // block[1])
    _kernel("backproject_linear")(
        grid,
        block,
        (q, cos_t, sin_t, cp.int32(n_angles), cp.int32(width), cp.float32(center), cp.int32(n),
         cp.float32(scale), out),
    )
    return out


def grid_polar_gpu(coef, gnu, cos_t, sin_t, width: int, beta: float, grid):
    """Spread polar samples onto ``grid`` (CuPy complex64 (G, G), accumulated in place)."""
    import cupy as cp

    if width > 16:
        raise ValueError("kernel width above 16 grid cells is not supported on the GPU")
    coef = cp.ascontiguousarray(coef, dtype=cp.complex64)
    n_angles, n_k = coef.shape
    total = n_angles * n_k
    threads = 256
    blocks = (total + threads - 1) // threads
    _kernel("grid_polar")(
        (blocks,),
        (threads,),
        (coef, gnu, cos_t, sin_t, cp.int32(n_angles), cp.int32(n_k), cp.int32(width),
         cp.float32(beta), cp.int32(grid.shape[0]), grid.view(cp.float32)),
    )
    return grid
