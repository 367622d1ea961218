"""GPU (CuPy) reconstruction against the CPU path: same geometry, float32 tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from recon.algorithms import reconstruct
from recon.simulate import shepp_logan_sinogram

pytestmark = pytest.mark.gpu

ALGOS = ("fourier", "fbp")


def _close(gpu, cpu, tol=2e-4):
    scale = float(np.abs(cpu).max())
    err = float(np.abs(np.asarray(gpu) - cpu).max())
    assert err <= tol * scale, f"max |gpu - cpu| = {err:.3g}, allowed {tol * scale:.3g}"


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


def test_large_slice_fourier_gpu_matches_cpu():
    n = 1024
    theta = np.linspace(0, np.pi, 900, endpoint=False)
    sino = shepp_logan_sinogram(n, theta).astype(np.float32)
    cpu = reconstruct(sino, theta, algorithm="fourier", device="cpu")
    gpu = reconstruct(sino, theta, algorithm="fourier", device="gpu")
    _close(gpu, cpu)


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
