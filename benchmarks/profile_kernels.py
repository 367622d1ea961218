"""Profile the hot kernels against the limits of the device they run on (issue 9).

Usage::

    python benchmarks/profile_kernels.py                 # CPU (or the GPU when one is usable)
    python benchmarks/profile_kernels.py --device gpu    # the GPU columns of docs/performance.md
    python benchmarks/profile_kernels.py --quick         # small sizes, a smoke run (< 30 s on 2 cores)
    python benchmarks/profile_kernels.py --only median3,classify

For every hot kernel the public (or kernel-level private) function is called on a realistic
size and timed (best of a few runs after a warm-up; CUDA events on the GPU). A work model
derived from the kernel's algorithm gives

* ``bytes``: the compulsory main-memory traffic (each input read once, each output written
  once; caches assumed perfect), so ``bytes / seconds`` is a lower bound of the bandwidth used;
* ``flops``: arithmetic operations (an FMA counts 2, a comparison 1);
* ``updates``: the kernel's natural unit of work (interpolated back-projection updates,
  gridding spreads, histogram events, voxels, union-find neighbour look-ups).

The device's limits are measured in the same run, before and after the kernels (the larger
of the two is kept, since other users' load only lowers them): main-memory bandwidth with
STREAM-style copy and triad loops (NumPy and a numba parallel loop; the best is the limit) and
a compute roof from a float32 fused-multiply-add loop that keeps enough independent chains in
registers to fill the vector units. On a GPU the copy bandwidth is measured with CuPy and the theoretical
peaks come from the device attributes. Each kernel's ``fraction`` is its achieved performance
over the roofline ``min(compute roof, arithmetic intensity x bandwidth)``, i.e. the larger of
its bandwidth and compute fractions. The fixed cost per call (Python set-up, thread pools,
synchronisations) is estimated from a second run at a quarter to an eighth of the work: with
``t = c + w W`` at two amounts of work ``W``, ``c`` is the fixed cost.

"Bound by" is judged from these numbers: a fixed cost above 30 % of the run -> Python
overhead; a roofline fraction of at least 0.5 -> memory or compute (whichever fraction is
larger); for a CPU kernel whose inner loop is scalar code, at least half of the one-lane
ceiling (compute roof / float32 SIMD lanes) -> compute (scalar); otherwise the kernel sits far
below every roof and is bound by latency (random access, atomics, dependent loads, branches:
the kernel's own limiter is named).

Writes ``<out>/profile-<host>[-gpu][-quick].json``, ``.md`` and a roofline plot ``.png``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: Flops of one linear-interpolation back-projection update: u = base + col c (FMA), the
#: fraction f = u - i0, the difference q1 - q0, the interpolation q0 + f d (FMA), the sum.
BACKPROJECTION_FLOPS_PER_UPDATE = 7
#: Comparisons per voxel of the 3x3x3 median, CUDA kernel and numba kernel alike (forgetful
#: selection, ``segment._cuda_median`` and ``segment._seg_median``): 12 steps of (14 - step) +
#: (13 - step) compare-exchanges, 3 more at the end, each a min and a max.
MEDIAN3_GPU_COMPARISONS_PER_VOXEL = 2 * (sum(27 - 2 * step for step in range(12)) + 3)
MEDIAN3_COMPARISONS_PER_VOXEL = MEDIAN3_GPU_COMPARISONS_PER_VOXEL
#: Bytes per pixel and PCG iteration of the current solver (float64), a fused lower bound:
#: two operator applications (forward real FFT 8 read + 8 write, inverse 8 + 4 symbol read + 8
#: write, mask 8 read) and three vector updates x += a p, r -= a Ap, p = z + b p (24 each).
PCG_BYTES_PER_PIXEL_ITERATION = 2 * (8 + 8 + 8 + 4 + 8 + 8) + 3 * 24
#: Flops per pixel and PCG iteration besides the FFTs (symbol and mask products, dot
#: products, vector updates).
PCG_FLOPS_PER_PIXEL_ITERATION = 2 * (1 + 1) + 3 * 2 + 3 * 2
#: Fixed cost over run time above which a kernel is judged bound by Python overhead.
OVERHEAD_LIMIT = 0.3
#: Roofline fraction from which a kernel is judged bound by that roof.
ROOF_LIMIT = 0.5


# ------------------------------------------------------------------------------ work models


_RETURNS = """
    Returns
    -------
    dict
        ``updates`` (count), ``update_unit`` (their name), ``bytes`` (compulsory main-memory
        traffic, B) and ``flops`` (operations; an FMA counts 2, a comparison 1).
