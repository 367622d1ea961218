"""GPU (CuPy) reconstruction against the CPU path: same geometry, float32 tolerance.

The tests marked ``gpu`` need CuPy and a CUDA device. One more test runs wherever a C++
compiler exists: it compiles the CUDA kernel sources for the CPU (one loop over the launch grid,
atomics as plain adds) and runs the GPU code paths with NumPy standing in for CuPy, in a
subprocess, so that the kernels' indexing and the GPU-side bookkeeping are checked without a GPU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from recon.algorithms import reconstruct
from recon.simulate import shepp_logan_sinogram

ALGOS = ("fourier", "fbp")


def _close(gpu, cpu, tol=2e-4):
    scale = float(np.abs(cpu).max())
    err = float(np.abs(np.asarray(gpu) - cpu).max())
    assert err <= tol * scale, f"max |gpu - cpu| = {err:.3g}, allowed {tol * scale:.3g}"


@pytest.mark.gpu
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("n", [255, 256])
def test_single_slice_gpu_matches_cpu(algorithm, n):
    import cupy as cp

    theta = np.linspace(0, np.pi, 300, endpoint=False)
    sino = shepp_logan_sinogram(n, theta, center=(n - 1) / 2 + 2.7, width=n + 8).astype(np.float32)
    center = (n - 1) / 2 + 2.7
    cpu = reconstruct(sino, theta, center, algorithm=algorithm, device="cpu", out_size=n)
    gpu = reconstruct(cp.asarray(sino), theta, center, algorithm=algorithm, out_size=n)
    assert isinstance(gpu, cp.ndarray) and gpu.dtype == cp.float32 and gpu.shape == (n, n)
    _close(gpu.get(), cpu)


@pytest.mark.gpu
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("filter_name", ["ramp", "hann"])
def test_stack_with_per_slice_centres_gpu_matches_cpu(algorithm, filter_name):
    theta = np.linspace(0, np.pi, 200, endpoint=False)
    centers = [62.0, 64.3, 65.5]
    sinos = np.stack(
        [shepp_logan_sinogram(120, theta, width=130, center=c) for c in centers], axis=1
    ).astype(np.float32)
    cpu = reconstruct(sinos, theta, centers, algorithm=algorithm, filter_name=filter_name, device="cpu")
    gpu = reconstruct(sinos, theta, centers, algorithm=algorithm, filter_name=filter_name, device="gpu")
    assert isinstance(gpu, np.ndarray) and gpu.shape == (3, 130, 130)
    _close(gpu, cpu)


@pytest.mark.gpu
def test_large_slice_fourier_gpu_matches_cpu():
    n = 1024
    theta = np.linspace(0, np.pi, 900, endpoint=False)
    sino = shepp_logan_sinogram(n, theta).astype(np.float32)
    cpu = reconstruct(sino, theta, algorithm="fourier", device="cpu")
    gpu = reconstruct(sino, theta, algorithm="fourier", device="gpu")
    _close(gpu, cpu)


@pytest.mark.gpu
def test_astra_cuda_backend_matches_native():
    astra = pytest.importorskip("astra")
    if not astra.use_cuda():
        pytest.skip("ASTRA was built without CUDA")
    theta = np.linspace(0, np.pi, 360, endpoint=False)
    n, center = 128, 66.3
    sino = shepp_logan_sinogram(n, theta, center=center).astype(np.float32)
    ours = reconstruct(sino, theta, center, algorithm="fbp", device="cpu")
    theirs = reconstruct(sino, theta, center, algorithm="fbp", backend="astra", device="gpu")
    c = np.arange(n) - (n - 1) / 2
    mask = np.add.outer(c**2, c**2) < (n / 2 - 4) ** 2
    assert np.sqrt(np.mean((theirs - ours)[mask] ** 2)) < 0.05 * np.sqrt(np.mean(ours[mask] ** 2))



_EMULATION = r"""
import ctypes, subprocess, sys, types
import numpy as np
from recon import _cuda_kernels as K

