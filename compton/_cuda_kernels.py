"""CUDA kernel (CuPy RawKernel) for HEXITEC frame processing, bit-identical to the numba one.

One thread block per frame (grid-stride over the frames of a chunk). The threads scan the
frame's pixels in storage order, append hits to a per-block list in global scratch and mark
them in a padded hit map; then each hit is handled by one thread: threshold/next-frame and
calibration as in ``_cpu_kernels``, window discrimination by looking at the map, and charge
addition by min-label propagation over 8-connected hits (the label of a cluster is its
smallest pixel index, so the result does not depend on thread order). The cluster's root
thread adds the members' energies in ascending pixel order (as the CPU kernel does) and
records the event. Histogram and counters are global atomics. Compiled with ``--fmad=false``
so ``gradient * v + intercept`` rounds exactly like NumPy/numba.

CuPy is imported only when a GPU accumulator is created.
"""

from __future__ import annotations

import functools

import numpy as np

from ._backend import cupy_or_none
from ._errors import InputError

_SOURCE = r"""
typedef FRAME_T frame_t;
typedef CUT_T cut_t;

__device__ __forceinline__ void record(
    int p, double e, const double* edges, int nbins, double inv_bw,
    unsigned int* hist, unsigned long long* accepted)
{
    atomicAdd(&accepted[p], 1ULL);
    if (!(e >= edges[0] && e < edges[nbins])) return;
    int b = (int)((e - edges[0]) * inv_bw);
    if (b > nbins - 1) b = nbins - 1;
    if (b < 0) b = 0;
    while (b > 0 && e < edges[b]) b -= 1;
    while (b < nbins - 1 && e >= edges[b + 1]) b += 1;
    atomicAdd(&hist[(long long)p * nbins + b], 1u);
}

extern "C" __global__ void hexitec_frames(
    const frame_t* __restrict__ frames, long long n_frames,
    const frame_t* __restrict__ prev, int has_prev, int rows, int cols,
    const int* __restrict__ colmap, const cut_t* __restrict__ cut,
    const double* __restrict__ dark, const double* __restrict__ gain,
    const double* __restrict__ icpt, int calibrate, int next_frame, int mode, int half,
    const double* __restrict__ edges, int nbins, double inv_bw,
    unsigned int* hist, unsigned long long* found, unsigned long long* rejected,
    unsigned long long* accepted, int* scratch_i, double* scratch_e)
{
    __shared__ int s_nh;
    __shared__ int s_changed;
    const int npix = rows * cols;
    const int w = cols + 4;
    const long long map_len = (long long)(rows + 4) * w;
    int* hitmap = scratch_i + (long long)blockIdx.x * (map_len + 3LL * npix);
    int* hit_pix = hitmap + map_len;
    int* hit_pad = hit_pix + npix;
    volatile int* lab = hit_pad + npix;
    double* hit_e = scratch_e + (long long)blockIdx.x * npix;
    const int nbr[8] = {-w - 1, -w, -w + 1, -1, 1, w - 1, w, w + 1};

    for (long long f = blockIdx.x; f < n_frames; f += gridDim.x) {
        if (threadIdx.x == 0) s_nh = 0;
        __syncthreads();
        const frame_t* fr = frames + f * npix;
        for (int i = threadIdx.x; i < npix; i += blockDim.x) {
            frame_t raw = fr[i];
            if (!(raw >= cut[i])) continue;
            int r = i / cols;
            int c = colmap[i - r * cols];
            int p = r * cols + c;
            atomicAdd(&found[p], 1ULL);
            if (next_frame) {
                bool before;
                if (f > 0) before = fr[i - npix] >= cut[i];
                else before = has_prev && prev[i] >= cut[i];
                if (before) { atomicAdd(&rejected[p], 1ULL); continue; }
            }
            double v = (double)raw - dark[i];
            if (calibrate) v = gain[i] * v + icpt[i];
            int slot = atomicAdd(&s_nh, 1);
            int q = (r + 2) * w + c + 2;
            hitmap[q] = slot;
            hit_pix[slot] = p;
            hit_pad[slot] = q;
            hit_e[slot] = v;
            lab[slot] = p;
        }
        __syncthreads();
        const int nh = s_nh;
        if (mode == 0) {
            for (int k = threadIdx.x; k < nh; k += blockDim.x)
                record(hit_pix[k], hit_e[k], edges, nbins, inv_bw, hist, accepted);
        } else if (mode == 1) {
            for (int k = threadIdx.x; k < nh; k += blockDim.x) {
                int q0 = hit_pad[k];
                int n_in = 0;
                for (int dr = -half; dr <= half; ++dr)
                    for (int dc = -half; dc <= half; ++dc)
                        n_in += hitmap[q0 + dr * w + dc] >= 0;
                if (n_in == 1) record(hit_pix[k], hit_e[k], edges, nbins, inv_bw, hist, accepted);
                else atomicAdd(&rejected[hit_pix[k]], 1ULL);
            }
        } else {
            // min-label propagation: every hit ends with the smallest pixel index of its cluster
            while (true) {
                if (threadIdx.x == 0) s_changed = 0;
                __syncthreads();
                for (int k = threadIdx.x; k < nh; k += blockDim.x) {
                    int m = lab[k];
                    int q0 = hit_pad[k];
                    for (int j = 0; j < 8; ++j) {
                        int s = hitmap[q0 + nbr[j]];
                        if (s >= 0) { int l = lab[s]; if (l < m) m = l; }
                    }
                    if (m < lab[k]) { lab[k] = m; s_changed = 1; }
                }
                __syncthreads();
                if (s_changed == 0) break;
                __syncthreads();
            }
            for (int k = threadIdx.x; k < nh; k += blockDim.x) {
                int root = hit_pix[k];
                if (lab[k] != root) continue;  // not the cluster's smallest pixel
                // walk the members in ascending pixel order, summing and keeping the largest
                double total = 0.0;
                int best = -1;
                int last = -1;
                while (true) {
                    int next = -1, nk = -1;
                    for (int j = 0; j < nh; ++j) {
                        int pj = hit_pix[j];
                        if (lab[j] == root && pj > last && (next < 0 || pj < next)) { next = pj; nk = j; }
                    }
                    if (nk < 0) break;
                    total += hit_e[nk];
                    if (best < 0 || hit_e[nk] > hit_e[best]) best = nk;
                    last = next;
                }
                for (int j = 0; j < nh; ++j)
                    if (lab[j] == root && j != best) atomicAdd(&rejected[hit_pix[j]], 1ULL);
                record(hit_pix[best], total, edges, nbins, inv_bw, hist, accepted);
            }
        }
        __syncthreads();
        for (int k = threadIdx.x; k < nh; k += blockDim.x) hitmap[hit_pad[k]] = -1;
        __syncthreads();
    }
}
"""