"""


def _doc(fn):
    fn.__doc__ = fn.__doc__.rstrip() + "\n" + _RETURNS
    return fn


def stream_bytes(kind: str, n_elements: int, *, itemsize: int = 8) -> int:
    """Bytes moved by one STREAM kernel over arrays of ``n_elements`` items.

    STREAM convention: ``copy`` (a = b) reads one array and writes one (2 arrays), ``triad``
    (a = b + s c) reads two and writes one (3 arrays); write-allocate traffic is not counted.

    Parameters
    ----------
    kind : {"copy", "triad"}
        The STREAM kernel.
    n_elements : int
        Items per array.
    itemsize : int
        Bytes per item (8 for float64).

    Returns
    -------
    int
        Bytes (B).

    Examples
    --------
    >>> stream_bytes("copy", 1000), stream_bytes("triad", 1000, itemsize=4)
    (16000, 12000)
    """
    arrays = {"copy": 2, "triad": 3}
    if kind not in arrays:
        raise ValueError(f"STREAM kind must be one of {sorted(arrays)}, got {kind!r}")
    return arrays[kind] * int(n_elements) * int(itemsize)


@_doc
def backprojection_work(n_px: int, n_angles: int, width_px: int) -> dict:
    """Linear-interpolation back-projection of one ``n_px`` x ``n_px`` slice (float32).

    updates = n_px^2 x n_angles (each pixel gathers one interpolated value per angle);
    bytes = the filtered projections read once (n_angles x (width_px + 2) x 4 B, one zero
    column each side) + the slice written once (n_px^2 x 4 B); flops = 7 per update.

    Parameters
    ----------
    n_px : int
        Slice edge (pixels).
    n_angles : int
        Projection angles.
    width_px : int
        Detector width (pixels).
    """
    updates = n_px * n_px * n_angles
    return {
        "updates": updates,
        "update_unit": "updates",
        "bytes": 4 * n_angles * (width_px + 2) + 4 * n_px * n_px,
        "flops": BACKPROJECTION_FLOPS_PER_UPDATE * updates,
    }


@_doc
def gridding_work(n_angles: int, n_k: int, kernel_width: int, grid_size: int) -> dict:
    """Spreading ``n_angles x n_k`` complex64 polar samples onto a complex64 Cartesian grid.

    updates = samples x kernel_width^2 spreads; bytes = the samples read once (8 B each) +
    every grid cell read and written once (16 B); flops = 4 per spread (two FMAs, real and
    imaginary) + 6 per tap and sample for the two interpolated weight vectors (2 x 3 x width).

    Parameters
    ----------
    n_angles : int
        Radial lines (projection angles).
    n_k : int
        Samples per radial line.
    kernel_width : int
        Spreading kernel width (grid cells).
    grid_size : int
        Grid edge (cells).
    """
    samples = n_angles * n_k
    updates = samples * kernel_width * kernel_width
    return {
        "updates": updates,
        "update_unit": "spreads",
        "bytes": 8 * samples + 16 * grid_size * grid_size,
        "flops": 4 * updates + 6 * kernel_width * samples,
    }


@_doc
def fft2_work(size: int) -> dict:
    """Complex64 2-D FFT of ``size`` x ``size`` points: 5 N log2 N flops (N = size^2), one
    read and one write of 8 B per point; updates = points.

    Parameters
    ----------
    size : int
        Grid edge (points).
    """
    n = size * size
    return {"updates": n, "update_unit": "points", "bytes": 16 * n, "flops": 5.0 * n * math.log2(n)}


@_doc
def hexitec_work(n_frames: int, n_pixels: int, n_events: int, *, n_bins: int, itemsize: int = 2) -> dict:
    """HEXITEC frames -> per-pixel histograms.

    bytes = every frame read once (n_frames x n_pixels x itemsize) + the histogram written once
    (n_pixels x n_bins x 4 B); updates = events (pixels above threshold, each a counter and
    histogram increment at a data-dependent address); flops = one comparison per pixel and
    frame + 4 per event (dark subtraction, calibration FMA, bin search).

    Parameters
    ----------
    n_frames : int
        Frames.
    n_pixels : int
        Pixels per frame (6400 for 80 x 80).
    n_events : int
        Pixels above threshold over all frames.
    n_bins : int
        Histogram bins per pixel.
    itemsize : int
        Bytes per raw value (2 for uint16 ADU).
    """
    return {
        "updates": int(n_events),
        "update_unit": "events",
        "bytes": n_frames * n_pixels * itemsize + n_pixels * n_bins * 4,
        "flops": n_frames * n_pixels + 4 * int(n_events),
    }


@_doc
def median3_work(shape, *, itemsize: int = 4, comparisons_per_voxel: int = MEDIAN3_COMPARISONS_PER_VOXEL) -> dict:
    """3x3x3 median: each voxel read once and written once (the 27 reads per window come from
    cache); ``comparisons_per_voxel`` counted as flops; updates = voxels.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (voxels).
    itemsize : int
        Bytes per voxel (4 for float32).
    comparisons_per_voxel : int
        390 for the forgetful selection of both kernels (CPU and GPU).
    """
    n = int(np.prod(shape))
    return {"updates": n, "update_unit": "voxels", "bytes": 2 * itemsize * n,
            "flops": comparisons_per_voxel * n}


@_doc
def classify_work(shape, n_thresholds: int, *, itemsize: int = 4) -> dict:
    """Threshold classification: read each voxel, write a uint8 class (1 B); a binary search
    of ceil(log2(n_thresholds + 1)) comparisons per voxel; updates = voxels.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (voxels).
    n_thresholds : int
        Thresholds (classes - 1).
    itemsize : int
        Bytes per voxel (4 for float32).
    """
    n = int(np.prod(shape))
    return {"updates": n, "update_unit": "voxels", "bytes": (itemsize + 1) * n,
            "flops": math.ceil(math.log2(n_thresholds + 1)) * n}


@_doc
def stripping_work(shape, connectivity: int) -> dict:
    """Virtual stripping (depth binning + union-find of the superlevel sets).

    bytes = the float64 thickness map read once (8 B/pixel) and one int32 depth bin per pixel
    written and read back (8 B/pixel); updates = pixels x connectivity neighbour look-ups
    (each added pixel looks at its neighbours' sets); flops = one per look-up + 4 per pixel
    for the depth bin.

    Parameters
    ----------
    shape : tuple of int
        Map shape (pixels).
    connectivity : {4, 8}
        Neighbours per pixel.
    """
    n = int(np.prod(shape))
    return {"updates": n * connectivity, "update_unit": "look-ups", "bytes": 16 * n,
            "flops": n * connectivity + 4 * n}


@_doc
def pcg_work(shape, iterations: int) -> dict:
    """FFT-preconditioned conjugate gradients of the current solver (float64 maps).

    Per iteration (plus one for the initial residual and preconditioner): four real 2-D FFTs
    of 2.5 N log2 N flops (N = pixels) + ``PCG_FLOPS_PER_PIXEL_ITERATION`` flops per pixel,
    and the fused lower bound of ``PCG_BYTES_PER_PIXEL_ITERATION`` bytes per pixel;
    updates = pixel-iterations.

    Parameters
    ----------
    shape : tuple of int
        Map shape (pixels), after any mirroring.
    iterations : int
        PCG iterations done.
    """
    n = int(np.prod(shape))
    it = int(iterations) + 1
    return {
        "updates": n * it,
        "update_unit": "pixel-iterations",
        "bytes": PCG_BYTES_PER_PIXEL_ITERATION * n * it,
        "flops": it * (4 * 2.5 * n * math.log2(n) + PCG_FLOPS_PER_PIXEL_ITERATION * n),
    }


def assess(work: dict, seconds: float, limits: dict, *, fixed_seconds: float = 0.0, limiter: str = "") -> dict:
    """Achieved rates, fractions of the device's roofs and the "bound by" judgement.

    Parameters
    ----------
    work : dict
        ``bytes``, ``flops``, ``updates`` and ``update_unit`` from a work model.
    seconds : float
        Best measured time of the run (s).
    limits : dict
        ``bandwidth_gbs`` (GB/s) and ``compute_gflops`` (G flop/s) of the device; optionally
        ``scalar_gflops``, the ceiling of code that is not vectorised (one SIMD lane, CPU).
    fixed_seconds : float
        Estimated fixed cost per call (s), from a run at less work.
    limiter : str
        What bounds the kernel when it is far from both roofs (e.g. "random histogram increments").

    Returns
    -------
    dict
        ``achieved_gbs``, ``achieved_gflops``, ``achieved_gups`` (G updates/s),
        ``bandwidth_fraction``, ``compute_fraction``, ``scalar_fraction`` (None without a scalar
        ceiling), ``fraction`` (of the roofline),
        ``limit`` (the roof the fraction refers to, with its value), ``bound`` and ``why``.
    """
    gbs = work["bytes"] / seconds / 1e9
    gflops = work["flops"] / seconds / 1e9
    fb = gbs / limits["bandwidth_gbs"]
    fc = gflops / limits["compute_gflops"]
    fraction = max(fb, fc)
    intensity = work["flops"] / work["bytes"]
    attainable = min(limits["compute_gflops"], intensity * limits["bandwidth_gbs"])
    roof = "memory" if intensity * limits["bandwidth_gbs"] < limits["compute_gflops"] else "compute"
    overhead = max(0.0, fixed_seconds) / seconds
    scalar = limits.get("scalar_gflops")
    fs = gflops / scalar if scalar else None
    if overhead > OVERHEAD_LIMIT:
        bound = "Python overhead"
        why = f"fixed cost {1e3 * fixed_seconds:.3g} ms per call = {100 * overhead:.0f} % of the run"
    elif fraction >= ROOF_LIMIT:
        bound = "memory" if fb >= fc else "compute"
        why = f"{100 * fraction:.0f} % of the {bound} roof"
    elif fs is not None and fs >= ROOF_LIMIT:
        bound = "compute (scalar)"
        why = (f"{100 * fs:.0f} % of the one-lane FMA ceiling ({scalar:.3g} Gflop/s), {100 * fc:.1f} % "
               "of the vector roof: the code uses few of the SIMD lanes")
    else:
        bound = "latency"
        why = (f"{100 * fb:.1f} % of bandwidth, {100 * fc:.1f} % of compute"
               + (f": {limiter}" if limiter else ""))
    return {
        "achieved_gbs": gbs,
        "achieved_gflops": gflops,
        "achieved_gups": work["updates"] / seconds / 1e9,
        "arithmetic_intensity": intensity,
        "roofline_gflops": attainable,
        "roofline_roof": roof,
        "bandwidth_fraction": fb,
        "compute_fraction": fc,
        "scalar_fraction": fs,
        "fraction": fraction,
        "limit": (f"{limits['bandwidth_gbs']:.1f} GB/s" if fb >= fc else f"{limits['compute_gflops']:.0f} Gflop/s"),
        "overhead_fraction": overhead,
        "bound": bound,
        "why": why,
    }


def fixed_cost(t_small: float, w_small: float, t_full: float, w_full: float) -> float:
    """Fixed cost ``c`` (s) of ``t = c + w W`` through two runs (work ``w_small`` < ``w_full``).

    Examples
    --------
    >>> round(fixed_cost(0.1 + 1.0, 1.0, 0.1 + 8.0, 8.0), 12)
    0.1
    """
    if w_full <= w_small:
        return 0.0
    slope = (t_full - t_small) / (w_full - w_small)
    return t_small - slope * w_small


# ------------------------------------------------------------------------------ timing


class Timer:
    """Best-of-``repeats`` timing after one warm-up; CUDA events and a synchronise on the GPU.

    Short kernels are repeated until ``min_total_s`` seconds have been timed (at most 50
    runs), so that one unlucky run on a shared machine does not decide their time.
    """

    def __init__(self, device: str, repeats: int, *, min_total_s: float = 0.3):
        self.device = device
        self.repeats = repeats
        self.min_total_s = min_total_s
        self.cpu_seconds = None  # process CPU time (all threads) of the best CPU run

    def _runs(self):
        """Yield run indices until ``repeats`` runs and ``min_total_s`` seconds are done."""
        t0 = time.perf_counter()
        i = 0
        while i < self.repeats or (time.perf_counter() - t0 < self.min_total_s and i < 50):
            yield i
            i += 1

    def __call__(self, fn) -> float:
        out = fn()  # warm-up: JIT compilation, FFT plans, kernel loading
        del out
        best = math.inf
        if self.device == "gpu":
            import cupy as cp

            cp.cuda.Device().synchronize()
            for _ in self._runs():
                start, end = cp.cuda.Event(), cp.cuda.Event()
                start.record()
                fn()
                end.record()
                end.synchronize()
                best = min(best, cp.cuda.get_elapsed_time(start, end) / 1e3)
            return best
        for _ in self._runs():
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            wall = time.perf_counter() - t0
            if wall < best:
                best, self.cpu_seconds = wall, time.process_time() - c0
        return best


# ------------------------------------------------------------------------------ device limits


@functools.cache
def _numba_stream():
    import numba

    # not cached on disk: this file runs both as __main__ and as an imported module
    @numba.njit(parallel=True, fastmath=True)
    def copy(a, b):
        for i in numba.prange(a.size):
            a[i] = b[i]

    @numba.njit(parallel=True, fastmath=True)
    def triad(a, b, c, s):
        for i in numba.prange(a.size):
            a[i] = b[i] + s * c[i]

    return copy, triad


@functools.cache
def _numba_fma():
    import numba

    @numba.njit(parallel=True, fastmath=True)
    def fma_loop(n_iter, a, b, out):
        # 128 independent float32 chains per task: enough to fill the vector FMA pipes
        for t in numba.prange(out.shape[0]):
            v = np.empty(128, np.float32)
            for j in range(128):
                v[j] = np.float32(j) * np.float32(1e-3)
            for _ in range(n_iter):
                for j in range(128):
                    v[j] = v[j] * a + b
            out[t] = v.sum()

    return fma_loop


def simd_lanes_f32() -> int:
    """float32 lanes of the widest vector unit the CPU reports (AVX-512 16, AVX2 8, else 4)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        return 4
    words = set(flags.split())
    if "avx512f" in words:
        return 16
    if "avx2" in words or "avx" in words:
        return 8
    return 4


def _cpu_stream(n: int, timer: Timer) -> dict:
    """STREAM bandwidths (GB/s) over float64 arrays of ``n`` elements (freed on return)."""
    a = np.zeros(n)
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    copy, triad = _numba_stream()
    return {
        "numpy copy": stream_bytes("copy", n) / timer(lambda: np.copyto(a, b)) / 1e9,
        "numba copy": stream_bytes("copy", n) / timer(lambda: copy(a, b)) / 1e9,
        "numba triad": stream_bytes("triad", n) / timer(lambda: triad(a, b, c, 3.0)) / 1e9,
    }


def cpu_limits(*, quick: bool) -> dict:
    """Measured CPU memory bandwidth (STREAM copy/triad, NumPy and numba) and float32 FMA roof.

    Arrays of float64 are at least 2 x (quick) or 4 x the last-level cache so that the
    traffic goes to main memory.
    """
    import numba

    n = (12 if quick else 24) * 2**20  # elements: 96 or 192 MiB per array
    timer = Timer("cpu", 3 if quick else 5)
    stream = _cpu_stream(n, timer)
    fma = _numba_fma()
    out = np.zeros(4 * numba.get_num_threads(), np.float32)
    n_iter = 500_000 if quick else 2_000_000  # 0.5 or 2 G FMAs per task: launch costs vanish
    sec = timer(lambda: fma(n_iter, np.float32(0.999), np.float32(1e-4), out))
    gflops = 2 * out.size * n_iter * 128 / sec / 1e9  # an FMA is 2 flops
    best = max(stream, key=stream.get)
    lanes = simd_lanes_f32()
    return {
        "bandwidth_gbs": stream[best],
        "bandwidth_source": f"STREAM {best} (best of {', '.join(f'{k} {v:.1f}' for k, v in stream.items())} GB/s)",
        "stream_gbs": stream,
        "stream_array_mib": n * 8 / 2**20,
        "compute_gflops": gflops,
        "compute_source": f"numba float32 FMA loop, {numba.get_num_threads()} threads, 128 chains per thread",
        "simd_lanes_f32": lanes,
        "scalar_gflops": gflops / lanes,
        "threads": numba.get_num_threads(),
    }


_GPU_FMA_SRC = r"""
extern "C" __global__ void fma_roof(float* out, const int n_iter, const float a, const float b)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float x0 = i * 1e-7f, x1 = x0 + 1e-3f, x2 = x0 + 2e-3f, x3 = x0 + 3e-3f;
    float x4 = x0 + 4e-3f, x5 = x0 + 5e-3f, x6 = x0 + 6e-3f, x7 = x0 + 7e-3f;
    for (int k = 0; k < n_iter; ++k) {
        x0 = fmaf(x0, a, b); x1 = fmaf(x1, a, b); x2 = fmaf(x2, a, b); x3 = fmaf(x3, a, b);
        x4 = fmaf(x4, a, b); x5 = fmaf(x5, a, b); x6 = fmaf(x6, a, b); x7 = fmaf(x7, a, b);
    }
    out[i] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
}
"""

#: FP32 lanes per streaming multiprocessor by compute capability (major, minor).
_FP32_PER_SM = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128}


