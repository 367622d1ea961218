"""CUDA kernel (CuPy RawKernel) for the 3 x 3 x 3 median, exactly ``scipy.ndimage.median_filter``.

One thread per output voxel keeps 15 of its 27 neighbours in registers and runs a forgetful
selection: take the minimum and the maximum out of the set, load the next neighbour, repeat
until the 27 are seen, then the median of the last three is the median of all 27. Only
comparisons are used, so the result is one of the input values, bit for bit the order
statistic that SciPy returns (NaN-free input). Edges: for a 3-wide window SciPy's "reflect"
mode repeats the edge voxel, which is what clamping the neighbour index does.

Work: 195 compare-exchanges per voxel, 27 loads (served by L1/L2: compulsory traffic is
one read and one write per voxel). CuPy is imported only when the kernel is used.
"""

from __future__ import annotations

import functools

import numpy as np

_SOURCE = r"""
typedef VALUE_T value_t;

__device__ __forceinline__ void cswap_min(value_t& a, value_t& b) {
    // a <- min, b <- max
    if (b < a) { value_t t = a; a = b; b = t; }
}

extern "C" __global__ void median3(const value_t* __restrict__ in, value_t* __restrict__ out,
                                   const int nz, const int ny, const int nx)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int z = blockIdx.z * blockDim.z + threadIdx.z;
    if (x >= nx || y >= ny || z >= nz) return;
    const long long xs[3] = {x > 0 ? x - 1 : 0, x, x + 1 < nx ? x + 1 : nx - 1};
    const long long ys[3] = {y > 0 ? y - 1 : 0, y, y + 1 < ny ? y + 1 : ny - 1};
    const long long zs[3] = {z > 0 ? z - 1 : 0, z, z + 1 < nz ? z + 1 : nz - 1};
#define LOAD(k) in[(zs[(k) / 9] * ny + ys[((k) / 3) % 3]) * (long long)nx + xs[(k) % 3]]
    value_t v[15];
#pragma unroll
    for (int k = 0; k < 15; ++k) v[k] = LOAD(k);
#pragma unroll
    for (int step = 0; step < 12; ++step) {
        // the set is v[step..14]: move its minimum to v[step], its maximum to v[14]
#pragma unroll
        for (int i = step + 1; i < 15; ++i) cswap_min(v[step], v[i]);
#pragma unroll
        for (int i = step + 1; i < 14; ++i) cswap_min(v[i], v[14]);
        // forget both: the minimum by moving on, the maximum by loading the next neighbour
        v[14] = LOAD(15 + step);
    }
#undef LOAD
    cswap_min(v[12], v[13]);
    cswap_min(v[13], v[14]);
    cswap_min(v[12], v[13]);
    out[((long long)z * ny + y) * (long long)nx + x] = v[13];
}
"""

#: threads per block (x, y, z): 32 consecutive voxels of a row share cache lines
BLOCK = (32, 4, 2)


@functools.cache
def _kernel(value_t: str):
    import cupy as cp

    return cp.RawKernel(_SOURCE.replace("VALUE_T", value_t), "median3")


def median3_gpu(volume):
    """3 x 3 x 3 median of a C-contiguous float32/float64 CuPy volume (reflecting edges).

    Parameters
    ----------
    volume : cupy.ndarray, (z, y, x), float32 or float64
        Volume on the GPU (a.u.).

    Returns
    -------
    cupy.ndarray
        Same shape and dtype: bitwise ``scipy.ndimage.median_filter(volume, size=3,
        mode="reflect")`` for NaN-free input.
    """
    import cupy as cp

    x = cp.ascontiguousarray(volume)
    if x.ndim != 3 or x.dtype not in (np.float32, np.float64):
        raise ValueError(f"median3_gpu needs a 3-D float32/float64 volume, got {x.ndim}-D {x.dtype}")
    nz, ny, nx = (int(s) for s in x.shape)
    out = cp.empty_like(x)
    if x.size == 0:
        return out
    grid = tuple(-(-n // b) for n, b in zip((nx, ny, nz), BLOCK))
    kernel = _kernel("float" if x.dtype == np.float32 else "double")
    kernel(grid, BLOCK, (x, out, np.int32(nz), np.int32(ny), np.int32(nx)))
    return out
