"""The 3x3x3 median CUDA kernel against scipy.ndimage.median_filter.

Without a GPU the kernel source is compiled as C++ (CUDA qualifiers stubbed, one loop over the
launch grid and the block's threads) and ``median3_gpu`` runs with NumPy standing in for CuPy,
so the selection network, the edge clamping and the launch geometry are all checked. The ``gpu``
test runs the real kernel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

_EMULATION = r"""
import ctypes, subprocess, sys, types
import numpy as np
from scipy import ndimage as ndi
from segment import _cuda_median as K

HEAD = '''
#include <cstddef>
struct dim3_ { unsigned x, y, z; };
static dim3_ blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
'''
LAUNCH = '''
extern "C" void launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       const value_t* in, value_t* out, int nz, int ny, int nx) {
  blockDim = {bx, by, bz};
  for (unsigned c = 0; c < gz; ++c) for (unsigned b = 0; b < gy; ++b) for (unsigned a = 0; a < gx; ++a)
    for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {
      blockIdx = {a, b, c}; threadIdx = {tx, ty, tz};
      median3(in, out, nz, ny, nx);
    }
}
'''
tmp, compiler = sys.argv[1], sys.argv[2]
libs = {}
for t in ("float", "double"):
    src = HEAD + K._SOURCE.replace("VALUE_T", t) + LAUNCH
    open(f"{tmp}/m_{t}.cpp", "w").write(src)
    subprocess.check_call([compiler, "-O1", "-shared", "-fPIC", "-o", f"{tmp}/m_{t}.so", f"{tmp}/m_{t}.cpp"])
    libs[t] = ctypes.CDLL(f"{tmp}/m_{t}.so")


class RawKernel:
    def __init__(self, src, name):
        assert name == "median3"
        self.lib = libs["float" if "typedef float value_t" in src else "double"]

    def __call__(self, grid, block, args):
        a, out, nz, ny, nx = args
        assert a.flags.c_contiguous and out.flags.c_contiguous and a.dtype == out.dtype
        self.lib.launch(*(ctypes.c_uint(v) for v in (*grid, *block)),
                        a.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                        *(ctypes.c_int(int(v)) for v in (nz, ny, nx)))


cp = types.ModuleType("cupy")
for name in ("ascontiguousarray", "empty_like", "float32", "float64", "int32"):
    setattr(cp, name, getattr(np, name))
cp.RawKernel = RawKernel
sys.modules["cupy"] = cp
K._kernel.cache_clear()

rng = np.random.default_rng(7)
cases = 0
for shape in [(1, 1, 1), (2, 3, 4), (5, 9, 33), (3, 1, 7), (7, 6, 5), (4, 40, 37)]:
    for dtype in (np.float32, np.float64):
        for values in ("ties", "continuous"):
            if values == "ties":  # few distinct values: many equal neighbours
                vol = rng.integers(0, 4, size=shape).astype(dtype)
            else:
                vol = rng.normal(size=shape).astype(dtype)
            got = K.median3_gpu(vol)
            want = ndi.median_filter(vol, size=3, mode="reflect")
            assert got.dtype == vol.dtype and got.shape == vol.shape
            assert np.array_equal(got, want), (shape, dtype, values, np.argwhere(got != want)[:5])
            cases += 1
print("CASES", cases)
"""


def test_cuda_median_emulated_on_cpu_equals_scipy(tmp_path):
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler to emulate the CUDA kernel on the CPU")
    script = tmp_path / "emulate.py"
    script.write_text(_EMULATION)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), compiler],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split("CASES")[-1]) == 24


def test_forgetful_selection_is_the_median_in_python():
    """The kernel's selection schedule, replayed in Python on every window of a volume with
    ties, returns the 14th smallest of the 27 values (an independent check of the schedule)."""
    rng = np.random.default_rng(3)
    for _ in range(2000):
        w = list(rng.integers(0, 5, size=27).astype(float))
        v = w[:15]
        for step in range(12):
            for i in range(step + 1, 15):
                if v[i] < v[step]:
                    v[step], v[i] = v[i], v[step]
            for i in range(step + 1, 14):
                if v[14] < v[i]:
                    v[i], v[14] = v[14], v[i]
            v[14] = w[15 + step]
        assert sorted(v[12:15])[1] == sorted(w)[13]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median3_gpu_equals_scipy(dtype):
    import cupy as cp

    from segment import median_filter

    rng = np.random.default_rng(0)
    vol = rng.normal(size=(37, 64, 129)).astype(dtype)
    vol[::5] = np.round(vol[::5])  # ties
    got = median_filter(cp.asarray(vol), size=3)
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(got), ndi.median_filter(vol, size=3, mode="reflect"))
    host = median_filter(vol, size=3, device="gpu")  # NumPy in, NumPy out
    np.testing.assert_array_equal(host, ndi.median_filter(vol, size=3, mode="reflect"))