def _gpu_copy(cp, n: int, timer: Timer) -> float:
    """CuPy device-to-device copy bandwidth (GB/s) over float64 arrays of ``n`` elements."""
    a = cp.zeros(n)
    b = cp.ones(n)
    return stream_bytes("copy", n) / timer(lambda: cp.copyto(a, b)) / 1e9


def gpu_limits(*, quick: bool) -> dict:
    """Measured CuPy device-to-device copy bandwidth and FMA roof, with the theoretical peaks
    from the device attributes (memory clock x bus width x 2; SMs x FP32 lanes x 2 x clock)."""
    import cupy as cp

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]

    attrs = dev.attributes  # CUDA 13 dropped the clock fields from cudaDeviceProp; attributes remain

    def attr(key: str, alt: str):
        value = props.get(key)
        return value if value else attrs.get(alt)

    mem_clock_khz = attr("memoryClockRate", "MemoryClockRate")
    bus_bits = attr("memoryBusWidth", "GlobalMemoryBusWidth")
    clock_khz = attr("clockRate", "ClockRate")
    sms = attr("multiProcessorCount", "MultiProcessorCount")
    cc = (props["major"], props["minor"])
    lanes = _FP32_PER_SM.get(cc, 128)
    peak_bw = mem_clock_khz * 1e3 * bus_bits / 8 * 2 / 1e9 if mem_clock_khz and bus_bits else None
    peak_flops = sms * lanes * 2 * clock_khz * 1e3 / 1e9 if clock_khz else None
    n = (256 if quick else 1024) * 2**20 // 8  # float64 elements: 256 MiB or 1 GiB per array
    timer = Timer("gpu", 5)
    copy_gbs = _gpu_copy(cp, n, timer)
    kern = cp.RawKernel(_GPU_FMA_SRC, "fma_roof")
    threads, blocks = 256, sms * 32
    out = cp.zeros(threads * blocks, cp.float32)
    n_iter = 4096 if quick else 16384
    sec = timer(lambda: kern((blocks,), (threads,), (out, np.int32(n_iter), np.float32(0.999), np.float32(1e-4))))
    gflops = 2 * 8 * out.size * n_iter / sec / 1e9
    return {
        "bandwidth_gbs": copy_gbs,
        "bandwidth_source": f"CuPy device-to-device copy, {n * 8 / 2**20:.0f} MiB per array",
        "theoretical_bandwidth_gbs": peak_bw,
        "compute_gflops": gflops,
        "compute_source": f"CUDA float32 FMA loop, {blocks} x {threads} threads, 8 chains each",
        "theoretical_compute_gflops": peak_flops,
        "gpu": name,
        "compute_capability": f"{cc[0]}.{cc[1]}",
        "sm_count": sms,
        "fp32_lanes_per_sm": lanes,
        "memory_clock_mhz": mem_clock_khz / 1e3 if mem_clock_khz else None,
        "memory_bus_bits": bus_bits,
    }


