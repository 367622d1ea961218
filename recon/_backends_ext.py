"""Wrappers mapping TomoPy and ASTRA reconstructions onto this package's geometry.

ASTRA ("parallel" geometry, 2-D volume with y pointing up): our slice is ASTRA's volume flipped
upside down, which is the same as passing the angles ``-theta``; its detector is centred at
``(W - 1) / 2``, so an off-centre axis is moved there by shifting the sinogram (integer shift by
zero padding, the sub-pixel rest by a Fourier phase ramp).

TomoPy: the centre is a detector position with column k's centre at k, as here. Its image
orientation (one of the 8 flips/transposes of a square) and scale are found once per process
and algorithm by reconstructing an off-centre disc of known value and comparing with this
package's own reconstruction. TomoPy is not installed in the development environment: this
calibration is the safety net for a mapping that could not be checked there.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from ._errors import InputError

_TOMOPY_FILTERS = {"ramp": "ramlak", "shepp": "shepp", "cosine": "cosine", "hann": "hann", "parzen": "parzen"}
_ASTRA_FILTERS = {"ramp": "ram-lak", "shepp": "shepp-logan", "cosine": "cosine", "hann": "hann", "parzen": "parzen"}


def _import(name: str):
    try:
        if name == "astra":
            import astra

            return astra
        import tomopy

        return tomopy
    except Exception as exc:  # ImportError, or a broken binary install
        raise InputError(
            f"backend={name!r} needs the '{name}' package, which cannot be imported here "
            f"({type(exc).__name__}: {exc}); use backend='native' or install it"
        ) from None


def _centre_on_detector(sino: np.ndarray, center: float) -> np.ndarray:
    """Shift/pad ``sino`` (n_angles, W) so that ``center`` lands on the detector middle."""
    width = sino.shape[-1]
    two_c = 2.0 * center
    frac = (two_c - np.round(two_c)) / 2.0  # sub-pixel rest, |frac| <= 0.25
    if abs(frac) > 1e-9:
        n_pad = scipy.fft.next_fast_len(2 * width)
        spec = scipy.fft.rfft(sino, n=n_pad, axis=-1)
        nu = np.arange(spec.shape[-1]) / n_pad
        spec *= np.exp(2j * np.pi * nu * frac)  # p(u) -> p(u + frac): axis moves to centre - frac
        sino = scipy.fft.irfft(spec, n=n_pad, axis=-1)[:, :width]
        two_c = float(np.round(two_c))
    # pad so that centre c' = (W' - 1) / 2
    diff = int(round(two_c - (width - 1)))  # = pr - pl
    pl, pr = (0, diff) if diff >= 0 else (-diff, 0)
    return np.pad(sino, ((0, 0), (pl, pr)))


def _astra_slices(stack, theta, centers, n, filter_name, gpu):
    astra = _import("astra")
    if gpu and not astra.use_cuda():
        raise InputError("backend='astra' on the GPU needs an ASTRA build with CUDA; use device='cpu'")
    out = np.empty((stack.shape[0], n, n), np.float32)
    vol_geom = astra.create_vol_geom(n, n)
    for i in range(stack.shape[0]):
        sino = _centre_on_detector(stack[i].astype(np.float64), centers[i]).astype(np.float32)
        proj_geom = astra.create_proj_geom("parallel", 1.0, sino.shape[1], -theta)
        sid = astra.data2d.create("-sino", proj_geom, sino)
        rid = astra.data2d.create("-vol", vol_geom)
        pid = None
        try:
            if gpu:
                cfg = astra.astra_dict("FBP_CUDA")
            else:
                pid = astra.create_projector("linear", proj_geom, vol_geom)
                cfg = astra.astra_dict("FBP")
                cfg["ProjectorId"] = pid
            cfg["ReconstructionDataId"] = rid
            cfg["ProjectionDataId"] = sid
            cfg["option"] = {"FilterType": _ASTRA_FILTERS[filter_name]}
            aid = astra.algorithm.create(cfg)
            try:
                astra.algorithm.run(aid)
            finally:
                astra.algorithm.delete(aid)
            out[i] = astra.data2d.get(rid)
        finally:
            astra.data2d.delete([sid, rid])
            if pid is not None:
                astra.projector.delete(pid)
    return out


def _dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 flips/transposes of the last two axes (k = 0 is the identity)."""
    out = np.swapaxes(img, -1, -2) if k & 4 else img
    if k & 1:
        out = out[..., ::-1, :]
    if k & 2:
        out = out[..., :, ::-1]
    return out


def _tomopy_call(tomopy, stack, theta, centers, n, algorithm, filter_name):
    tomo = np.ascontiguousarray(np.moveaxis(stack, 0, 1), dtype=np.float32)  # (angles, slices, W)
    algo = "gridrec" if algorithm == "fourier" else "fbp"
    rec = tomopy.recon(
        tomo, theta, center=np.asarray(centers, np.float32), algorithm=algo,
        filter_name=_TOMOPY_FILTERS[filter_name], sinogram_order=False,
    )
    rec = np.asarray(rec, np.float32)
    width = stack.shape[-1]
    if n != width:  # TomoPy returns width x width slices centred like ours: crop or pad
        lo = (width - n) // 2
        if n < width:
            rec = rec[:, lo : lo + n, lo : lo + n]
        else:
            p = (n - width) // 2
            rec = np.pad(rec, ((0, 0), (p, n - width - p), (p, n - width - p)))
    return rec


@functools.cache
def _tomopy_calibration(algorithm: str) -> tuple[int, float]:
    """Orientation (one of 8 flips/transposes) and scale mapping TomoPy's output onto ours.

    Found from an off-centre disc of value 1 with an off-centre axis, whose analytic projections
    are known: the flip that best matches this package's reconstruction, and the ratio of the
    disc's mean value (ours is checked against the analytic value in the tests).
    """
    from .fbp import fbp_cpu

    tomopy = _import("tomopy")
    width, n_angles, center = 64, 180, 33.0
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    x0, y0, r = 12.0, -7.0, 5.0  # a disc centred at column 43.5, row 24.5
    s = np.arange(width) - center - (x0 * np.cos(theta) + y0 * np.sin(theta))[:, None]
    sino = (2 * np.sqrt(np.maximum(r * r - s * s, 0.0)))[None].astype(np.float32)
    ours = fbp_cpu(sino, theta, np.array([center]), width, "ramp")[0]
    theirs = _tomopy_call(tomopy, sino, theta, [center], width, algorithm, "ramp")[0]
    errs = [float(np.abs(_dihedral(theirs, k) / max(np.abs(theirs).max(), 1e-30) - ours / ours.max()).mean()) for k in range(8)]
    k = int(np.argmin(errs))
    c = np.arange(width) - (width - 1) / 2
    inside = np.add.outer((c - y0) ** 2, (c - x0) ** 2) < (r - 2) ** 2
    scale = float(ours[inside].mean() / _dihedral(theirs, k)[inside].mean())
    return k, scale


def run_backend(backend, stack, theta, centers, n, *, algorithm, filter_name, gpu):
    """Reconstruct ``stack`` (n_slices, n_angles, width) with TomoPy or ASTRA -> (n_slices, n, n)."""
    if backend == "astra":
        return _astra_slices(stack, theta, centers, n, filter_name, gpu)
    tomopy = _import("tomopy")
    k, scale = _tomopy_calibration(algorithm)
    rec = _tomopy_call(tomopy, stack, theta, centers, n, algorithm, filter_name)
    return np.ascontiguousarray(_dihedral(rec, k) * np.float32(scale))
