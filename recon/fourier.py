"""Direct Fourier reconstruction (gridrec class): filtered polar spectra gridded onto a Cartesian grid.

For each angle theta_a the zero-padded projection is Fourier transformed (length L), multiplied
by the filter and by the phase that moves the rotation centre to the origin. By the Fourier slice
theorem these samples lie on a radial line of the 2-D spectrum; back-projection is then the sum

    f(x, y) = (pi / N_a) (1 / L) sum_{a, k} R_k P_a(k) exp(2 pi i nu_k (x cos_a + y sin_a + c)),

an adjoint non-uniform FFT. It is evaluated by spreading each sample onto an oversampled grid
(``G >= 2 n``) with the "exponential of semicircle" kernel, a 2-D inverse FFT, division by the
kernel's Fourier transform (deapodisation) and cropping. Real inputs give a Hermitian spectrum:
one slice uses only the non-negative frequencies (real part of the result), two slices travel
together as the real and imaginary parts of one grid.

The radial filter also carries sinc(nu)^2, the frequency response of the linear interpolation in
:mod:`recon.fbp`, so that both algorithms give the same resolution (and a smaller error against
pixel-averaged phantoms than the unfiltered band limit, which rings more at edges).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

from ._cpu_kernels import es_table
from ._filters import filter_response

#: Kernel width (grid cells) and grid oversampling; width 6 at sigma = 1.5 gives about 1e-5 relative
#: accuracy of the gridding step, well below float32 reconstruction noise.
KERNEL_WIDTH = 6
OVERSAMPLING = 1.5
_TABLE_UPSAMPLING = 512  # kernel table samples per grid cell (linear interpolation)


def _even_fast_len(target: int) -> int:
    n = scipy.fft.next_fast_len(int(target), real=True)
    while n % 2:
        n = scipy.fft.next_fast_len(n + 1, real=True)
    return n


def _deapodisation(n: int, g: int, width: int, beta: float) -> np.ndarray:
    """Fourier transform of the ES kernel at pixel offsets m = -(n//2) .. n - n//2 - 1."""
    m = np.arange(n) - n // 2
    nodes, weights = np.polynomial.legendre.leggauss(4 * width + 40)
    half = 0.5 * width
    t = half * 0.5 * (nodes + 1.0)  # [0, half]
    wt = half * 0.5 * weights
    psi = np.exp(beta * (np.sqrt(np.maximum(1.0 - (t / half) ** 2, 0.0)) - 1.0))
    return 2.0 * (np.cos(2.0 * np.pi * np.outer(m, t) / g) @ (wt * psi))


class _Plan:
    """Geometry tables for one (angles, width, n, filter) combination, cached."""

    def __init__(self, theta: np.ndarray, width: int, n: int, filter_name: str, n_threads: int):
        self.n_angles = theta.size
        self.n = n
        self.n_pad = _even_fast_len(2 * max(width, n))
        # the spreading kernel must fit inside one period of the grid (tiny images), else
        # its wrapped taps would land outside the grid
        self.g = _even_fast_len(max(math.ceil(OVERSAMPLING * n), 2 * KERNEL_WIDTH))
        self.width = KERNEL_WIDTH
        # ES shape parameter for oversampling sigma (Barnett et al. 2019, FINUFFT)
        self.beta = 0.97 * np.pi * KERNEL_WIDTH * (1.0 - 0.5 / OVERSAMPLING)
        self.ups = _TABLE_UPSAMPLING
        self.table = es_table(self.width, self.beta, self.ups)
        self.cos = np.cos(theta)
        self.sin = np.sin(theta)
        L = self.n_pad
        k_half = np.arange(L // 2 + 1)
        self.nu_half = k_half / L
        # sinc^2 is the frequency response of linear interpolation: the same resolution as "fbp"
        resp = filter_response(filter_name, L).astype(np.float64) * np.sinc(self.nu_half) ** 2
        scale = np.pi / self.n_angles / L
        w_half = np.full(k_half.size, 2.0)
        w_half[0] = 1.0
        w_half[-1] = 1.0
        # half spectrum (one slice): weights fold the negative frequencies in; take the real part
        self.filt_half = (resp * w_half * scale).astype(np.float32)
        # full spectrum (two slices): k = -L/2 .. L/2, Nyquist split in two
        self.filt_full = np.concatenate([resp[:0:-1], resp]) * scale
        self.filt_full[0] *= 0.5
        self.filt_full[-1] *= 0.5
        self.nu_full = np.arange(-(L // 2), L // 2 + 1) / L
        # even n: pixel centres sit half a pixel off the integer grid of the FFT
        self.delta = 0.5 if n % 2 == 0 else 0.0
        self.gnu_half = self.nu_half * self.g
        self.gnu_full = self.nu_full * self.g
        d = _deapodisation(n, self.g, self.width, self.beta)
        self.deapod = (1.0 / np.outer(d, d)).astype(np.float32)
        self.crop = np.r_[self.g - n // 2 : self.g, 0 : n - n // 2]
        n_bands = max(1, min(max(8, 4 * n_threads), self.g // (self.width + 1)))
        self.band_edges = np.linspace(0, self.g, n_bands + 1).astype(np.int64)
        self._gpu = None

    @functools.cached_property
    def tphase(self) -> np.ndarray:
        """exp(2 pi i nu_k delta (cos + sin)), (n_angles, L/2 + 1) complex64; (0, 0) when delta = 0."""
        if self.delta == 0.0:
            return np.zeros((0, 0), np.complex64)
        s = self.delta * (self.cos + self.sin)
        return np.exp(2j * np.pi * np.outer(s, self.nu_half)).astype(np.complex64)

    def center_vector(self, center: float, full: bool) -> np.ndarray:
        """Filter x weights x exp(2 pi i nu_k center) per sample index, complex64."""
        nu, filt = (self.nu_full, self.filt_full) if full else (self.nu_half, self.filt_half)
        return (filt * np.exp(2j * np.pi * nu * center)).astype(np.complex64)

    def gpu_tables(self, cp):
        """The tables the CUDA path needs, moved to the GPU once."""
        if self._gpu is None:
            f32 = np.float32
            self._gpu = {
                "cos": cp.asarray(self.cos, dtype=f32),
                "sin": cp.asarray(self.sin, dtype=f32),
                "gnu_half": cp.asarray(self.gnu_half, dtype=f32),
                "gnu_full": cp.asarray(self.gnu_full, dtype=f32),
                "filt_half": cp.asarray(self.filt_half, dtype=f32),
                "filt_full": cp.asarray(self.filt_full, dtype=f32),
                "deapod": cp.asarray(self.deapod * np.float32(self.g * self.g)),
                "crop": cp.asarray(self.crop),
            }
            if self.delta:
                t = self.tphase
                self._gpu["tphase_half"] = cp.asarray(t)
                self._gpu["tphase_full"] = cp.asarray(np.concatenate([np.conj(t[:, :0:-1]), t], axis=1))
        return self._gpu


@functools.lru_cache(maxsize=8)
def _plan_cached(theta_bytes: bytes, width: int, n: int, filter_name: str, n_threads: int, kw: int, sigma: float) -> _Plan:
    theta = np.frombuffer(theta_bytes, dtype=np.float64)
    return _Plan(theta, width, n, filter_name, n_threads)


def get_plan(theta_rad: np.ndarray, width: int, n: int, filter_name: str) -> _Plan:
    import numba

    theta = np.ascontiguousarray(theta_rad, dtype=np.float64)
    return _plan_cached(theta.tobytes(), int(width), int(n), filter_name, numba.get_num_threads(), KERNEL_WIDTH, OVERSAMPLING)


def _coefficients_cpu(plan: _Plan, sinos: np.ndarray, centers, full: bool) -> np.ndarray:
    """Filtered, phase-shifted spectra of 1 (half) or 2 (full, packed) sinograms, complex64."""
    from ._cpu_kernels import polar_coefficients

    spec = scipy.fft.rfft(sinos, n=plan.n_pad, axis=-1, workers=-1)  # (s, angles, L/2+1) complex64
    v1 = plan.center_vector(centers[0], full)
    v2 = plan.center_vector(centers[1], full) if full else v1
    n_k = plan.nu_full.size if full else plan.nu_half.size
    out = np.empty((plan.n_angles, n_k), np.complex64)
    spec2 = spec[1] if full else spec[0]
    return polar_coefficients(spec[0], spec2, v1, v2, plan.tphase, full, out)


def _grid_to_image_cpu(plan: _Plan, grid: np.ndarray) -> np.ndarray:
    """Pruned 2-D inverse FFT (only the n x n pixels kept), deapodised, complex64."""
    g = plan.g
    tmp = scipy.fft.ifft(grid, axis=1, workers=-1, overwrite_x=True)[:, plan.crop]
    img = scipy.fft.ifft(tmp, axis=0, workers=-1, overwrite_x=True)[plan.crop]
    img *= plan.deapod * np.float32(g * g)
    return img


def _grid_to_real_image_cpu(plan: _Plan, grid: np.ndarray) -> np.ndarray:
    """Real part of the deapodised image via a Hermitian half grid and a C2R transform, float32."""
    from ._cpu_kernels import hermitian_half

    g = plan.g
    half = hermitian_half(grid, np.empty((g, g // 2 + 1), np.complex64))
    tmp = scipy.fft.ifft(half, axis=0, workers=-1, overwrite_x=True)[plan.crop]
    img = scipy.fft.irfft(tmp, n=g, axis=1, workers=-1, overwrite_x=True)[:, plan.crop]
    img *= plan.deapod * np.float32(g * g)
    return img


def fourier_cpu(sinos: np.ndarray, theta_rad: np.ndarray, centers: np.ndarray, n: int, filter_name: str) -> np.ndarray:
    """Reconstruct a stack ``(n_slices, n_angles, width)`` float32 on the CPU -> ``(n_slices, n, n)``."""
    from ._cpu_kernels import grid_polar

    n_slices, _, width = sinos.shape
    plan = get_plan(theta_rad, width, n, filter_name)
    out = np.empty((n_slices, n, n), np.float32)
    grid = np.zeros((plan.g, plan.g), np.complex64)
    i = 0
    while i < n_slices:
        pair = i + 1 < n_slices
        sl = slice(i, i + 2 if pair else i + 1)
        coef = _coefficients_cpu(plan, sinos[sl], centers[sl], full=pair)
        gnu = plan.gnu_full if pair else plan.gnu_half
        grid[...] = 0
        grid_polar(
            coef, gnu, plan.cos, plan.sin, plan.width, plan.table, plan.ups, plan.band_edges, grid.view(np.float32)
        )
        if pair:
            img = _grid_to_image_cpu(plan, grid)
            out[i] = img.real
            out[i + 1] = img.imag
        else:
            out[i] = _grid_to_real_image_cpu(plan, grid)
        i += 2 if pair else 1
    return out


def fourier_gpu(sinos, theta_rad: np.ndarray, centers: np.ndarray, n: int, filter_name: str):
    """GPU version of :func:`fourier_cpu`: CuPy stack in, CuPy ``(n_slices, n, n)`` float32 out."""
    import cupy as cp

    from ._cuda_kernels import grid_polar_gpu

    n_slices, _, width = sinos.shape
    plan = get_plan(theta_rad, width, n, filter_name)
    tab = plan.gpu_tables(cp)
    out = cp.empty((n_slices, n, n), cp.float32)
    grid = cp.zeros((plan.g, plan.g), cp.complex64)
    crop = tab["crop"]
    i = 0
    while i < n_slices:
        pair = i + 1 < n_slices
        spec = cp.fft.rfft(sinos[i : i + (2 if pair else 1)], n=plan.n_pad, axis=-1).astype(cp.complex64)
        if pair:
            v1 = cp.asarray(plan.center_vector(centers[i], True))
            v2 = cp.asarray(plan.center_vector(centers[i + 1], True))
            both = cp.concatenate([cp.conj(spec[:, :, :0:-1]), spec], axis=2)  # k = -L/2 .. L/2
            coef = both[0] * v1 + 1j * (both[1] * v2)
            gnu = tab["gnu_full"]
            tphase = tab.get("tphase_full")
        else:
            coef = spec[0] * cp.asarray(plan.center_vector(centers[i], False))
            gnu = tab["gnu_half"]
            tphase = tab.get("tphase_half")
        if tphase is not None:
            coef *= tphase
        grid.fill(0)
        grid_polar_gpu(coef.astype(cp.complex64), gnu, tab["cos"], tab["sin"], plan.width, plan.beta, grid)
        img = cp.fft.ifft2(grid)[crop[:, None], crop[None, :]] * tab["deapod"]
        out[i] = img.real
        if pair:
            out[i + 1] = img.imag
        i += 2 if pair else 1
    return out