# ------------------------------------------------------------------------------ kernels

#: Sizes per device: (default, quick).
SIZES = {
    "cpu": {
        "backprojection": ((1024, 900), (256, 180)),
        "gridding": ((1024, 900), (256, 180)),
        "ifft2": ((1024,), (256,)),
        "hexitec": ((131072,), (16384,)),
        "median3": (((64, 512, 512),), ((16, 128, 128),)),
        "classify": (((64, 512, 512),), ((16, 128, 128),)),
        "stripping": ((4096,), (512,)),
        "current_pcg": ((1024,), (256,)),
    },
    "gpu": {
        "backprojection": ((2048, 2048), (512, 512)),
        "gridding": ((2048, 2048), (512, 512)),
        "ifft2": ((2048,), (512,)),
        "hexitec": ((262144,), (65536,)),
        "median3": (((128, 1024, 1024),), ((32, 256, 256),)),
        "classify": (((128, 1024, 1024),), ((32, 256, 256),)),
        "stripping": ((2048,), (512,)),
        "current_pcg": ((2048,), (512,)),
    },
}


class _Env:
    """Device, array module and the timer shared by the kernel profiles."""

    def __init__(self, device: str, repeats: int):
        self.device = device
        self.timer = Timer(device, repeats)
        if device == "gpu":
            import cupy

            self.xp = cupy
        else:
            self.xp = np

    def put(self, a):
        return self.xp.asarray(a) if self.device == "gpu" else a


