"""The CUDA kernel's source, run on the CPU: compiled as C++ with one thread per block.

Without a GPU this still checks the kernel's logic (thresholds, next-frame, window
discrimination, label-propagation charge addition, histogram) against the numba kernel:
with ``blockDim.x == 1`` every loop of the kernel covers all pixels and hits in one thread,
a valid (sequential) execution of the same code. Races are covered by the ``gpu`` tests.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import compton
from compton._cuda_kernels import _SOURCE
from compton._sim_frames import sparse_frames
from compton.frames import threshold_cut

_STUB = r"""
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__
struct dim3_ { unsigned x, y, z; };
static dim3_ threadIdx, blockIdx, blockDim, gridDim;
inline void __syncthreads() {}
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { auto o = *a; *a += v; return o; }
inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { auto o = *a; *a += v; return o; }
inline int atomicAdd(int* a, int v) { auto o = *a; *a += v; return o; }
"""

_DRIVER = r"""
extern "C" void run_grid(unsigned nblocks, const frame_t* frames, long long n, const frame_t* prev,
    int has_prev, int rows, int cols, const int* colmap, const cut_t* cut, const double* dark,
    const double* gain, const double* icpt, int calibrate, int next_frame, int mode, int half,
    const double* edges, int nbins, double inv_bw, unsigned int* hist, unsigned long long* found,
    unsigned long long* rejected, unsigned long long* accepted, int* si, double* se)
{
    gridDim.x = nblocks; blockDim.x = 1; threadIdx.x = 0;
    for (unsigned b = 0; b < nblocks; ++b) {
        blockIdx.x = b;
        hexitec_frames(frames, n, prev, has_prev, rows, cols, colmap, cut, dark, gain, icpt,
                       calibrate, next_frame, mode, half, edges, nbins, inv_bw, hist, found,
                       rejected, accepted, si, se);
    }
}
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to run the CUDA source on the CPU")
    d = tmp_path_factory.mktemp("cuda_src")
    src = d / "k.cpp"
    src.write_text(_STUB + "#define FRAME_T unsigned short\n#define CUT_T long long\n" + _SOURCE + _DRIVER)
    so = d / "k.so"
    # -ffp-contract=off: no fused multiply-add, as --fmad=false on the GPU
    subprocess.run([cxx, "-O1", "-ffp-contract=off", "-shared", "-fPIC", str(src), "-o", str(so)],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(so))


