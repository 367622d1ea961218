"""Single-material phase retrieval (Paganin et al. 2002, J. Microsc. 206, 33).

For a homogeneous object with refractive index ``n = 1 - delta + i beta``, the intensity
``I(z)`` recorded at a distance ``z`` behind it in the near field relates to the projected
thickness ``T`` by

    T = -(1 / mu) * ln( F^-1[ F[I(z) / I0] / (1 + z delta k_perp^2 / mu) ] ),

with ``mu = 4 pi beta / lambda`` the linear attenuation coefficient and ``k_perp`` the
transverse spatial frequency in radians per length. :func:`paganin_filter` applies the
Fourier filter to the flat-field corrected transmission; apply :func:`recon.minus_log`
afterwards (as TomoPy does) to obtain ``mu * T``, i.e. attenuation line integrals.
"""

from __future__ import annotations

import numpy as np

from ._backend import array_module
from ._errors import InputError

__all__ = ["paganin_filter", "wavelength_um"]

#: h c in keV * Angstrom: lambda [A] = 12.398 / E [keV].
HC_KEV_ANGSTROM = 12.398419843320026


def wavelength_um(energy_kev: float) -> float:
    """X-ray wavelength in micrometres for a photon energy in keV.

    >>> round(wavelength_um(12.398419843320026) * 1e4, 6)  # 1 Angstrom
    1.0
    """
    return HC_KEV_ANGSTROM / energy_kev * 1e-4


def _check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def _frequency_sq(xp, n: int, pixel_size_um: float):
    """Squared angular spatial frequencies (rad/um)^2 for an FFT axis of length n."""
    k = 2.0 * np.pi * xp.fft.fftfreq(n, d=pixel_size_um)
    return k * k


def paganin_filter(transmission, *, pixel_size_um: float, distance_mm: float, energy_kev: float,
                   delta_beta: float, pad: bool = True):
    """Paganin single-material phase-retrieval filter on transmission images.

    Multiplies the 2-D Fourier transform of each projection by
    ``1 / (1 + distance * (delta / beta) * lambda / (4 pi) * |k|^2)``
    (``k`` in radians per length), a low-pass filter that turns the propagation-induced
    edge fringes back into the contrast of the projected thickness.

    Parameters
    ----------
    transmission : ndarray, shape (n_rows, n_cols) or (n_angles, n_rows, n_cols)
        Flat-field corrected intensity ``I / I0`` (unitless), NumPy or CuPy.
    pixel_size_um : float
        Effective detector pixel size at the sample (um).
    distance_mm : float
        Sample-to-detector propagation distance (mm); 0 makes the filter the identity.
    energy_kev : float
        Photon energy (keV); the wavelength is 12.398 keV*Angstrom / energy.
    delta_beta : float
        Ratio delta / beta of the material's refractive index decrement to its absorption
        index (unitless), e.g. about 1000 for light materials at 20-30 keV.
    pad : bool
        Pad each image by half its size on every side with edge values before the FFT, so
        that the filter does not wrap one edge onto the other; the result is cropped back.

    Returns
    -------
    ndarray, float32, same shape and array kind as ``transmission``
        Filtered transmission; ``minus_log(result) / mu`` is the projected thickness with
        ``mu = 4 pi beta / lambda``.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((32, 32), 0.8)
    >>> out = paganin_filter(img, pixel_size_um=1.0, distance_mm=100.0, energy_kev=25.0, delta_beta=1000.0)
    >>> bool(np.allclose(out, 0.8))  # a uniform image is unchanged
    True
    """
    pixel = _check_positive(pixel_size_um, "pixel_size_um")
    distance_um = _check_positive(distance_mm, "distance_mm", allow_zero=True) * 1e3
    energy = _check_positive(energy_kev, "energy_kev")
    ratio = _check_positive(delta_beta, "delta_beta", allow_zero=True)
    xp = array_module(transmission)
    data = xp.asarray(transmission)
    if data.ndim not in (2, 3):
        raise InputError(
            f"transmission has shape {tuple(data.shape)}; expected (n_rows, n_cols) "
            "or (n_angles, n_rows, n_cols)"
        )
    data = data.astype(xp.float32, copy=False)
    was_2d = data.ndim == 2
    if was_2d:
        data = data[None]
    n_rows, n_cols = data.shape[1:]
    if pad:
        pr, pc = n_rows // 2, n_cols // 2
        work_rows, work_cols = n_rows + 2 * pr, n_cols + 2 * pc
    else:
        pr = pc = 0
        work_rows, work_cols = n_rows, n_cols

    alpha_um2 = distance_um * ratio * wavelength_um(energy) / (4.0 * np.pi)
    k2 = _frequency_sq(xp, work_rows, pixel)[:, None] + _frequency_sq(xp, work_cols, pixel)[None, :]
    filt = (1.0 / (1.0 + alpha_um2 * k2)).astype(xp.float32)

    out = xp.empty_like(data)
    for i in range(data.shape[0]):  # one image at a time keeps the padded FFT memory small
        img = data[i]
        if pad:
            img = xp.pad(img, ((pr, pr), (pc, pc)), mode="edge")
        spec = xp.fft.fft2(img)
        spec *= filt
        res = xp.fft.ifft2(spec).real
        out[i] = res[pr : pr + n_rows, pc : pc + n_cols]
    return out[0] if was_2d else out