_THREADS = 256
_MAX_BLOCKS = 1024


@functools.cache
def _kernel(frame_t: str, cut_t: str):
    cp = cupy_or_none()
    if cp is None:
        raise InputError("no CUDA GPU is usable (is CuPy installed?)")
    src = f"#define FRAME_T {frame_t}\n#define CUT_T {cut_t}\n" + _SOURCE
    return cp.RawKernel(src, "hexitec_frames", options=("--fmad=false",))


class GpuAccumulator:
    """Streaming state of the CUDA kernel: device histogram, counters and the carried frame."""

    device = "gpu"

    def __init__(self, st, dtype):
        from .frames import threshold_cut

        cp = cupy_or_none()
        if cp is None:
            raise InputError("device='gpu' was requested but no CUDA GPU is usable")
        self.cp = cp
        self.st = st
        npix = st.rows * st.cols
        self.npix = npix
        self.nbins = st.edges.size - 1
        self.integer = np.issubdtype(np.dtype(dtype), np.integer)
        cut = threshold_cut(st.dark, st.threshold, self.integer)
        self.cut = cut
        self.hist = cp.zeros(npix * self.nbins, cp.uint32)
        self.found = cp.zeros(npix, cp.uint64)
        self.rejected = cp.zeros(npix, cp.uint64)
        self.accepted = cp.zeros(npix, cp.uint64)
        self.edges = cp.asarray(st.edges)
        self.inv_bw = float(1.0 / (st.edges[1] - st.edges[0]))
        map_len = (st.rows + 4) * (st.cols + 4)
        self.scratch_i = cp.full(_MAX_BLOCKS * (map_len + 3 * npix), -1, cp.int32)
        self.scratch_e = cp.zeros(_MAX_BLOCKS * npix, cp.float64)
        self.prev = None
        self.prev_key = None
        self._storage = {}

    def _storage_arrays(self, colmap, fast: bool):
        cp, st = self.cp, self.st
        key = (None if colmap is None else np.asarray(colmap).tobytes(), fast)
        if key not in self._storage:
            cm = np.arange(st.cols) if colmap is None else np.asarray(colmap, np.int64)
            cut = np.ascontiguousarray(self.cut[:, cm]).ravel()
            if fast:  # uint16 frames: compare against an int64 cut
                cut = cp.asarray(cut.astype(np.int64))
            else:  # frames as float64 on the device: the cut as float64 is exact
                cut = cp.asarray(cut.astype(np.float64))
            self._storage[key] = (
                cp.asarray(cm.astype(np.int32)),
                cut,
                cp.asarray(np.ascontiguousarray(st.dark[:, cm]).ravel()),
                cp.asarray(np.ascontiguousarray(st.gain[:, cm]).ravel()),
                cp.asarray(np.ascontiguousarray(st.icpt[:, cm]).ravel()),
            )
        return self._storage[key]

    def add(self, chunk, colmap=None):
        cp, st = self.cp, self.st
        if np.issubdtype(np.dtype(chunk.dtype), np.integer) != self.integer:
            raise InputError("frames: chunks mix integer and floating-point dtypes")
        key = None if colmap is None else np.asarray(colmap).tobytes()
        if self.prev is not None and key != self.prev_key:
            raise InputError("frames: chunks of one stream must share one column order")
        d = cp.asarray(chunk).reshape(chunk.shape[0], self.npix)
        fast = d.dtype == cp.uint16
        if not fast:
            d = d.astype(cp.float64)
        d = cp.ascontiguousarray(d)
        cm, cut, dark, gain, icpt = self._storage_arrays(colmap, fast)
        has_prev = self.prev is not None
        prev = self.prev.astype(d.dtype) if has_prev else d[0]
        n = d.shape[0]
        kernel = _kernel("unsigned short", "long long") if fast else _kernel("double", "double")
        blocks = int(min(n, _MAX_BLOCKS))
        kernel(
            (blocks,), (_THREADS,),
            (d, np.int64(n), prev, np.int32(has_prev), np.int32(st.rows), np.int32(st.cols), cm,
             cut, dark, gain, icpt, np.int32(st.calibrate), np.int32(st.next_frame),
             np.int32(st.mode), np.int32(st.half), self.edges, np.int32(self.nbins),
             np.float64(self.inv_bw), self.hist, self.found, self.rejected, self.accepted,
             self.scratch_i, self.scratch_e),
        )
        self.prev = d[-1].copy()
        self.prev_key = key

    def n_found(self) -> int:
        return int(self.found.sum())

    def finish(self):
        st = self.st
        counts = self.hist.get().reshape(st.rows, st.cols, self.nbins)
        shape = (st.rows, st.cols)
        return (
            counts,
            self.accepted.get().astype(np.int64).reshape(shape),
            self.rejected.get().astype(np.int64).reshape(shape),
        )