def _theta(n_angles: int) -> np.ndarray:
    return np.linspace(0.0, np.pi, n_angles, endpoint=False)


def _sinogram(n: int, n_angles: int) -> np.ndarray:
    from recon.simulate import shepp_logan_sinogram

    return shepp_logan_sinogram(n, _theta(n_angles)).astype(np.float32)


def _run_backprojection(env: _Env, n: int, n_angles: int):
    from recon._filters import padded_length
    from recon.fbp import _filtered_cpu

    sino = _sinogram(n, n_angles)
    theta = _theta(n_angles)
    qp = _filtered_cpu(sino, "ramp", padded_length(n, n))  # (angles, n + 2) float32
    center = (n - 1) / 2
    scale = np.pi / n_angles
    if env.device == "gpu":
        import cupy as cp

        from recon._cuda_kernels import backproject_gpu

        q, c, s = cp.asarray(qp), cp.asarray(np.cos(theta), cp.float32), cp.asarray(np.sin(theta), cp.float32)
        fn = lambda: backproject_gpu(q, c, s, center, n, scale)  # noqa: E731
        call = "recon._cuda_kernels.backproject_gpu"
    else:
        from recon._cpu_kernels import backproject_linear

        out = np.empty((n, n), np.float32)
        c, s = np.cos(theta), np.sin(theta)
        fn = lambda: backproject_linear(qp, c, s, center, n, scale, out)  # noqa: E731
        call = "recon._cpu_kernels.backproject_linear"
    return fn, backprojection_work(n, n_angles, n), call, f"{n}x{n} px, {n_angles} angles, one slice"


def _run_gridding(env: _Env, n: int, n_angles: int):
    from recon.fourier import _coefficients_cpu, get_plan

    sino = _sinogram(n, n_angles)
    pair = np.stack([sino, sino])  # two slices travel together (real and imaginary parts)
    plan = get_plan(_theta(n_angles), n, n, "ramp")
    centers = np.full(2, (n - 1) / 2)
    coef = _coefficients_cpu(plan, pair, centers, full=True)  # (angles, L + 1) complex64
    g = plan.g
    if env.device == "gpu":
        import cupy as cp

        from recon._cuda_kernels import grid_polar_gpu

        tab = plan.gpu_tables(cp)
        cg = cp.asarray(coef)
        grid = cp.zeros((g, g), cp.complex64)

        def fn():
            return grid_polar_gpu(cg, tab["gnu_full"], tab["cos"], tab["sin"], plan.width, plan.beta, grid)

        call = "recon._cuda_kernels.grid_polar_gpu"
    else:
        from recon._cpu_kernels import grid_polar

        grid = np.zeros((g, g), np.complex64)
        gv = grid.view(np.float32)
        fn = lambda: grid_polar(coef, plan.gnu_full, plan.cos, plan.sin, plan.width, plan.table, plan.ups,  # noqa: E731
                                plan.band_edges, gv)
        call = "recon._cpu_kernels.grid_polar"
    work = gridding_work(n_angles, coef.shape[1], plan.width, g)
    return fn, work, call, f"{n} px pair of slices, {n_angles} angles, {coef.shape[1]} samples/angle, grid {g}^2"


def _run_ifft2(env: _Env, n: int):
    from recon.fourier import get_plan

    g = get_plan(_theta(8), n, n, "ramp").g
    rng = np.random.default_rng(0)
    grid = (rng.standard_normal((g, g)) + 1j * rng.standard_normal((g, g))).astype(np.complex64)
    if env.device == "gpu":
        import cupy as cp

        gg = cp.asarray(grid)
        fn = lambda: cp.fft.ifft2(gg)  # noqa: E731
        call = "cupy.fft.ifft2 (cuFFT)"
    else:
        import scipy.fft

        fn = lambda: scipy.fft.ifft2(grid, workers=-1)  # noqa: E731
        call = "scipy.fft.ifft2 (pocketfft)"
    return fn, fft2_work(g), call, f"complex64 grid {g}^2 (the Fourier grid of a {n} px slice)"


