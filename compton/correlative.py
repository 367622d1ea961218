"""Correlative XCS-CT: unmix region spectra into component spectra with tomography fractions.

A detector region sees the sheet through several components (electrode, separator, lithium,
...). With ``F[r, k]`` the volume (or volume fraction) of component ``k`` seen by region ``r``
(from the tomography masks), the region spectra are ``S[r, b] = sum_k F[r, k] X[k, b]`` with
``X`` the spectrum per unit volume of each component. ``X`` is found per energy bin by
weighted least squares (weights 1 / Poisson variance), with its covariance, so EMF and profiles
of each component carry propagated uncertainties. Two regions and two components reproduce the
published subtraction (separator = region 2 - 0.89 x region 3, then divide by its volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._errors import InputError


def region_spectra(counts, region_labels, *, n_regions: int | None = None):
    """Sum the spectra of a cube over labelled detector regions.

    Parameters
    ----------
    counts : array [rows, cols, bins]
        Cube counts.
    region_labels : array [rows, cols] of int
        Region index per pixel (0..R-1); negative values are ignored.
    n_regions : int, optional
        Number of regions (default ``max label + 1``).

    Returns
    -------
    ndarray float64 [R, bins]
    """
    counts = np.asarray(counts)
    lab = np.asarray(region_labels)
    if counts.ndim != 3 or lab.shape != counts.shape[:2] or lab.dtype.kind not in "iu":
        raise InputError(f"region_labels must be an integer map of shape {counts.shape[:2]}, "
                         f"got {lab.dtype} {lab.shape}")
    n = int(lab.max()) + 1 if n_regions is None else int(n_regions)
    flat = counts.reshape(-1, counts.shape[2]).astype(np.float64)
    out = np.zeros((n, counts.shape[2]))
    ok = (lab.ravel() >= 0) & (lab.ravel() < n)
    np.add.at(out, lab.ravel()[ok], flat[ok])
    return out


def align_spectra(counts, energies_kev, theta_rad, *, e0_kev: float = 115.0,
                  theta_ref_rad: float | None = None, absorption=None):
    """Move every pixel's spectrum onto the energy axis of one reference angle.

    A pixel at scattering angle theta sees momentum p_z at a different energy than the
    reference angle does; summing raw spectra of pixels with different angles blurs the
    profile. Each bin is mapped through p_z to the energy it would have at ``theta_ref_rad``,
    reweighted by the Klein-Nishina (and absorption) ratio, and its counts are shared among
    the reference bins in proportion to overlap (counts are conserved up to that reweighting).

    Parameters
    ----------
    counts : array [..., bins]
        Spectra (counts).
    energies_kev : array
        Bin centres or edges (keV).
    theta_rad : float or array [...]
        Scattering angle per spectrum (radians).
    e0_kev : float
        Incident energy (keV).
    theta_ref_rad : float, optional
        Reference angle (radians); default the mean angle.
    absorption
        As in :func:`compton.compton_profile`.

    Returns
    -------
    ndarray float64 [..., bins]
        Spectra on the reference axis. Their variance is approximately the aligned counts
        (the redistribution correlates neighbouring bins slightly).
    """
    from . import _prof_core as core
    from .profile import _correction, compton_energy, pz_from_energy

    c = np.asarray(counts, np.float64)
    edges = core.edges_from_axis(energies_kev, c.shape[-1])
    lead = c.shape[:-1]
    theta = np.broadcast_to(np.asarray(theta_rad, np.float64), lead).reshape(-1)
    ref = float(np.mean(theta)) if theta_ref_rad is None else float(theta_ref_rad)
    flat = c.reshape(-1, c.shape[-1])
    out = np.empty_like(flat)
    centres = 0.5 * (edges[1:] + edges[:-1])
    # p_z -> energy at the reference angle, by interpolation on a fine monotonic table;
    # only the Compton peak moves: full shift for |p_z| <= 30 a.u., blended to none at 40 a.u.
    grid = np.linspace(max(1.0, 0.2 * compton_energy(e0_kev, ref)), e0_kev * 0.99999, 40001)
    pz_ref = pz_from_energy(grid, e0_kev, ref)
    k_ref = _correction(centres, e0_kev, ref, absorption)
    for th in np.unique(theta):
        sel = theta == th
        pz_e = np.where(edges > 0, pz_from_energy(np.clip(edges, 1e-9, None), e0_kev, th), -np.inf)
        blend = np.clip((40.0 - np.abs(pz_e)) / 10.0, 0.0, 1.0)
        blend[edges >= e0_kev * 0.99999] = 0.0
        mapped = edges + blend * (np.interp(np.clip(pz_e, pz_ref[0], pz_ref[-1]), pz_ref, grid) - edges)
        mapped = np.maximum.accumulate(mapped)
        blend_c = 0.5 * (blend[1:] + blend[:-1])
        k_ratio = (k_ref / _correction(centres, e0_kev, th, absorption)) ** blend_c
        cum = np.concatenate([np.zeros((sel.sum(), 1)), np.cumsum(flat[sel] * k_ratio, axis=1)], axis=1)
        moved = np.stack([np.interp(edges, mapped, row) for row in cum])
        out[sel] = np.diff(moved, axis=1)
    return out.reshape(c.shape)


def component_fractions(labels, region_masks, component_labels):
    """Volume fraction of each component inside each region from a tomography label volume.

    Parameters
    ----------
    labels : array of int
        Segmented tomography volume (any dimension), one label per voxel.
    region_masks : sequence of bool arrays, same shape as ``labels``
        Voxels seen by each XCS region (the sheet beam slab imaged onto that detector region).
    component_labels : sequence of int
        Label value of each component.

    Returns
    -------
    ndarray [R, K]
        Fraction of each region's voxels that belong to each component.
    """
    labels = np.asarray(labels)
    out = np.zeros((len(region_masks), len(component_labels)))
    for r, mask in enumerate(region_masks):
        mask = np.asarray(mask, bool)
        if mask.shape != labels.shape:
            raise InputError(f"region mask {r} has shape {mask.shape}, labels {labels.shape}")
        n = mask.sum()
        if n == 0:
            raise InputError(f"region mask {r} is empty")
        for k, lv in enumerate(component_labels):
            out[r, k] = np.count_nonzero(labels[mask] == lv) / n
    return out


@dataclass
class Unmixed:
    """Component spectra per unit volume with uncertainties.

    Attributes
    ----------
    spectra : ndarray [K, bins]
        Spectrum of each component per unit of the fraction/volume unit of ``F``.
    sigma : ndarray [K, bins]
        One-sigma uncertainty.
    cov : ndarray [bins, K, K]
        Covariance between components in each bin.
    variance : ndarray [K, bins]
        ``sigma**2``, ready for :func:`compton.emf_from_spectra` ``variance=``.
    """

    spectra: np.ndarray
    sigma: np.ndarray
    cov: np.ndarray

    @property
    def variance(self) -> np.ndarray:
        return self.sigma**2


def unmix(region_spectra, fractions, *, variance=None, weighted: bool = True) -> Unmixed:
    """Least-squares unmixing of region spectra into component spectra, bin by bin.

    Parameters
    ----------
    region_spectra : array [R, bins]
        Measured spectra (counts) of R regions.
    fractions : array [R, K]
        Volume (fraction) of each of K components in each region, from tomography; R >= K.
    variance : array [R, bins], optional
        Count variances (default: the counts, Poisson; a floor of 1 count avoids zero weights).
    weighted : bool
        Weight the regions by 1 / variance (otherwise ordinary least squares).

    Returns
    -------
    Unmixed

    Examples
    --------
    Separator = region 2 - 0.89 x region 3 (region 3 is pure electrode):

    >>> f = np.array([[1.0, 0.0], [0.89, 0.11]])     # rows: region 3, region 2
    >>> x = np.array([[10.0, 20.0], [5.0, 1.0]])      # electrode, separator per volume
    >>> s = f @ x
    >>> np.allclose(unmix(s, f).spectra, x)
    True
    """
    s = np.asarray(region_spectra, np.float64)
    f = np.asarray(fractions, np.float64)
    if s.ndim != 2 or f.ndim != 2 or f.shape[0] != s.shape[0]:
        raise InputError(f"unmix: region_spectra [R, bins] and fractions [R, K] must share R, "
                         f"got {s.shape} and {f.shape}")
    r, k = f.shape
    if r < k or np.linalg.matrix_rank(f) < k:
        raise InputError(f"unmix: fractions {f.shape} must have full column rank (R >= K, independent columns)")
    v = np.clip(s, 1.0, None) if variance is None else np.asarray(variance, np.float64)
    if v.shape != s.shape:
        raise InputError(f"unmix: variance shape {v.shape} differs from region_spectra {s.shape}")
    w = 1.0 / v if weighted else np.ones_like(v)            # [R, B]
    # per bin: A_b = F^T W_b F [K, K], G_b = A_b^-1 F^T W_b [K, R]
    a = np.einsum("rk,rb,rl->bkl", f, w, f)
    a_inv = np.linalg.inv(a)
    g = np.einsum("bkl,rl,rb->bkr", a_inv, f, w)
    x = np.einsum("bkr,rb->kb", g, s)
    cov = np.einsum("bkr,rb,blr->bkl", g, v, g)
    sig = np.sqrt(np.clip(np.einsum("bkk->kb", cov), 0, None))
    return Unmixed(spectra=x, sigma=sig, cov=cov)


def correlative_emf(region_spectra, fractions, energies_kev, *, names=None, variance=None, **kwargs):
    """Unmix region spectra and report each component's EMF with its uncertainty.

    Parameters
    ----------
    region_spectra, fractions
        As in :func:`unmix`.
    energies_kev : array
        Bin centres or edges (keV).
    names : sequence of str, optional
        Component names (default ``component0``...).
    variance : array [R, bins], optional
        Variances of the region spectra (default: the counts).
    **kwargs
        Passed to :func:`compton.emf_from_spectra` (e0_kev, theta_rad, low, high, background...).

    Returns
    -------
    list of dict
        Per component: name, emf, sigma, e_low, e_high.
    unmixed : Unmixed
    """
    from .profile import emf_from_spectra

    un = unmix(region_spectra, fractions, variance=variance)
    res = emf_from_spectra(un.spectra, energies_kev, variance=un.variance, **kwargs)
    names = names or [f"component{i}" for i in range(un.spectra.shape[0])]
    rows = [{"name": n, "emf": float(res.emf[i]), "sigma": float(res.sigma[i]),
             "e_low": float(res.e_low[i]), "e_high": float(res.e_high[i])} for i, n in enumerate(names)]
    return rows, un


def component_emf(result, region_labels, fractions, *, regions=None, names=None):
    """Component EMF from per-pixel window sums of an EMF map (no spectra resampling).

    The valence and core window integrals of each pixel (``result.e_low``, ``result.e_high``)
    already carry each pixel's own p_z axis; they are summed per region and unmixed with the
    same linear combination ``G = (F^T W F)^-1 F^T W`` for both windows, so the component EMF
    is exact for per-pixel angles and its variance (covariance between the windows included)
    propagates from the per-pixel values.

    Parameters
    ----------
    result : compton.EmfResult
        Map from :func:`compton.emf_map`.
    region_labels : array [rows, cols] of int
        Region index per pixel (negative: unused).
    fractions : array [R, K]
        Volume fractions of K components in the regions listed by ``regions``.
    regions : sequence of int, optional
        Region index of each row of ``fractions`` (default 0..R-1).
    names : sequence of str, optional
        Component names.

    Returns
    -------
    list of dict
        Per component: name, emf, sigma, e_low, e_high (per unit volume fraction).
    """
    f = np.asarray(fractions, np.float64)
    lab = np.asarray(region_labels)
    regions = list(range(f.shape[0])) if regions is None else [int(r) for r in regions]
    if f.ndim != 2 or len(regions) != f.shape[0]:
        raise InputError(f"component_emf: fractions [R, K] must have one row per region, got {f.shape}")
    if f.shape[0] < f.shape[1] or np.linalg.matrix_rank(f) < f.shape[1]:
        raise InputError(f"component_emf: fractions {f.shape} must have full column rank")
    if lab.shape != np.shape(result.emf):
        raise InputError(f"region_labels shape {lab.shape} differs from the map's {np.shape(result.emf)}")
    sums = np.zeros((len(regions), 5))
    for i, r in enumerate(regions):
        m = (lab == r) & np.isfinite(result.e_low) & np.isfinite(result.e_high)
        if not m.any():
            raise InputError(f"component_emf: region {r} has no pixels in the region map")
        sums[i] = [result.e_low[m].sum(), result.e_high[m].sum(), (result.sigma_low[m] ** 2).sum(),
                   (result.sigma_high[m] ** 2).sum(), result.cov[m].sum()]
    el, eh, vl, vh, cv = sums.T
    w = 1.0 / np.clip(vl + vh, 1e-300, None)
    g = np.linalg.solve(f.T @ (f * w[:, None]), (f * w[:, None]).T)     # [K, R]
    xl, xh = g @ el, g @ eh
    var_l, var_h, cov = (g**2) @ vl, (g**2) @ vh, (g**2) @ cv
    names = names or [f"component{i}" for i in range(f.shape[1])]
    rows = []
    for k, name in enumerate(names):
        ratio = xl[k] / xh[k]
        var = ratio**2 * (var_l[k] / xl[k] ** 2 + var_h[k] / xh[k] ** 2 - 2 * cov[k] / (xl[k] * xh[k]))
        rows.append({"name": name, "emf": float(ratio), "sigma": float(np.sqrt(max(var, 0.0))),
                     "e_low": float(xl[k]), "e_high": float(xh[k])})
    return rows
