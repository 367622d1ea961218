"""Slice reconstruction from parallel-beam sinograms: one entry point, several algorithms and backends.

Geometry (docs/architecture.md): ``img[row, col]`` at ``x = col - (n-1)/2``, ``y = row - (n-1)/2``;
``p(theta, s) = integral of f along x cos(theta) + y sin(theta) = s``; detector column ``u = s + center``.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._backend import array_module, is_gpu_array, resolve_device, to_device
from ._errors import InputError
from ._filters import FILTERS, check_filter

__all__ = ["reconstruct", "FILTERS", "ALGORITHMS", "BACKENDS"]

ALGORITHMS = ("fourier", "fbp")
BACKENDS = ("native", "tomopy", "astra")


def _angle_weights(theta: np.ndarray) -> np.ndarray | None:
    """Quadrature weights (radians) of the angles over one period of pi, or None when uniform.

    A line at theta + pi is the line at theta: angles are taken modulo pi, sorted, and each gets
    half the gap to its neighbours on that circle (the trapezoid rule), so the weights sum to pi.
    Equally spaced angles over 180 or 360 degrees give pi / n_angles each; then None is returned
    and the algorithms use that constant.
    """
    n = theta.size
    t = np.mod(theta, np.pi)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    gaps = np.diff(np.concatenate([ts, ts[:1] + np.pi]))  # gap to the next angle, wrapping
    w_sorted = 0.5 * (gaps + np.roll(gaps, 1))
    w = np.empty(n)
    w[order] = w_sorted
    uniform = np.pi / n
    if np.abs(w - uniform).max() <= 1e-6 * uniform:
        return None
    return w


def _check_inputs(sinograms, theta_rad, center, algorithm, filter_name, backend, out_size):
    if algorithm not in ALGORITHMS:
        raise InputError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    check_filter(filter_name)
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if sinograms.ndim not in (2, 3):
        raise InputError(
            "sinograms must be (n_angles, width) or (n_angles, n_slices, width), "
            f"got an array of shape {tuple(sinograms.shape)}"
        )
    n_angles, width = sinograms.shape[0], sinograms.shape[-1]
    n_slices = 1 if sinograms.ndim == 2 else sinograms.shape[1]
    if n_angles < 2 or width < 2 or n_slices < 1:
        raise InputError(f"sinograms need >= 2 angles and >= 2 detector columns, got shape {tuple(sinograms.shape)}")
    if not np.issubdtype(np.dtype(sinograms.dtype), np.number) or np.iscomplexobj(sinograms):
        raise InputError(f"sinograms must be real numbers, got dtype {sinograms.dtype}")
    xp = array_module(sinograms)
    if not bool(xp.isfinite(sinograms).all()):
        raise InputError("sinograms contain NaN or inf values (check the -log of flat-field corrected data)")
    theta = np.asarray(to_device(theta_rad, "cpu"), dtype=np.float64).ravel()
    if theta.size != n_angles:
        raise InputError(f"theta_rad has {theta.size} angles but the sinograms have {n_angles} (axis 0)")
    if not np.isfinite(theta).all():
        raise InputError("theta_rad contains NaN or inf")
    if center is None:
        centers = np.full(n_slices, (width - 1) / 2.0)
    else:
        centers = np.asarray(to_device(center, "cpu"), dtype=np.float64).ravel()
        if centers.size == 1:
            centers = np.full(n_slices, centers[0])
        elif centers.size != n_slices:
            raise InputError(f"center must be one value or one per slice ({n_slices}), got {centers.size} values")
    if not np.isfinite(centers).all() or (centers < 0).any() or (centers > width - 1).any():
        bad = centers[~np.isfinite(centers) | (centers < 0) | (centers > width - 1)][0]
        raise InputError(f"center {bad} is outside the detector: expected 0 <= center <= {width - 1} (pixels)")
    if out_size is None:
        n = width
    else:
        if not isinstance(out_size, numbers.Integral) or isinstance(out_size, bool) or out_size < 1:
            raise InputError(f"out_size must be a positive integer number of pixels, got {out_size!r}")
        n = int(out_size)
    return theta, centers, n


def reconstruct(
    sinograms,
    theta_rad,
    center=None,
    *,
    algorithm: str = "fourier",
    filter_name: str = "ramp",
    device: str = "auto",
    backend: str = "native",
    out_size: int | None = None,
):
    """Reconstruct parallel-beam slices from -log'd sinograms.

    Parameters
    ----------
    sinograms : numpy.ndarray or cupy.ndarray
        Line integrals (attenuation x pixels, dimensionless), ``(n_angles, width)`` for one slice or
        ``(n_angles, n_slices, width)`` for a stack.
    theta_rad : array_like
        Projection angles in radians, one per row of axis 0, in any order and spacing: each
        angle is weighted by half the gap to its neighbours modulo pi (trapezoid rule), which is
        pi / n_angles for equally spaced angles over 180 or 360 degrees.
    center : float or array_like, optional
        Rotation axis position in detector pixels (column k's centre at k); one value, or one per
        slice. Default ``(width - 1) / 2``.
    algorithm : {"fourier", "fbp"}
        "fourier": direct Fourier (gridrec-class) method, fastest; "fbp": filtered
        back-projection with linear interpolation. Both use a zero-padded detector (at least
        twice the larger of width and n) and give the same resolution: the direct Fourier
        method applies sinc(nu)^2, the response of linear interpolation, to its radial filter.
    filter_name : {"ramp", "shepp", "cosine", "hann", "parzen"}
        Ramp filter times this window (see :data:`FILTERS`).
    device : {"auto", "cpu", "gpu"}
        Where a NumPy input is computed; CuPy input is computed on the GPU.
    backend : {"native", "tomopy", "astra"}
        "native" runs this package's kernels. "tomopy" runs TomoPy's gridrec ("fourier") or fbp;
        "astra" runs ASTRA's FBP for either algorithm (linear projector on the CPU, FBP_CUDA with
        ``device="gpu"`` or CuPy input). Both are mapped onto this geometry and raise InputError
        when the library cannot be imported.
    out_size : int, optional
        Slice size n in pixels (default: the detector width); the slice is centred on the axis.

    Returns
    -------
    numpy.ndarray or cupy.ndarray
        float32 attenuation per pixel (1/pixel), ``(n, n)`` or ``(n_slices, n, n)``; CuPy when
        the input was CuPy.

    Raises
    ------
    InputError
        Unknown algorithm, filter, backend or device; wrong shapes; theta length mismatch;
        NaN/inf; centre outside the detector; backend library not importable.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 180, endpoint=False)
    >>> sino = np.zeros((180, 64), np.float32)
    >>> sino[:, 31:33] = 1.0  # a thin rod on the axis
    >>> img = reconstruct(sino, theta, device="cpu")
    >>> img.shape, img.dtype
    ((64, 64), dtype('float32'))
    >>> bool(np.unravel_index(np.argmax(img), img.shape) in [(31, 31), (31, 32), (32, 31), (32, 32)])
    True
    """
    theta, centers, n = _check_inputs(sinograms, theta_rad, center, algorithm, filter_name, backend, out_size)
    gpu_in = is_gpu_array(sinograms)
    dev = resolve_device(device, sinograms)
    single = sinograms.ndim == 2
    data = to_device(sinograms, dev)
    xp = array_module(data)
    stack = data[None] if single else xp.moveaxis(data, 1, 0)
    stack = xp.ascontiguousarray(stack, dtype=xp.float32)  # (n_slices, n_angles, width)
    weights = _angle_weights(theta)
    if weights is not None:  # the algorithms weight each angle by pi / n_angles: rescale rows
        factor = xp.asarray((weights * theta.size / np.pi).astype(np.float32))
        stack = stack * factor[None, :, None]

    if backend == "native":
        if algorithm == "fourier":
            from . import fourier

            run = fourier.fourier_gpu if dev == "gpu" else fourier.fourier_cpu
        else:
            from . import fbp

            run = fbp.fbp_gpu if dev == "gpu" else fbp.fbp_cpu
        out = run(stack, theta, centers, n, filter_name)
    else:
        from . import _backends_ext

        # external libraries take host arrays; "auto" runs them on the CPU unless the input is CuPy
        use_gpu = dev == "gpu" and (device == "gpu" or gpu_in)
        out = _backends_ext.run_backend(
            backend, to_device(stack, "cpu"), theta, centers, n, algorithm=algorithm,
            filter_name=filter_name, gpu=use_gpu,
        )
    out = out[0] if single else out
    if gpu_in:
        return to_device(out, "gpu")
    if is_gpu_array(out):
        return to_device(out, "cpu")
    return out
