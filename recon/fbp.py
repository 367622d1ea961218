"""Filtered back-projection: zero-padded FFT filtering along the detector, linear back-projection.

    f(x, y) = (pi / N_a) sum_a q_a(x cos_a + y sin_a + c),   q_a = IFFT(FFT(p_a, L) * R),

with R the ramp times the chosen window (:mod:`recon._filters`) and L >= 2 max(width, n).
q_a is interpolated linearly between detector columns and falls linearly to zero over the
pixel beyond each end of the detector.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from ._filters import filter_response, padded_length


def _filtered_cpu(sino: np.ndarray, filter_name: str, n_pad: int) -> np.ndarray:
    width = sino.shape[-1]
    resp = filter_response(filter_name, n_pad)
    spec = scipy.fft.rfft(sino, n=n_pad, axis=-1, workers=-1)
    spec *= resp
    q = scipy.fft.irfft(spec, n=n_pad, axis=-1, workers=-1)
    out = np.zeros(q.shape[:-1] + (width + 2,), np.float32)  # one zero column on each side
    out[..., 1 : width + 1] = q[..., :width]
    return out


def fbp_cpu(sinos: np.ndarray, theta_rad: np.ndarray, centers: np.ndarray, n: int, filter_name: str) -> np.ndarray:
    """Reconstruct a stack ``(n_slices, n_angles, width)`` float32 on the CPU -> ``(n_slices, n, n)``."""
    from ._cpu_kernels import backproject_linear

    n_slices, n_angles, width = sinos.shape
    n_pad = padded_length(width, n)
    cos_t = np.cos(theta_rad).astype(np.float64)
    sin_t = np.sin(theta_rad).astype(np.float64)
    out = np.empty((n_slices, n, n), np.float32)
    scale = np.pi / n_angles
    for i in range(n_slices):
        q = _filtered_cpu(sinos[i], filter_name, n_pad)
        backproject_linear(q, cos_t, sin_t, float(centers[i]), n, scale, out[i])
    return out


def fbp_gpu(sinos, theta_rad: np.ndarray, centers: np.ndarray, n: int, filter_name: str):
    """GPU version of :func:`fbp_cpu`: CuPy stack in, CuPy ``(n_slices, n, n)`` float32 out."""
    import cupy as cp

    from ._cuda_kernels import backproject_gpu

    n_slices, n_angles, width = sinos.shape
    n_pad = padded_length(width, n)
    resp = cp.asarray(filter_response(filter_name, n_pad))
    cos_t = cp.asarray(np.cos(theta_rad), dtype=cp.float32)
    sin_t = cp.asarray(np.sin(theta_rad), dtype=cp.float32)
    out = cp.empty((n_slices, n, n), cp.float32)
    scale = np.pi / n_angles
    for i in range(n_slices):
        spec = cp.fft.rfft(sinos[i], n=n_pad, axis=-1) * resp
        qp = cp.zeros((n_angles, width + 2), cp.float32)  # one zero column on each side
        qp[:, 1 : width + 1] = cp.fft.irfft(spec, n=n_pad, axis=-1)[:, :width]
        out[i] = backproject_gpu(qp, cos_t, sin_t, float(centers[i]), n, scale)
    return out