HEAD = '''
#include <complex>
#include <cmath>
#include <cstddef>
struct dim3_ { unsigned x, y, z; };
static dim3_ blockIdx, threadIdx, blockDim;
#define __global__
template<typename T> using complex = std::complex<T>;
static inline float atomicAdd(float* p, float v) { float o = *p; *p += v; return o; }
'''
LAUNCH = '''
extern "C" void launch_backproject(int gx, int gy, int bx, int by, const float* q, const float* c,
    const float* s, int na, int w, float center, int n, float scale, float* out) {
  blockDim = {(unsigned)bx, (unsigned)by, 1};
  for (unsigned a = 0; a < (unsigned)gy; ++a) for (unsigned b = 0; b < (unsigned)gx; ++b)
    for (unsigned ty = 0; ty < (unsigned)by; ++ty) for (unsigned tx = 0; tx < (unsigned)bx; ++tx) {
      blockIdx = {b, a, 0}; threadIdx = {tx, ty, 0};
      backproject_linear(q, c, s, na, w, center, n, scale, out);
    }
}
extern "C" void launch_grid(int blocks, int threads, const std::complex<float>* coef, const float* gnu,
    const float* c, const float* s, int na, int nk, int width, float beta, int g, float* grid) {
  blockDim = {(unsigned)threads, 1, 1};
  for (unsigned b = 0; b < (unsigned)blocks; ++b) for (unsigned t = 0; t < (unsigned)threads; ++t) {
    blockIdx = {b, 0, 0}; threadIdx = {t, 0, 0};
    grid_polar(coef, gnu, c, s, na, nk, width, beta, g, grid);
  }
}
'''
tmp = sys.argv[1]
src = HEAD + K._BACKPROJECT_SRC + K._GRID_SRC.replace("#include <cupy/complex.cuh>", "") + LAUNCH
open(tmp + "/k.cpp", "w").write(src)
subprocess.check_call([sys.argv[2], "-O1", "-shared", "-fPIC", "-o", tmp + "/k.so", tmp + "/k.cpp"])
lib = ctypes.CDLL(tmp + "/k.so")

cp = types.ModuleType("cupy")
for name in dir(np):
    if not name.startswith("__"):
        setattr(cp, name, getattr(np, name))
cp.fft = np.fft


def arg(a):
    if isinstance(a, np.ndarray):
        assert a.flags.c_contiguous and a.dtype != np.float64, (a.dtype, a.flags)
        return a.ctypes.data_as(ctypes.c_void_p)
    if isinstance(a, np.int32):
        return ctypes.c_int(int(a))
    assert isinstance(a, np.float32), type(a)
    return ctypes.c_float(float(a))


class RawKernel:
    def __init__(self, src, name, options=()):
        assert name in src
        self.name = name

    def __call__(self, grid, block, args):
        args = [arg(a) for a in args]
        if self.name == "grid_polar":
            lib.launch_grid(ctypes.c_int(grid[0]), ctypes.c_int(block[0]), *args)
        else:
            lib.launch_backproject(*(ctypes.c_int(v) for v in (grid[0], grid[1], block[0], block[1])), *args)


cp.RawKernel = RawKernel
sys.modules["cupy"] = cp

from recon import fbp, fourier
from recon.simulate import shepp_logan_sinogram

theta = np.linspace(0, np.pi, 90, endpoint=False)
worst = 0.0
for n, width in [(63, 70), (64, 64)]:
    centers = np.array([(width - 1) / 2 + 2.7, (width - 1) / 2 - 1.3, (width - 1) / 2])
    sinos = np.stack([shepp_logan_sinogram(n, theta, width=width, center=c) for c in centers]).astype(np.float32)
    for cpu, gpu in [(fourier.fourier_cpu, fourier.fourier_gpu), (fbp.fbp_cpu, fbp.fbp_gpu)]:
        for filt in ("ramp", "hann"):
            a = cpu(sinos, theta, centers, n, filt)
            b = gpu(sinos, theta, centers, n, filt)
            assert b.shape == a.shape and b.dtype == np.float32
            worst = max(worst, float(np.abs(a - b).max() / np.abs(a).max()))
print("WORST", worst)
"""


def test_cuda_sources_emulated_on_cpu_match_cpu_kernels(tmp_path):
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler to emulate the CUDA kernels on the CPU")
    script = tmp_path / "emulate.py"
    script.write_text(_EMULATION)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), compiler], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    worst = float(proc.stdout.split("WORST")[-1])
    assert worst < 2e-5