def run_cuda_source(lib, frames, *, dark, threshold, gain, icpt, calibrate, next_frame, mode,
                    window, edges, chunk, nblocks=3):
    rows, cols = frames.shape[1:]
    npix = rows * cols
    nbins = edges.size - 1
    p = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    cut = threshold_cut(dark, threshold, True).astype(np.int64).ravel()
    colmap = np.arange(cols, dtype=np.int32)
    hist = np.zeros(npix * nbins, np.uint32)
    found, rej, acc = (np.zeros(npix, np.uint64) for _ in range(3))
    map_len = (rows + 4) * (cols + 4)
    si = np.full(nblocks * (map_len + 3 * npix), -1, np.int32)
    se = np.zeros(nblocks * npix)
    dark, gain, icpt = (np.ascontiguousarray(a, np.float64).ravel() for a in (dark, gain, icpt))
    prev = None
    for a in range(0, len(frames), chunk):
        fr = np.ascontiguousarray(frames[a : a + chunk]).reshape(-1, npix)
        pv = fr[0] if prev is None else prev
        lib.run_grid(
            ctypes.c_uint(nblocks), p(fr), ctypes.c_longlong(len(fr)), p(pv), ctypes.c_int(prev is not None),
            ctypes.c_int(rows), ctypes.c_int(cols), p(colmap), p(cut), p(dark), p(gain), p(icpt),
            ctypes.c_int(calibrate), ctypes.c_int(next_frame), ctypes.c_int(mode), ctypes.c_int(window // 2),
            p(edges), ctypes.c_int(nbins), ctypes.c_double(1.0 / (edges[1] - edges[0])), p(hist),
            p(found), p(rej), p(acc), p(si), p(se),
        )
        prev = fr[-1].copy()
    return hist.reshape(rows, cols, nbins), acc.reshape(rows, cols), rej.reshape(rows, cols)


@pytest.mark.parametrize(
    "mode, window, next_frame, calibrate",
    [(None, 3, False, True), (None, 3, True, False), ("discriminate", 3, True, True),
     ("discriminate", 5, False, True), ("add", 3, False, True), ("add", 3, True, False)],
)
def test_cuda_source_matches_numba_kernel(lib, mode, window, next_frame, calibrate):
    rng = np.random.default_rng(21)
    shape = (80, 80)
    gain, icpt = rng.uniform(0.028, 0.032, shape), rng.uniform(-0.5, 0.5, shape)
    dark, thr = rng.uniform(90, 110, shape), rng.uniform(15, 30, shape)
    frames, _ = sparse_frames(60, occupancy=0.04, fraction_double=0.3, fraction_triple=0.2,
                              gain_kev_per_adu=gain, intercept_kev=icpt, dark_adu=dark, seed=8)
    frames[1:, 9, 9] = np.where(frames[:-1, 9, 9] > 300, 800, frames[1:, 9, 9])
    bw, emax = (0.2, 200.0) if calibrate else (4.0, 4000.0)
    cpu = compton.process_frames(
        frames, dark=dark, threshold=thr, gradients=gain if calibrate else None,
        intercepts=icpt if calibrate else None, next_frame=next_frame, charge_sharing=mode,
        window=window, bin_width_kev=bw, e_max_kev=emax, device="cpu", chunk_frames=13,
    )
    hist, acc, rej = run_cuda_source(
        lib, frames, dark=dark, threshold=thr, gain=gain if calibrate else np.ones(shape),
        icpt=icpt if calibrate else np.zeros(shape), calibrate=calibrate, next_frame=next_frame,
        mode={None: 0, "discriminate": 1, "add": 2}[mode], window=window,
        edges=cpu.bin_edges_kev, chunk=13,
    )
    assert cpu.found.sum() > 10000 and cpu.counts.sum() > 1000
    np.testing.assert_array_equal(hist, cpu.counts)
    np.testing.assert_array_equal(acc, cpu.accepted)
    np.testing.assert_array_equal(rej, cpu.rejected)


# --------------------------------------------------------------------------- the GPU glue code


class _Dev(np.ndarray):
    """A NumPy array standing in for a CuPy array (``.get()`` copies to the host)."""

    def get(self):
        return np.asarray(self).copy()


class _FakeCupy:
    """Just enough of CuPy for ``GpuAccumulator``: arrays are NumPy, kernels run on the CPU."""

    uint16, uint32, uint64 = np.uint16, np.uint32, np.uint64
    int32, int64, float64 = np.int32, np.int64, np.float64

    def __init__(self, folder):
        self.folder = folder
        self.compiled = {}

    @staticmethod
    def _dev(a):
        return np.asarray(a).view(_Dev)

    def asarray(self, a):
        return self._dev(np.ascontiguousarray(a))

    def ascontiguousarray(self, a):
        return self._dev(np.ascontiguousarray(a))

    def zeros(self, n, dtype):
        return self._dev(np.zeros(n, dtype))

    def full(self, n, value, dtype):
        return self._dev(np.full(n, value, dtype))

    def RawKernel(self, src, name, options=()):  # noqa: N802 - CuPy's name
        assert name == "hexitec_frames" and "--fmad=false" in options
        if src not in self.compiled:
            path = self.folder / f"k{len(self.compiled)}"
            path.with_suffix(".cpp").write_text(_STUB + src + _DRIVER)
            subprocess.run([shutil.which("g++") or "c++", "-O1", "-ffp-contract=off", "-shared",
                            "-fPIC", str(path.with_suffix(".cpp")), "-o", str(path.with_suffix(".so"))],
                           check=True, capture_output=True)
            self.compiled[src] = ctypes.CDLL(str(path.with_suffix(".so")))
        lib = self.compiled[src]

        def launch(grid, block, args):
            conv = []
            for a in args:
                if isinstance(a, np.ndarray):
                    assert a.flags.c_contiguous
                    conv.append(a.ctypes.data_as(ctypes.c_void_p))
                elif isinstance(a, np.int64):
                    conv.append(ctypes.c_longlong(int(a)))
                elif isinstance(a, np.int32):
                    conv.append(ctypes.c_int(int(a)))
                elif isinstance(a, np.float64):
                    conv.append(ctypes.c_double(float(a)))
                else:
                    raise TypeError(f"unexpected kernel argument {type(a)}")
            assert len(conv) == 24 and block == (256,)
            lib.run_grid(ctypes.c_uint(grid[0]), *conv)

        return launch


@pytest.fixture()
def fake_gpu(lib, tmp_path, monkeypatch):
    import compton._backend as backend
    import compton._cuda_kernels as ck

    fake = _FakeCupy(tmp_path)
    monkeypatch.setattr(backend, "cupy_or_none", lambda: fake)
    monkeypatch.setattr(ck, "cupy_or_none", lambda: fake)
    monkeypatch.setattr(ck, "_MAX_BLOCKS", 4)  # small scratch; grid-stride over the frames
    ck._kernel.cache_clear()
    yield fake
    ck._kernel.cache_clear()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("mode", [None, "discriminate", "add"])
def test_gpu_code_path_with_cpu_compiled_kernel(fake_gpu, tmp_path, mode, dtype):
    """process_frames(device="gpu") end to end, CUDA source run on the CPU, against numba."""
    rng = np.random.default_rng(5)
    shape = (80, 80)
    gain, icpt = rng.uniform(0.028, 0.032, shape), rng.uniform(-0.5, 0.5, shape)
    dark = rng.uniform(90, 110, shape)
    frames, _ = sparse_frames(40, occupancy=0.04, fraction_double=0.3, fraction_triple=0.2,
                              gain_kev_per_adu=gain, intercept_kev=icpt, dark_adu=dark, seed=2)
    frames = frames.astype(dtype)
    kw = dict(dark=dark, threshold=20.0, gradients=gain, intercepts=icpt, next_frame=True,
              charge_sharing=mode, chunk_frames=9)
    cpu = compton.process_frames(frames, device="cpu", **kw)
    gpu = compton.process_frames(frames, device="gpu", **kw)
    assert gpu.attrs["device"] == "gpu" and cpu.attrs["device"] == "cpu"
    np.testing.assert_array_equal(gpu.counts, cpu.counts)
    np.testing.assert_array_equal(gpu.accepted, cpu.accepted)
    np.testing.assert_array_equal(gpu.rejected, cpu.rejected)
    assert cpu.found.sum() > 3000


def test_gpu_code_path_reads_bin_in_storage_order(fake_gpu, tmp_path):
    frames, _ = sparse_frames(30, occupancy=0.03, fraction_double=0.3, seed=6)
    storage = np.empty_like(frames)
    for n in range(80):
        storage[:, :, n] = frames[:, :, (n % 4) * 20 + n // 4]
    storage.astype("<u2").tofile(tmp_path / "r.bin")
    kw = dict(dark=100.0, threshold=20.0, charge_sharing="add", next_frame=True, bin_width_kev=4,
              e_max_kev=4000, chunk_frames=7)
    gpu = compton.process_frames(tmp_path / "r.bin", device="gpu", **kw)
    cpu = compton.process_frames(frames, device="cpu", **kw)
    np.testing.assert_array_equal(gpu.counts, cpu.counts)
    np.testing.assert_array_equal(gpu.rejected, cpu.rejected)