def _run_hexitec(env: _Env, n_frames: int):
    import compton
    from compton._sim_frames import sparse_frames

    base, _ = sparse_frames(2048, occupancy=0.01, fraction_double=0.15, fraction_triple=0.05,
                            dark_adu=100.0, gain_kev_per_adu=0.03, seed=1)
    reps = max(1, n_frames // base.shape[0])
    frames = env.xp.tile(env.put(base), (reps, 1, 1))
    n_frames = frames.shape[0]
    kw = dict(dark=100.0, threshold=20.0, gradients=0.03, intercepts=0.0, charge_sharing="add",
              bin_width_kev=0.2, e_max_kev=200.0, device=env.device,
              chunk_frames=65536 if env.device == "gpu" else 4096)
    cube = compton.process_frames(frames, **kw)
    events = int(cube.found.sum())
    work = hexitec_work(n_frames, 6400, events, n_bins=cube.counts.shape[-1])
    call = "compton.process_frames (charge sharing 'add')"
    desc = f"{n_frames} frames 80x80 uint16, {events} events"
    return (lambda: compton.process_frames(frames, **kw)), work, call, desc


@functools.lru_cache(maxsize=2)
def _layered_volume(shape) -> np.ndarray:
    """Collector | Li | electrolyte attenuation (per voxel) with Gaussian noise; shared by the
    median and the classification profiles (read-only)."""
    rng = np.random.default_rng(0)
    nz = shape[0]
    z = np.arange(nz)[:, None, None]
    levels = np.where(z < nz // 8, 5.7e-5, np.where(z < nz // 2, 1.55e-5, 7.9e-4)).astype(np.float32)
    vol = rng.standard_normal(shape, dtype=np.float32)
    vol *= np.float32(6e-5)
    vol += levels
    vol.flags.writeable = False
    return vol


def _run_median3(env: _Env, shape):
    import segment

    vol = env.put(_layered_volume(shape))
    fn = lambda: segment.median_filter(vol, size=3, device=env.device)  # noqa: E731
    if env.device == "gpu":
        call = "segment.median_filter(size=3) -> CUDA forgetful selection (segment._cuda_median)"
        work = median3_work(shape, comparisons_per_voxel=MEDIAN3_GPU_COMPARISONS_PER_VOXEL)
    else:
        call = "segment.median_filter(size=3) -> numba forgetful selection on row blocks (segment._seg_median)"
        work = median3_work(shape)
    return fn, work, call, "x".join(map(str, shape)) + " float32"


def _run_classify(env: _Env, shape):
    from segment.classify import apply_thresholds

    vol = env.put(_layered_volume(shape))
    thr = [3.0e-5, 4.0e-4]
    return (lambda: apply_thresholds(vol, thr)), classify_work(shape, len(thr)), \
        "segment.classify.apply_thresholds", "x".join(map(str, shape)) + " float32, 2 thresholds"


def _run_stripping(env: _Env, n: int):
    from segment import synthetic_thickness_map, virtual_stripping

    t = synthetic_thickness_map((n, n), 1.7, seed=1)
    fn = lambda: virtual_stripping(t, 1.7, n_steps=250)  # noqa: E731
    return fn, stripping_work((n, n), 8), "segment.virtual_stripping (numba union-find, CPU only)", \
        f"{n}x{n} map, 250 depths, 8-connected"


def _run_current(env: _Env, n: int):
    from segment import current_distribution, synthetic_thickness_map, virtual_stripping

    t = synthetic_thickness_map((n, n), 1.7, seed=0)
    snap = env.put(virtual_stripping(t, 1.7).snapshot(0.85))
    res = current_distribution(snap, 1.7, 50.0, device=env.device)
    fn = lambda: current_distribution(snap, 1.7, 50.0, device=env.device)  # noqa: E731
    fft = "cupy.fft" if env.device == "gpu" else "scipy.fft"
    return fn, pcg_work((n, n), res.iterations), f"segment.current_distribution (PCG, {fft})", \
        f"{n}x{n} 85 %-stripped map, {res.iterations} PCG iterations"


def _small(size):
    """A size with about a quarter to an eighth of the work (for the fixed-cost estimate)."""
    head = size[0]
    if isinstance(head, tuple):  # a volume: an eighth of the slices
        return ((max(4, head[0] // 8),) + head[1:],)
    if len(size) == 2:  # (n px, n angles): half of each
        return (max(32, head // 2), max(16, size[1] // 2))
    return (max(64, head // 8),) if head >= 8192 else (max(32, head // 2),)  # frames, or n px


#: kernel name -> (runner, what limits it when far from every roof (per device), devices it runs
#: on, whether its inner loop is scalar code on the CPU: checked with numba's ``inspect_asm`` (no
#: vector gathers in the back-projection, scalar float ops in the gridding taps; the median's
#: compare-exchanges are zmm vminps/vmaxps); the one-lane ceiling is applied to these only).
KERNELS = {
    "backprojection": (_run_backprojection, {
        "cpu": "scalar gathers from the projection rows (two dependent loads per update)",
        "gpu": "gathers from the projection rows through L1 (no texture path)"}, ("cpu", "gpu"), True),
    "gridding": (_run_gridding, {
        "cpu": "scattered read-modify-write of grid cells, scalar tap loops",
        "gpu": "float atomics into the grid (two per spread)"}, ("cpu", "gpu"), True),
    "ifft2": (_run_ifft2, {
        "cpu": "short-vector butterflies and strided column passes of pocketfft",
        "gpu": "cuFFT passes over a grid larger than L2"}, ("cpu", "gpu"), False),
    "hexitec": (_run_hexitec, {
        "cpu": "data-dependent histogram increments and per-piece thread hand-offs",
        "gpu": "one block per frame: block synchronisations and counter atomics"}, ("cpu", "gpu"), False),
    "median3": (_run_median3, {
        "cpu": "L1 loads and stores of the 15 block rows around each vector min/max pair",
        "gpu": "dependent compare-exchanges in registers"}, ("cpu", "gpu"), False),
    "classify": (_run_classify, {
        "cpu": "one single-threaded NumPy comparison pass per threshold and a NaN pass (about 20 B/voxel moved)",
        "gpu": "one element-wise comparison kernel per threshold and a NaN pass"}, ("cpu", "gpu"), False),
    "stripping": (_run_stripping, {
        "cpu": "union-find pointer chasing (dependent random loads)"}, ("cpu",), False),
    "current_pcg": (_run_current, {
        "cpu": "FFT passes, NumPy temporaries and single-threaded element-wise work",
        "gpu": "a host synchronisation per iteration (dot products) and many small kernels"}, ("cpu", "gpu"), False),
}


def _work_amount(work: dict) -> float:
    return float(work["updates"])


def profile_kernel(name: str, env: _Env, *, quick: bool) -> dict:
    """Time kernel ``name`` at its size for ``env.device`` (full size and about 1/8 of the work)."""
    runner, limiter, devices, _ = KERNELS[name]
    if env.device not in devices:
        return {"kernel": name, "device": env.device, "seconds": None,
                "bound": "n/a", "why": f"runs on the CPU only; see the CPU profile ({limiter['cpu']})"}
    size = SIZES[env.device][name][1 if quick else 0]
    fn, work, call, desc = runner(env, *size)
    seconds = env.timer(fn)
    cpu_seconds = env.timer.cpu_seconds if env.device == "cpu" else None
    del fn
    fn_s, work_s, _, _ = runner(env, *_small(size))
    t_small = env.timer(fn_s)
    del fn_s
    fixed = fixed_cost(t_small, _work_amount(work_s), seconds, _work_amount(work))
    return {"kernel": name, "device": env.device, "call": call, "size": desc, "seconds": seconds, "work": work,
            "cpu_seconds": cpu_seconds, "cores_used": None if cpu_seconds is None else cpu_seconds / seconds,
            "fixed_seconds": fixed, "small_seconds": t_small, "small_updates": work_s["updates"]}


def assess_row(row: dict, limits: dict) -> dict:
    """Add :func:`assess` to a row of :func:`profile_kernel`; the one-lane ceiling applies only to
    kernels whose inner loop is scalar code."""
    if row.get("seconds") is None:
        return row
    _, limiter, _, scalar_loop = KERNELS[row["kernel"]]
    lim = dict(limits)
    if not scalar_loop:
        lim.pop("scalar_gflops", None)
    row.update(assess(row["work"], row["seconds"], lim, fixed_seconds=row["fixed_seconds"],
                      limiter=limiter[row["device"]]))
    return row


def best_limits(first: dict, second: dict) -> dict:
    """The larger of two measurements of each limit (other users' load only ever lowers one)."""
    out = dict(first)
    for key in ("bandwidth_gbs", "compute_gflops"):
        if second[key] > first[key]:
            out[key] = second[key]
            src = key.split("_")[0] + "_source"
            out[src] = second[src]
    if "stream_gbs" in first:
        out["stream_gbs"] = {k: max(v, second["stream_gbs"][k]) for k, v in first["stream_gbs"].items()}
    if "scalar_gflops" in first:
        out["scalar_gflops"] = out["compute_gflops"] / out["simd_lanes_f32"]
    out["measurements"] = [{k: d[k] for k in ("bandwidth_gbs", "compute_gflops")} for d in (first, second)]
    return out


# ------------------------------------------------------------------------------ output


def machine_info(device: str) -> dict:
    """Host, CPU model, Python, load and (on the GPU) the device name."""
    spec = importlib.util.spec_from_file_location("_bench_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    info = mod.machine_info()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu_model"] = model
    info["load_before"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["device"] = device
    return info


def _fmt(v, spec=".3g"):
    if v is None:
        return ""
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def to_markdown(result: dict) -> str:
    """The profile as a Markdown page (limits, then one row per kernel)."""
    m, lim = result["machine"], result["limits"]
    dev = result["device"]
    lines = [
        f"# Kernel profile on {m['host']} ({dev}), {m['date']}",
        "",
        f"Machine: {m.get('cpu_model', '')}, {m['cpus']} CPUs"
        + (f", GPU {lim.get('gpu')}" if dev == "gpu" else "")
        + f"; load average {m.get('load_before', float('nan')):.2f} before and "
          f"{result.get('load_after', float('nan')):.2f} after the run"
        + (" (quick sizes)" if result.get("quick") else "") + ".",
        "",
        f"- memory bandwidth limit: **{lim['bandwidth_gbs']:.1f} GB/s** ({lim['bandwidth_source']})",
        f"- compute roof: **{lim['compute_gflops']:.0f} Gflop/s** float32 ({lim['compute_source']})",
    ]
    if lim.get("scalar_gflops"):
        lines += [f"- one-lane ceiling (code that is not vectorised): {lim['scalar_gflops']:.1f} Gflop/s "
                  f"(compute roof / {lim['simd_lanes_f32']} float32 SIMD lanes)"]
    if dev == "gpu":
        lines += [f"- theoretical: {_fmt(lim['theoretical_bandwidth_gbs'], '.0f')} GB/s "
                  f"({_fmt(lim['memory_clock_mhz'], '.0f')} MHz x {lim['memory_bus_bits']} bit x 2), "
                  f"{_fmt(lim['theoretical_compute_gflops'], '.0f')} Gflop/s ({lim['sm_count']} SMs, "
                  f"{lim['fp32_lanes_per_sm']} FP32 lanes each, compute capability {lim['compute_capability']})"]
    cols = ["kernel", "size", "seconds", "cores used", "GB/s", "Gflop/s", "G updates/s", "fraction", "limit",
            "bound by", "why"]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in result["kernels"]:
        if r.get("seconds") is None:
            lines.append(f"| {r['kernel']} | | | | | | | | | {r['bound']} | {r['why']} |")
            continue
        unit = r["work"]["update_unit"]
        lines.append("| " + " | ".join([
            r["kernel"], r["size"], _fmt(r["seconds"], ".4g"), _fmt(r.get("cores_used"), ".2f"),
            _fmt(r["achieved_gbs"]), _fmt(r["achieved_gflops"]),
            f"{r['achieved_gups']:.3g} {unit}", f"{r['fraction']:.3f}", r["limit"], r["bound"], r["why"],
        ]) + " |")
    if result.get("ncu"):
        lines += ["", "Nsight Compute command lines:", ""] + [f"    {c}" for c in result["ncu"]]
    return "\n".join(lines) + "\n"


def roofline_figure(result: dict, path) -> None:
    """Roofline plot (PNG): the measured bandwidth and compute roofs and one point per kernel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = result["limits"]
    bw, peak = lim["bandwidth_gbs"], lim["compute_gflops"]
    rows = [r for r in result["kernels"] if r.get("seconds")]
    ai = [r["arithmetic_intensity"] for r in rows]
    lo = min(ai + [peak / bw]) / 4
    hi = max(ai + [peak / bw]) * 4
    x = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.loglog(x, np.minimum(peak, bw * x), "k-", lw=2, label=f"roofline: {bw:.0f} GB/s, {peak:.0f} Gflop/s")
    if result["device"] == "gpu" and lim.get("theoretical_bandwidth_gbs") and lim.get("theoretical_compute_gflops"):
        tb, tp = lim["theoretical_bandwidth_gbs"], lim["theoretical_compute_gflops"]
        ax.loglog(x, np.minimum(tp, tb * x), "k:", lw=1, label=f"theoretical: {tb:.0f} GB/s, {tp:.0f} Gflop/s")
    if lim.get("scalar_gflops"):
        sc = lim["scalar_gflops"]
        ax.loglog(x, np.minimum(sc, bw * x), "k--", lw=1, label=f"one-lane ceiling: {sc:.1f} Gflop/s")
    colours = {"memory": "tab:blue", "compute": "tab:red", "compute (scalar)": "tab:green",
               "latency": "tab:orange", "Python overhead": "tab:purple"}
    for r in rows:
        ax.plot(r["arithmetic_intensity"], r["achieved_gflops"], "o", ms=8, color=colours.get(r["bound"], "grey"))
        ax.annotate(f"{r['kernel']} ({100 * r['fraction']:.1f} %)", (r["arithmetic_intensity"], r["achieved_gflops"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    for bound, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=f"bound by {bound}")
    ax.set_xlabel("arithmetic intensity (flop per byte of compulsory traffic)")
    ax.set_ylabel("achieved Gflop/s (work model)")
    m = result["machine"]
    ax.set_title(f"Hot kernels on {m['host']} ({result['device']}"
                 + (f", {lim.get('gpu')}" if result["device"] == "gpu" else f", {m.get('cpu_model', '')}") + ")",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _ncu_commands(names) -> list[str]:
    script = "benchmarks/profile_kernels.py"
    kernels = {"backprojection": "backproject_linear", "gridding": "grid_polar", "hexitec": "hexitec_frames"}
    out = []
    for name in names:
        k = f" -k {kernels[name]}" if name in kernels else ""
        out.append(f"ncu --set full{k} -o profile-{name} python {script} --device gpu --quick --only {name}")
    return out


def profile(device: str = "auto", *, quick: bool = False, only=None, repeats: int | None = None) -> dict:
    """Measure the device's limits and every hot kernel; return the result as a dict.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        Where the kernels run ("auto": the GPU when CuPy sees one).
    quick : bool
        Small sizes (a smoke run).
    only : sequence of str, optional
        Kernel names to profile (default: all of ``KERNELS``).
    repeats : int, optional
        Timed runs per kernel after the warm-up (default 3, quick 2).
    """
    from recon._backend import resolve_device

    dev = resolve_device(device)
    names = list(KERNELS) if not only else list(only)
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise ValueError(f"unknown kernel(s) {unknown}; expected some of {list(KERNELS)}")
    info = machine_info(dev)
    measure = gpu_limits if dev == "gpu" else cpu_limits
    first = measure(quick=quick)
    print(f"== limits ({dev}, before the kernels): {first['bandwidth_gbs']:.1f} GB/s "
          f"({first['bandwidth_source']}), {first['compute_gflops']:.0f} Gflop/s ({first['compute_source']})",
          flush=True)
    env = _Env(dev, repeats or (2 if quick else 3))
    rows = []
    for name in names:
        t0 = time.perf_counter()
        row = profile_kernel(name, env, quick=quick)
        rows.append(row)
        if row.get("seconds") is None:
            print(f"== {name}: {row['why']}", flush=True)
            continue
        w = row["work"]
        print(f"== {name}: {row['size']}: {row['seconds']:.4g} s, {w['bytes'] / row['seconds'] / 1e9:.3g} GB/s, "
              f"{w['flops'] / row['seconds'] / 1e9:.3g} Gflop/s, "
              f"{w['updates'] / row['seconds'] / 1e9:.3g} G {w['update_unit']}/s"
              + (f", {row['cores_used']:.2f} cores busy" if row["cores_used"] is not None else "")
              + f" [{time.perf_counter() - t0:.1f} s]",
              flush=True)
    second = measure(quick=quick)
    limits = best_limits(first, second)
    print(f"== limits (best of before and after): {limits['bandwidth_gbs']:.1f} GB/s, "
          f"{limits['compute_gflops']:.0f} Gflop/s", flush=True)
    for row in rows:
        assess_row(row, limits)
        if row.get("seconds") is not None:
            print(f"  {row['kernel']}: fraction {row['fraction']:.3f} of {row['limit']} -> {row['bound']} "
                  f"({row['why']})", flush=True)
    result = {"machine": info, "device": dev, "quick": bool(quick), "limits": limits, "kernels": rows,
              "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if dev == "gpu" and shutil.which("ncu"):
        result["ncu"] = _ncu_commands([n for n in names if dev in KERNELS[n][2]])
        print("ncu is on the PATH; to profile one kernel:\n  " + "\n  ".join(result["ncu"]), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default="", help=f"comma-separated kernels out of {','.join(KERNELS)}")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        result = profile(args.device, quick=args.quick, only=only)
    except ValueError as exc:  # unknown kernel, or a GPU asked for without one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"profile-{result['machine']['host']}" + ("-gpu" if result["device"] == "gpu" else "") \
        + ("-quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{stem}.md").write_text(to_markdown(result))
    roofline_figure(result, args.out / f"{stem}.png")
    print(f"wrote {args.out / (stem + '.json')}, .md and .png")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
