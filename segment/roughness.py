"""Surface roughness of an interface height map: Ra, Rq and the ISO 25178 areal parameters.

Definitions (SCIENCE.md section 3 and ISO 25178-2), with Z(x, y) the height relative to the
reference (levelled) surface over the evaluation area A:

- Ra = Sa = (1/A) ∬ |Z| dA,  Rq = Sq = sqrt((1/A) ∬ Z^2 dA)
- Sz = max(Z) - min(Z) (maximum peak height plus maximum pit depth)
- Ssk = (1/A) ∬ Z^3 dA / Sq^3,  Sku = (1/A) ∬ Z^4 dA / Sq^4
- Sdr = ((1/A) ∬ sqrt(1 + |grad Z|^2) dA) - 1, the developed interfacial area ratio
- Sal: the autocorrelation length, the shortest lag at which the (radially averaged)
  autocorrelation decays to 0.2
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._errors import InputError

__all__ = ["RoughnessResult", "level_surface", "roughness"]

LEVELS = ("plane", "poly2", None)


@dataclass
class RoughnessResult:
    """Roughness parameters of a height map (all heights in um).

    Attributes
    ----------
    Ra, Rq : float
        Arithmetic mean and root-mean-square height deviation in um (SCIENCE.md section 3).
    Sa, Sq, Sz : float
        ISO 25178 areal equivalents in um (Sa = Ra, Sq = Rq, Sz = peak-to-pit height).
    Ssk, Sku : float
        Skewness and kurtosis of the height distribution (dimensionless).
    Sdr : float
        Developed interfacial area ratio (dimensionless; 0 for a flat surface).
    correlation_length_um : float
        Autocorrelation length Sal in um (lag where the radial autocorrelation falls to 0.2);
        NaN when it does not fall that far inside the map.
    psd_freq_per_um : ndarray
        Radial spatial frequencies in cycles per um.
    psd_um4 : ndarray
        Radially averaged power spectral density in um^4 (um^2 of height^2 per cycle^2 um^-2).
    n_points : int
        Number of valid height points used.
    """

    Ra: float
    Rq: float
    Sa: float
    Sq: float
    Sz: float
    Ssk: float
    Sku: float
    Sdr: float
    correlation_length_um: float
    psd_freq_per_um: np.ndarray = field(repr=False)
    psd_um4: np.ndarray = field(repr=False)
    n_points: int = 0

    def scalars(self) -> dict:
        """The scalar parameters as a JSON-friendly dict (um or dimensionless)."""
        keys = ("Ra", "Rq", "Sa", "Sq", "Sz", "Ssk", "Sku", "Sdr", "correlation_length_um", "n_points")
        out = {}
        for k in keys:
            v = getattr(self, k)
            if isinstance(v, float) and not np.isfinite(v):
                out[k] = None
            else:
                out[k] = int(v) if k == "n_points" else float(v)
        return out


def _design(ny: int, nx: int, pixel_size_um: float, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    y = (yy - (ny - 1) / 2) * pixel_size_um
    x = (xx - (nx - 1) / 2) * pixel_size_um
    cols = [np.ones_like(x), x, y]
    if order == 2:
        cols += [x * x, x * y, y * y]
    return np.stack(cols, axis=-1), x, y


def level_surface(height_um, *, pixel_size_um: float, level: str | None = "plane", mask=None) -> np.ndarray:
    """Subtract the least-squares reference surface from a height map.

    Parameters
    ----------
    height_um : ndarray, (y, x)
        Heights in um; NaN marks missing points.
    pixel_size_um : float
        Lateral sampling in um.
    level : {"plane", "poly2", None}
        Reference surface: a plane, a second-order polynomial, or only the mean.
    mask : ndarray of bool, optional
        Points to use (in addition to the finite ones).

    Returns
    -------
    ndarray
        Height residual in um (NaN where the input was NaN or masked out), zero mean.
    """
    z = np.asarray(height_um, dtype=np.float64)
    if level not in LEVELS:
        raise InputError(f"level must be one of {LEVELS}, got {level!r}")
    valid = np.isfinite(z)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    if valid.sum() < 3:
        raise InputError(f"height map has {int(valid.sum())} valid points; need at least 3")
    out = np.full(z.shape, np.nan)
    if level is None:
        out[valid] = z[valid] - z[valid].mean()
        return out
    design, _, _ = _design(*z.shape, pixel_size_um, 2 if level == "poly2" else 1)
    coef, *_ = np.linalg.lstsq(design[valid], z[valid], rcond=None)
    resid = z - design @ coef
    out[valid] = resid[valid] - resid[valid].mean()
    return out


def _radial_average(img: np.ndarray, weight: np.ndarray | None, r: np.ndarray, nbins: int, rmax: float):
    edges = np.linspace(0.0, rmax, nbins + 1)
    idx = np.digitize(r.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < nbins)
    w = np.ones(r.size) if weight is None else weight.ravel()
    num = np.bincount(idx[ok], weights=(img.ravel() * w)[ok], minlength=nbins)
    den = np.bincount(idx[ok], weights=w[ok], minlength=nbins)
    centers = 0.5 * (edges[:-1] + edges[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        return centers, num / den


def _autocorrelation_length(z0: np.ndarray, valid: np.ndarray, pixel_size_um: float, s: float = 0.2) -> float:
    ny, nx = z0.shape
    shape = (2 * ny, 2 * nx)
    f = np.fft.rfft2(z0, shape)
    m = np.fft.rfft2(valid.astype(np.float64), shape)
    acf = np.fft.irfft2(np.abs(f) ** 2, shape)
    cnt = np.fft.irfft2(np.abs(m) ** 2, shape)
    acf = np.fft.fftshift(acf)
    cnt = np.fft.fftshift(cnt)
    good = cnt > 0.25 * cnt.max()  # lags with enough overlapping points
    with np.errstate(invalid="ignore", divide="ignore"):
        acf = np.where(good, acf / np.where(good, cnt, 1.0), np.nan)
    acf /= acf[ny, nx]
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    r = np.hypot(yy - ny, xx - nx)
    rmax = min(ny, nx)
    finite = np.isfinite(acf)
    centers, prof = _radial_average(np.nan_to_num(acf), finite.astype(float), r, int(rmax), float(rmax))
    centers = np.concatenate([[0.0], centers])
    prof = np.concatenate([[1.0], prof])
    below = np.nonzero(prof <= s)[0]
    if below.size == 0:
        return float("nan")
    i = below[0]
    r0, r1, p0, p1 = centers[i - 1], centers[i], prof[i - 1], prof[i]
    lag = r0 + (p0 - s) * (r1 - r0) / (p0 - p1)
    return float(lag * pixel_size_um)


def _psd(z0: np.ndarray, pixel_size_um: float):
    ny, nx = z0.shape
    f = np.fft.fft2(z0)
    psd2 = (np.abs(f) ** 2) * pixel_size_um**2 / (ny * nx)
    fy = np.fft.fftfreq(ny, d=pixel_size_um)
    fx = np.fft.fftfreq(nx, d=pixel_size_um)
    q = np.hypot(fy[:, None], fx[None, :])
    qmax = 0.5 / pixel_size_um
    nbins = max(min(ny, nx) // 2, 2)
    centers, prof = _radial_average(psd2, None, q, nbins, qmax)
    keep = np.isfinite(prof)
    return centers[keep], prof[keep]


def roughness(height_um, pixel_size_um: float, *, level: str | None = "plane", mask=None) -> RoughnessResult:
    """Roughness parameters of an interface height map.

    Parameters
    ----------
    height_um : array_like, (y, x)
        Interface height Z(x, y) in um (e.g. a topology map); NaN marks missing points.
    pixel_size_um : float
        Lateral sampling of the map in um.
    level : {"plane", "poly2", None}
        Reference surface removed first: least-squares plane (removes tilt), second-order
        polynomial (removes tilt and curvature) or only the mean height.
    mask : array_like of bool, optional
        Evaluation area (True = use); combined with the finite points.

    Returns
    -------
    RoughnessResult
        Ra, Rq, Sa, Sq, Sz (um), Ssk, Sku, Sdr, correlation length (um), radial PSD.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(256) * 0.5                       # um
    >>> z = 3.0 * np.sin(2 * np.pi * x / 32.0)          # amplitude 3 um, 64 px period
    >>> r = roughness(np.tile(z, (64, 1)), 0.5, level=None)
    >>> round(r.Ra, 2), round(2 * 3.0 / np.pi, 2)       # Ra = 2A/pi
    (1.91, 1.91)
    """
    z = np.asarray(height_um)
    if z.ndim != 2:
        raise InputError(f"height map must be 2-D (y, x), got shape {z.shape}")
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(f"pixel_size_um must be a positive number, got {pixel_size_um!r}")
    if mask is not None and np.shape(mask) != z.shape:
        raise InputError(f"mask shape {np.shape(mask)} does not match the height map {z.shape}")
    zl = level_surface(z, pixel_size_um=pixel_size_um, level=level, mask=mask)
    valid = np.isfinite(zl)
    v = zl[valid]
    sa = float(np.mean(np.abs(v)))
    sq = float(np.sqrt(np.mean(v**2)))
    sz = float(v.max() - v.min())
    ssk = float(np.mean(v**3) / sq**3) if sq > 0 else 0.0
    sku = float(np.mean(v**4) / sq**4) if sq > 0 else 0.0
    # developed area ratio from second-order finite-difference slopes
    gy, gx = np.gradient(zl, pixel_size_um)
    area = np.sqrt(1.0 + gx**2 + gy**2)
    ok = np.isfinite(area)
    sdr = float(area[ok].mean() - 1.0) if ok.any() else float("nan")
    z0 = np.where(valid, zl, 0.0)
    sal = _autocorrelation_length(z0, valid, pixel_size_um) if sq > 0 else float("nan")
    freq, psd = _psd(z0, pixel_size_um)
    return RoughnessResult(
        Ra=sa, Rq=sq, Sa=sa, Sq=sq, Sz=sz, Ssk=ssk, Sku=sku, Sdr=sdr,
        correlation_length_um=sal, psd_freq_per_um=freq, psd_um4=psd, n_points=int(valid.sum()),
    )
