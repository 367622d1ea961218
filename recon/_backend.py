"""CPU/GPU array-module dispatch: NumPy or CuPy, chosen from the input array.

No GPU library is imported at module import time; CuPy is looked up on first use.
"""

from __future__ import annotations

import functools
import types

import numpy as np

from ._errors import InputError

DEVICES = ("auto", "cpu", "gpu")


@functools.cache
def cupy_or_none() -> types.ModuleType | None:
    """Return the ``cupy`` module when it imports and sees a CUDA device, else None."""
    try:
        import cupy
    except Exception:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:
        return None
    return cupy


def gpu_available() -> bool:
    """Whether a CUDA GPU is usable through CuPy."""
    return cupy_or_none() is not None


def array_module(x) -> types.ModuleType:
    """Return ``cupy`` for a CuPy array and ``numpy`` for anything else."""
    if type(x).__module__.startswith("cupy"):
        return cupy_or_none() or np
    return np


def is_gpu_array(x) -> bool:
    """Whether ``x`` is a CuPy array."""
    return type(x).__module__.startswith("cupy")


def resolve_device(device: str, x=None) -> str:
    """Resolve ``device`` ("auto", "cpu" or "gpu") to "cpu" or "gpu".

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        Requested device. "auto" follows the input array, then uses a GPU when one is usable.
    x : array, optional
        Input array; a CuPy array makes "auto" resolve to "gpu".

    Raises
    ------
    InputError
        For an unknown device name, or "gpu" without a usable GPU.
    """
    if device not in DEVICES:
        raise InputError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        if x is not None and is_gpu_array(x):
            return "gpu"
        return "gpu" if gpu_available() else "cpu"
    if device == "gpu" and not gpu_available():
        raise InputError("device='gpu' was requested but no CUDA GPU is usable (is CuPy installed?)")
    return device


def to_device(x, device: str):
    """Move ``x`` to "cpu" (NumPy) or "gpu" (CuPy); no copy when already there."""
    if device == "gpu":
        cp = cupy_or_none()
        if cp is None:
            raise InputError("no CUDA GPU is usable (is CuPy installed?)")
        return cp.asarray(x)
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


def ndimage_module(xp: types.ModuleType) -> types.ModuleType:
    """``scipy.ndimage`` for NumPy, ``cupyx.scipy.ndimage`` for CuPy."""
    if xp is np:
        import scipy.ndimage

        return scipy.ndimage
    import cupyx.scipy.ndimage

    return cupyx.scipy.ndimage
