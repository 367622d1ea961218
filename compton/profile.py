"""Compton profiles J(p_z) and electron-momentum-factor (EMF) maps from calibrated spectra.

Spectrum model (impulse approximation, SCIENCE.md section 6): the counts in an energy bin
[E_a, E_b] of the Compton peak are

    N = phi0 t1 t2(E2) rho_e dV  (dsigma_KN/dOmega)(E2, theta)  integral_{p_z(E_a)}^{p_z(E_b)} J dp_z

so ``J`` in a bin is ``(counts - background) / (K(E2) * delta p_z)`` with the correction
``K = klein_nishina(E1, theta, E2) * t2(E2)`` (``t1`` is the same for every bin and cancels in
the normalisation and in the EMF). Background (a polynomial in energy plus the detector's Cd/Te
/W/Pb fluorescence and escape lines at fixed energies) is fitted by linear least squares in side
bands, so every output is a linear function of the counts and Poisson variances propagate
exactly, covariances included (the background fit is shared by both EMF windows).

EMF = E_L / E_H with E_L = integral_{|p_z| <= low} J and E_H = integral_{low < |p_z| <= high} J.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _prof_core as core
from ._backend import array_module, is_gpu_array, resolve_device, to_device
from ._errors import InputError

MC2_KEV = core.MC2_KEV
C_AU = core.C_AU
R_E_CM = 2.8179403262e-13
DETECTOR_LINES_KEV = dict(core.DETECTOR_LINES_KEV)


# --------------------------------------------------------------------------- kinematics


def compton_energy(e_incident_kev, theta_rad):
    """Energy (keV) of a photon Compton-scattered by a free electron at rest.

    ``E2 = E1 / (1 + E1 (1 - cos theta) / m c^2)``.

    Examples
    --------
    >>> round(float(compton_energy(115.0, np.pi / 2)), 2)
    93.87
    """
    e1 = np.asarray(e_incident_kev, dtype=np.float64)
    return e1 / (1.0 + e1 * (1.0 - np.cos(theta_rad)) / MC2_KEV)


def pz_from_energy(e_scattered_kev, e_incident_kev, theta_rad):
    """Projected electron momentum p_z (atomic units) from the scattered photon energy.

    ``p_z / (m c) = (E2 - E1 + E1 E2 (1 - cos theta) / m c^2) / sqrt(E1^2 + E2^2 - 2 E1 E2 cos theta)``
    (the relativistic impulse-approximation form with the electron's initial energy taken as
    m c^2; exactly 0 at the free-electron Compton energy). Broadcasts over its inputs and
    works on NumPy or CuPy arrays.

    Parameters
    ----------
    e_scattered_kev : array_like
        Scattered photon energy E2 (keV).
    e_incident_kev : float or array_like
        Incident photon energy E1 (keV).
    theta_rad : float or array_like
        Scattering angle (radians).

    Returns
    -------
    ndarray
        p_z in atomic units (m c = 137.036 a.u.); positive above the Compton energy.

    Examples
    --------
    >>> bool(abs(pz_from_energy(compton_energy(115.0, 1.2), 115.0, 1.2)) < 1e-12)
    True
    """
    xp = array_module(e_scattered_kev)
    e2 = xp.asarray(e_scattered_kev, dtype=xp.float64)
    e1 = e_incident_kev
    cos_t = xp.cos(xp.asarray(theta_rad, dtype=xp.float64))
    num = e2 - e1 + e1 * e2 * (1.0 - cos_t) / MC2_KEV
    q = xp.sqrt(e1 * e1 + e2 * e2 - 2.0 * e1 * e2 * cos_t)
    return C_AU * num / q


def klein_nishina(e_incident_kev, theta_rad, e_scattered_kev=None):
    """Klein-Nishina differential cross-section dsigma/dOmega (cm^2 per sr per electron).

    ``(r_e^2 / 2) (E2/E1)^2 (E2/E1 + E1/E2 - sin^2 theta)`` with ``E2`` the scattered energy
    (default: the free-electron Compton energy; pass the measured energy for the
    energy-dependent correction across the Compton peak).
    """
    e1 = np.asarray(e_incident_kev, dtype=np.float64)
    e2 = compton_energy(e1, theta_rad) if e_scattered_kev is None else np.asarray(e_scattered_kev, np.float64)
    r = e2 / e1
    return 0.5 * R_E_CM**2 * r * r * (r + 1.0 / r - np.sin(theta_rad) ** 2)


def transmittance(compound: str, energies_kev, *, density_g_cm3: float, path_mm: float):
    """X-ray transmittance ``exp(-mu/rho * rho * L)`` of a material path (xraylib total
    cross-sections).

    Parameters
    ----------
    compound : str
        Chemical formula for ``xraylib.CompoundParser``, e.g. ``"LiNi0.6Mn0.2Co0.2O2"``.
    energies_kev : array_like
        Photon energies (keV).
    density_g_cm3 : float
        Density (g/cm^3).
    path_mm : float
        Path length in the material (mm).
    """
    import xraylib

    if density_g_cm3 < 0 or path_mm < 0:
        raise InputError(f"transmittance: density_g_cm3 and path_mm must be >= 0, got {density_g_cm3}, {path_mm}")
    e = np.asarray(energies_kev, dtype=np.float64)
    try:
        mu = np.array([xraylib.CS_Total_CP(compound, float(x)) for x in e.ravel()]).reshape(e.shape)
    except ValueError:
        raise InputError(f"transmittance: xraylib cannot parse compound {compound!r}") from None
    return np.exp(-mu * density_g_cm3 * path_mm * 0.1)


def _correction(e2_kev, e1_kev, theta_rad, absorption):
    """K(E2, theta) = Klein-Nishina(E2) x outgoing transmittance(E2), relative units."""
    k = klein_nishina(e1_kev, theta_rad, e2_kev) / R_E_CM**2
    if absorption is None:
        return k
    if callable(absorption):
        t = np.asarray(absorption(np.asarray(e2_kev)), np.float64)
    else:
        try:
            compound, density, path = absorption
        except (TypeError, ValueError):
            raise InputError("absorption must be None, a callable of energy (keV) or "
                             f"(compound, density_g_cm3, path_out_mm), got {absorption!r}") from None
        t = transmittance(compound, e2_kev, density_g_cm3=float(density), path_mm=float(path))
    if np.any(~(t > 0)):
        raise InputError("absorption: transmittance must be positive at every energy")
    return k * t


# --------------------------------------------------------------------------- resolution


def deconvolve_resolution(counts, energies_kev, *, fwhm_kev: float = 0.8, n_iter: int = 30):
    """Richardson-Lucy deconvolution of a Gaussian detector response along the energy axis.

    Parameters
    ----------
    counts : array [..., bins]
        Spectra (counts); NumPy or CuPy.
    energies_kev : array
        Bin centres or edges (keV); uniform bins.
    fwhm_kev : float
        Detector resolution, FWHM (keV).
    n_iter : int
        Iterations (more sharpen more and amplify noise).

    Notes
    -----
    Non-linear: uncertainties of deconvolved spectra are not propagated by this package.
    """
    xp = array_module(counts)
    c = xp.asarray(counts, dtype=xp.float64)
    edges = core.edges_from_axis(energies_kev, c.shape[-1])
    bw = np.diff(edges)
    if not np.allclose(bw, bw[0], rtol=1e-6):
        raise InputError("deconvolve_resolution needs uniform energy bins")
    if not fwhm_kev > 0 or int(n_iter) < 1:
        raise InputError(f"deconvolve_resolution: need fwhm_kev > 0 and n_iter >= 1, got {fwhm_kev}, {n_iter}")
    from ._backend import ndimage_module

    ndi = ndimage_module(xp)
    sig = fwhm_kev * core.FWHM_TO_SIGMA / bw[0]
    data = xp.maximum(c, 0)
    u = xp.full_like(data, 1.0) * data.mean(axis=-1, keepdims=True) + 1e-12
    for _ in range(int(n_iter)):
        blur = ndi.gaussian_filter1d(u, sig, axis=-1, mode="nearest")
        ratio = data / xp.maximum(blur, 1e-12)
        u = u * ndi.gaussian_filter1d(ratio, sig, axis=-1, mode="nearest")
    return u


# --------------------------------------------------------------------------- single profile


@dataclass
class Profile:
    """A Compton profile on the p_z axis of a spectrum's bins.

    Unpacks as ``pz, J = profile``.

    Attributes
    ----------
    pz : ndarray
        Bin-centre momenta (atomic units), increasing.
    J : ndarray
        Profile (a.u.^-1), bin averages, normalised as requested.
    sigma : ndarray
        One-sigma Poisson uncertainty of ``J`` (background fit included; normalisation treated
        as exact).
    pz_edges : ndarray
        Bin edges in p_z (a.u.), length ``pz.size + 1``.
    """

    pz: np.ndarray
    J: np.ndarray
    sigma: np.ndarray
    pz_edges: np.ndarray
    meta: dict = field(default_factory=dict)

    def __iter__(self):
        yield self.pz
        yield self.J

    def emf(self, low: float = 1.0, high: float = 5.0):
        """(EMF, sigma) from the bin averages (exact window overlaps of the p_z bins)."""
        return emf(self.pz, self.J, low, high, sigma=self.sigma, pz_edges=self.pz_edges)


def _background_matrix(edges, *, background, sidebands_kev, lines_kev, fwhm_kev):
    """Dense [n, n] operator B with background = B @ counts, or None."""
    if background is None or background is False:
        return None
    degree = {"constant": 0, "linear": 1, "quadratic": 2}.get(background, background)
    if not isinstance(degree, (int, np.integer)):
        raise InputError(f"background must be None, 'constant', 'linear', 'quadratic' or a degree, got {background!r}")
    if sidebands_kev is None:
        raise InputError("background subtraction needs sidebands_kev=[(lo, hi), ...] (keV)")
    side, p, m_all = core.background_operator(edges, sidebands_kev, degree=int(degree),
                                              lines_kev=lines_kev, fwhm_kev=fwhm_kev)
    b = np.zeros((edges.size - 1, edges.size - 1))
    b[:, side] = m_all @ p
    return b


def subtract_background(counts, energies_kev, *, sidebands_kev, degree: int = 1,
                        lines_kev=tuple(DETECTOR_LINES_KEV.values()), fwhm_kev: float = 0.8,
                        variance=None):
    """Subtract a side-band background fit (polynomial + fixed lines) from every spectrum.

    Parameters
    ----------
    counts : array [..., bins]
        Spectra (counts).
    energies_kev : array
        Bin centres or edges (keV).
    sidebands_kev : list of (float, float)
        Energy bands (keV) free of Compton signal.
    degree : int
        Polynomial degree in energy (0 constant, 1 linear, ...).
    lines_kev : sequence of float
        Line energies (keV) fitted as Gaussians of ``fwhm_kev`` when inside a side band.
    fwhm_kev : float
        Detector resolution FWHM (keV).
    variance : array [..., bins], optional
        Count variances (default the counts).

    Returns
    -------
    net : ndarray float64 [..., bins]
        Counts minus the fitted background.
    variance : ndarray float64 [..., bins]
        Per-bin variance of ``net`` (Poisson, background fit included; bin-to-bin covariances
        through the shared fit are not returned).
    """
    c = np.asarray(counts, np.float64)
    edges = core.edges_from_axis(energies_kev, c.shape[-1])
    v = np.clip(c, 0, None) if variance is None else np.asarray(variance, np.float64)
    side, p, m_all = core.background_operator(edges, sidebands_kev, degree=int(degree),
                                              lines_kev=lines_kev, fwhm_kev=fwhm_kev)
    b = m_all @ p                                                # [bins, n_side]
    net = c - c[..., side] @ b.T
    var = v + v[..., side] @ (b**2).T
    diag = np.zeros(c.shape[-1])
    diag[side] = b[side, np.arange(side.size)]
    var -= 2 * diag * v
    return net, np.clip(var, 0, None)


def compton_profile(spectrum, energies_kev, e0_kev: float = 115.0, theta_rad: float = np.pi / 2, *,
                    pz_max: float = 7.0, background=None, sidebands_kev=None,
                    lines_kev=tuple(DETECTOR_LINES_KEV.values()), fwhm_kev: float = 0.8,
                    deconvolve: bool = False, absorption=None, symmetrise: bool = False,
                    normalise: str | float = "area", variance=None) -> Profile:
    """Compton profile J(p_z) of one spectrum.

    Parameters
    ----------
    spectrum : array_like [bins]
        Counts per energy bin.
    energies_kev : array_like
        Bin centres [bins] or edges [bins + 1] (keV).
    e0_kev : float
        Incident energy (keV).
    theta_rad : float
        Scattering angle (radians).
    pz_max : float
        Keep bins with |p_z| <= pz_max (atomic units).
    background : None, "constant", "linear", "quadratic" or int
        Polynomial degree of the side-band background fit (None: no subtraction).
    sidebands_kev : list of (float, float)
        Energy bands (keV) free of Compton signal used for the background fit.
    lines_kev : sequence of float
        Fluorescence/escape line energies (keV); those in the side bands are fitted as Gaussians
        of ``fwhm_kev`` and subtracted.
    fwhm_kev : float
        Detector resolution FWHM (keV), for line shapes and deconvolution.
    deconvolve : bool
        Richardson-Lucy deconvolution of the detector resolution first (see
        :func:`deconvolve_resolution`).
    absorption : None, callable or (compound, density_g_cm3, path_out_mm)
        Outgoing-path transmittance correction.
    symmetrise : bool
        Average J(p_z) and J(-p_z) (interpolated onto the mirrored axis).
    normalise : "area", "none" or float
        "area": unit area over the kept range; a number: area equal to that electron count.
    variance : array_like [bins], optional
        Variance of the counts (default: the counts, Poisson).

    Returns
    -------
    Profile
        ``pz, J = compton_profile(...)``; also ``.sigma``.

    Examples
    --------
    >>> from compton.simulate import simulate_spectrum
    >>> edges = np.arange(80.0, 110.0, 0.1)
    >>> s = simulate_spectrum("Li", edges, counts=1e6, fwhm_kev=None, noise=False)
    >>> pz, J = compton_profile(s, edges)
    >>> bool(abs(np.sum(J * np.diff(compton_profile(s, edges).pz_edges)) - 1) < 1e-9)
    True
    """
    c = np.asarray(spectrum, dtype=np.float64)
    if c.ndim != 1:
        raise InputError(f"spectrum must be 1-D (bins), got shape {c.shape}")
    edges = core.edges_from_axis(energies_kev, c.size)
    var = np.clip(c, 0, None) if variance is None else np.asarray(variance, np.float64)
    if var.shape != c.shape:
        raise InputError(f"variance shape {var.shape} differs from spectrum shape {c.shape}")
    if deconvolve:
        c = deconvolve_resolution(c, edges, fwhm_kev=fwhm_kev)
    pz_e = pz_from_energy(edges, e0_kev, theta_rad)
    centres = 0.5 * (edges[:-1] + edges[1:])
    pz_c = pz_from_energy(centres, e0_kev, theta_rad)
    keep = np.flatnonzero(np.abs(pz_c) <= pz_max)
    if keep.size < 3:
        raise InputError(f"spectrum: fewer than 3 bins with |p_z| <= {pz_max} a.u. "
                         f"(energy axis {edges[0]:g}..{edges[-1]:g} keV, E0={e0_kev} keV)")
    b = _background_matrix(edges, background=background, sidebands_kev=sidebands_kev,
                           lines_kev=lines_kev, fwhm_kev=fwhm_kev)
    k = _correction(centres, e0_kev, theta_rad, absorption)
    dpz = np.diff(pz_e)
    lin = np.eye(c.size)[keep] if b is None else (np.eye(c.size) - b)[keep]
    lin = lin / (k[keep] * dpz[keep])[:, None]
    j = lin @ c
    sj = np.sqrt((lin**2) @ var)
    if normalise == "area":
        scale = 1.0 / np.sum(j * dpz[keep])
    elif normalise == "none":
        scale = 1.0
    else:
        try:
            scale = float(normalise) / np.sum(j * dpz[keep])
        except (TypeError, ValueError):
            raise InputError(f"normalise must be 'area', 'none' or a number, got {normalise!r}") from None
    pz, j, sj, edges_pz = pz_c[keep], j * scale, sj * abs(scale), pz_e[keep[0]: keep[-1] + 2]
    if symmetrise:
        jm = np.interp(-pz, pz, j)
        sm = np.interp(-pz, pz, sj)
        j = 0.5 * (j + jm)
        sj = 0.5 * np.sqrt(sj**2 + sm**2)
    return Profile(pz=pz, J=j, sigma=sj, pz_edges=edges_pz,
                   meta={"e0_kev": e0_kev, "theta_rad": float(theta_rad), "background": background})


def emf(pz, J, low: float = 1.0, high: float = 5.0, *, sigma=None, pz_edges=None):
    """EMF of a sampled profile: integral of J over |p_z| <= low over that over low < |p_z| <= high.

    The integrals are exact for the piecewise-linear interpolant of (pz, J).

    Parameters
    ----------
    pz : array_like
        Momenta (atomic units), increasing.
    J : array_like
        Profile values (any normalisation).
    low, high : float
        Window limits (atomic units), 0 < low < high.
    sigma : array_like, optional
        Independent one-sigma uncertainties of ``J``.
    pz_edges : array_like, optional
        Bin edges (a.u., ``pz.size + 1``): treat ``J`` as bin averages (histogram) and
        integrate the windows over the exact bin overlaps (a linear slope correction inside
        the bins cut by a window edge).

    Returns
    -------
    emf : float
    sigma_emf : float
        Propagated uncertainty (NaN when ``sigma`` is not given).

    Examples
    --------
    >>> pz = np.linspace(-6, 6, 1201)
    >>> round(emf(pz, np.exp(-pz**2 / 2))[0], 4)  # erf(1/sqrt2) / (erf(5/sqrt2) - erf(1/sqrt2))
    2.1515
    """
    low, high = core.check_windows(low, high)
    pz = np.asarray(pz, np.float64)
    j = np.asarray(J, np.float64)
    if pz.ndim != 1 or pz.shape != j.shape or pz.size < 2 or np.any(np.diff(pz) <= 0):
        raise InputError(f"emf: pz and J must be 1-D of equal length with pz increasing "
                         f"(got shapes {pz.shape}, {j.shape})")
    if pz[0] > -high or pz[-1] < high:
        raise InputError(f"emf: profile covers {pz[0]:.3g}..{pz[-1]:.3g} a.u., the core window needs +-{high}")
    if pz_edges is not None:
        pe = np.asarray(pz_edges, np.float64)
        if pe.shape != (pz.size + 1,):
            raise InputError(f"emf: pz_edges needs {pz.size + 1} values, got shape {pe.shape}")
        w_l, w_h = core.window_weights(pe, low, high)
    else:
        w_l = core.hat_window_weights(pz, -low, low)
        w_h = core.hat_window_weights(pz, -high, -low) + core.hat_window_weights(pz, low, high)
    e_l, e_h = w_l @ j, w_h @ j
    ratio = e_l / e_h
    if sigma is None:
        return float(ratio), float("nan")
    v = np.asarray(sigma, np.float64) ** 2
    var = ratio**2 * ((w_l**2 @ v) / e_l**2 + (w_h**2 @ v) / e_h**2 - 2 * (w_l * w_h) @ v / (e_l * e_h))
    return float(ratio), float(np.sqrt(max(var, 0.0)))


# --------------------------------------------------------------------------- maps


@dataclass
class EmfResult:
    """EMF per spectrum with propagated Poisson uncertainties.

    Attributes
    ----------
    emf, sigma : ndarray
        EMF and its one-sigma uncertainty, shape of the spectra's leading axes.
    e_low, e_high : ndarray
        Valence (|p_z| <= low) and core (low < |p_z| <= high) window integrals of
        ``counts / K`` (relative units).
    sigma_low, sigma_high, cov : ndarray
        Their uncertainties and covariance.
    low, high : float
        Windows (atomic units).
    """

    emf: np.ndarray
    sigma: np.ndarray
    e_low: np.ndarray
    e_high: np.ndarray
    sigma_low: np.ndarray
    sigma_high: np.ndarray
    cov: np.ndarray
    low: float = 1.0
    high: float = 5.0


def emf_from_spectra(counts, energies_kev, *, e0_kev: float = 115.0, theta_rad=np.pi / 2,
                     low: float = 1.0, high: float = 5.0, background=None, sidebands_kev=None,
                     lines_kev=tuple(DETECTOR_LINES_KEV.values()), fwhm_kev: float = 0.8,
                     absorption=None, variance=None, device: str = "auto") -> EmfResult:
    """EMF and uncertainty of every spectrum of an array, vectorised over spectra.

    Parameters
    ----------
    counts : array [..., bins]
        Spectra (counts), NumPy or CuPy (a CuPy input gives CuPy outputs).
    energies_kev : array
        Bin centres [bins] or edges [bins + 1] (keV), common to all spectra.
    e0_kev : float
        Incident energy (keV).
    theta_rad : float or array [...]
        Scattering angle per spectrum (radians): each spectrum gets its own p_z axis.
    low, high : float
        EMF windows (atomic units).
    background, sidebands_kev, lines_kev, fwhm_kev, absorption
        As in :func:`compton_profile`.
    variance : array [..., bins], optional
        Count variances (default: the counts).
    device : {"auto", "cpu", "gpu"}
        Where to compute for host input.

    Returns
    -------
    EmfResult
    """
    low, high = core.check_windows(low, high)
    dev = resolve_device(device, counts)
    was_gpu = array_module(counts) is not np
    shape = tuple(counts.shape)
    if len(shape) < 1:
        raise InputError("counts must have an energy axis")
    nb = shape[-1]
    lead = shape[:-1]
    edges = core.edges_from_axis(energies_kev, nb)
    theta_host = to_device(theta_rad, "cpu") if is_gpu_array(theta_rad) else theta_rad
    try:
        theta = np.broadcast_to(np.asarray(theta_host, np.float64), lead).reshape(-1)
    except ValueError:
        raise InputError(f"theta_rad of shape {np.shape(theta_host)} does not match the spectra's "
                         f"leading shape {lead}") from None
    if np.any(~((theta > 0) & (theta < np.pi))):
        raise InputError("theta_rad must lie in (0, pi) radians")
    # bins that can touch the windows at any angle, plus the side bands
    th_u = np.unique(theta)
    pz_lo = pz_from_energy(edges[:-1][None, :], e0_kev, th_u[:, None]).min(axis=0)
    pz_hi = pz_from_energy(edges[1:][None, :], e0_kev, th_u[:, None]).max(axis=0)
    used = (pz_lo < high) & (pz_hi > -high)
    used[1:] |= used[:-1].copy()                              # one neighbour each side for the
    used[:-1] |= used[1:].copy()                              # slope correction at the edges
    if not used.any():
        raise InputError(f"energy axis {edges[0]:g}..{edges[-1]:g} keV does not cover |p_z| <= {high} a.u. at E0={e0_kev} keV")
    side_idx = None
    if background is not None:
        degree = {"constant": 0, "linear": 1, "quadratic": 2}.get(background, background)
        if not isinstance(degree, (int, np.integer)) or sidebands_kev is None:
            raise InputError(f"background={background!r} needs a degree name and sidebands_kev")
        side_idx, p_mat, m_all = core.background_operator(
            edges, sidebands_kev, degree=int(degree), lines_kev=lines_kev, fwhm_kev=fwhm_kev)
        used[side_idx] = True
    idx = np.flatnonzero(used)
    i0, i1 = idx[0], idx[-1] + 1
    sub = edges[i0: i1 + 1]
    centres = 0.5 * (sub[:-1] + sub[1:])
    # per-angle weights (only a few distinct angles in practice: one per detector column)
    inv = np.searchsorted(th_u, theta)
    pz_e = pz_from_energy(sub[None, :], e0_kev, th_u[:, None])
    wj_l, wj_h = core.window_weights(pz_e, low, high)         # weights on bin-average J
    kd = _correction(centres[None, :], e0_kev, th_u[:, None], absorption) * np.diff(pz_e, axis=1)
    w_l, w_h = wj_l / kd, wj_h / kd                           # weights on counts
    if side_idx is not None:
        s = side_idx - i0
        m_sub = m_all[i0:i1]
        w_l[:, s] -= (w_l @ m_sub) @ p_mat
        w_h[:, s] -= (w_h @ m_sub) @ p_mat
    xp = np
    c = counts.reshape(-1, nb)[:, i0:i1]
    if dev == "gpu":
        c = to_device(c, "gpu")
        xp = array_module(c)
    c = c.astype(xp.float64)
    v = xp.maximum(c, 0) if variance is None else xp.asarray(variance, dtype=xp.float64).reshape(-1, nb)[:, i0:i1]
    wl = xp.asarray(w_l)
    wh = xp.asarray(w_h)
    inv_d = xp.asarray(inv)
    if th_u.size == 1:
        e_l, e_h = c @ wl[0], c @ wh[0]
        var_l, var_h, cov = v @ (wl[0] ** 2), v @ (wh[0] ** 2), v @ (wl[0] * wh[0])
    else:
        wl_p, wh_p = wl[inv_d], wh[inv_d]
        e_l = xp.einsum("pb,pb->p", c, wl_p)
        e_h = xp.einsum("pb,pb->p", c, wh_p)
        var_l = xp.einsum("pb,pb->p", v, wl_p * wl_p)
        var_h = xp.einsum("pb,pb->p", v, wh_p * wh_p)
        cov = xp.einsum("pb,pb->p", v, wl_p * wh_p)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = e_l / e_h
        var = ratio**2 * (var_l / e_l**2 + var_h / e_h**2 - 2 * cov / (e_l * e_h))
        sig = xp.sqrt(xp.maximum(var, 0))
    out = [a.reshape(lead) for a in (ratio, sig, e_l, e_h, xp.sqrt(var_l), xp.sqrt(var_h), cov)]
    if dev == "gpu" and not was_gpu:
        out = [to_device(a, "cpu") for a in out]
    return EmfResult(*out, low=low, high=high)


def emf_map(cube, *, geometry=None, e0_kev: float | None = None, theta_rad=None,
            low: float = 1.0, high: float = 5.0, **kwargs) -> EmfResult:
    """EMF and uncertainty maps of a spectra cube.

    Parameters
    ----------
    cube : compton.Cube
        Calibrated cube (``counts`` [rows, cols, bins], ``bin_edges_kev``; units keV).
    geometry : compton.geometry.Geometry, optional
        Gives the per-pixel scattering angle and E0 (default: 90 degrees everywhere, 115 keV).
    e0_kev : float, optional
        Incident energy (keV); overrides the geometry's.
    theta_rad : float or array [rows, cols], optional
        Scattering angles (radians); overrides the geometry's.
    low, high : float
        EMF windows (atomic units).
    **kwargs
        Passed to :func:`emf_from_spectra` (background, sidebands_kev, absorption, device, ...).

    Returns
    -------
    EmfResult
        Maps of shape (rows, cols).
    """
    counts = getattr(cube, "counts", None)
    if counts is None or getattr(counts, "ndim", 0) != 3:
        raise InputError("emf_map expects a compton.Cube with counts [rows, cols, bins]")
    if getattr(cube, "units", "keV") != "keV":
        raise InputError(f"emf_map needs an energy-calibrated cube (units keV), got units {cube.units!r}")
    if geometry is not None:
        if tuple(geometry.shape) != tuple(counts.shape[:2]):
            raise InputError(f"geometry shape {tuple(geometry.shape)} differs from the cube's {counts.shape[:2]}")
        theta_rad = geometry.scattering_angles() if theta_rad is None else theta_rad
        e0_kev = geometry.e0_kev if e0_kev is None else e0_kev
    theta_rad = np.pi / 2 if theta_rad is None else theta_rad
    e0_kev = 115.0 if e0_kev is None else e0_kev
    return emf_from_spectra(counts, cube.bin_edges_kev, e0_kev=e0_kev, theta_rad=theta_rad,
                            low=low, high=high, **kwargs)
