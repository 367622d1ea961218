"""XCS physics simulator: Compton spectra, cubes and HEXITEC frames from reference profiles.

Spectra follow the impulse-approximation model of :mod:`compton.profile` with xraylib's
Hartree-Fock atomic Compton profiles (Biggs et al. 1975) summed over the composition, the
Klein-Nishina cross-section at the scattered energy, optional outgoing absorption, a Gaussian
detector response, fluorescence/escape lines, a flat background and Poisson noise.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _prof_core as core
from ._errors import InputError
from .profile import _correction, pz_from_energy

#: named compositions (formula per formula unit)
COMPOSITIONS = {
    "Li metal": "Li",
    "PEO-LiTFSI": "C42H80O24LiF6NS2",  # (C2H4O)20 + LiN(SO2CF3)2, EO:Li = 20
    "NMC622": "LiNi0.6Mn0.2Co0.2O2",
}


def nmc622(x: float) -> str:
    """Formula of Li_x Ni0.6 Mn0.2 Co0.2 O2 (0 <= x <= 1.2)."""
    if not 0 <= x <= 1.2:
        raise InputError(f"nmc622: lithium content x must be in [0, 1.2], got {x}")
    return f"Li{x:g}Ni0.6Mn0.2Co0.2O2" if x > 0 else "Ni0.6Mn0.2Co0.2O2"


def _atoms(composition) -> dict[int, float]:
    """{Z: atoms per formula unit} from a formula, a named composition or a dict."""
    import xraylib

    if isinstance(composition, dict):
        out = {}
        for k, v in composition.items():
            z = int(k) if isinstance(k, (int, np.integer)) else xraylib.SymbolToAtomicNumber(str(k))
            if z <= 0 or float(v) < 0:
                raise InputError(f"composition: bad element {k!r} or count {v!r}")
            out[z] = out.get(z, 0.0) + float(v)
        return out
    formula = COMPOSITIONS.get(composition, composition)
    try:
        parsed = xraylib.CompoundParser(str(formula))
    except ValueError:
        raise InputError(f"composition {composition!r}: not a formula xraylib can parse "
                         f"(or one of {sorted(COMPOSITIONS)})") from None
    return {int(z): float(n) for z, n in zip(parsed["Elements"], parsed["nAtoms"])}


@functools.lru_cache(maxsize=64)
def _table(z: int):
    """(pz grid, J_Z(pz), cumulative integral from 0) for one element, pz >= 0 (a.u.)."""
    import xraylib
    from scipy.integrate import cumulative_trapezoid

    pz = np.concatenate([np.linspace(0, 20, 20001), np.linspace(20, 100, 801)[1:]])
    j = np.array([xraylib.ComptonProfile(z, float(p)) for p in pz])
    return pz, j, cumulative_trapezoid(j, pz, initial=0.0)


def reference_profile(composition, pz):
    """Two-sided reference Compton profile J(p_z) (electrons per a.u.) of a composition.

    ``J(p_z) = sum_i n_i J_Zi(|p_z|)`` from xraylib; its integral over all p_z is the number of
    electrons per formula unit.

    Parameters
    ----------
    composition : str or dict
        Formula (``"LiNi0.6Mn0.2Co0.2O2"``), a name from ``COMPOSITIONS`` or {element: atoms}.
    pz : array_like
        Momenta (atomic units).
    """
    a = np.abs(np.asarray(pz, np.float64))
    out = np.zeros_like(a)
    for z, n in _atoms(composition).items():
        grid, j, _ = _table(z)
        out += n * np.interp(a, grid, j)
    return out


def reference_cumulative(composition, pz):
    """Integral of :func:`reference_profile` from 0 to p_z (signed; electrons)."""
    p = np.asarray(pz, np.float64)
    out = np.zeros_like(p)
    for z, n in _atoms(composition).items():
        grid, _, cum = _table(z)
        out += n * np.sign(p) * np.interp(np.abs(p), grid, cum)
    return out


def reference_emf(composition, low: float = 1.0, high: float = 5.0) -> float:
    """EMF of the reference profile (exact window integrals of the tabulated profile)."""
    low, high = core.check_windows(low, high)
    c_l = reference_cumulative(composition, low)
    c_h = reference_cumulative(composition, high)
    return float((2 * c_l) / (2 * (c_h - c_l)))


def expected_spectrum(composition, energies_kev, *, e0_kev: float = 115.0,
                      theta_rad: float = np.pi / 2, counts: float = 1e6,
                      fwhm_kev: float | None = 0.8, absorption=None,
                      background_per_kev: float = 0.0, lines: dict | None = None,
                      elastic_counts: float = 0.0, oversample: int = 10,
                      reference_theta_rad: float | None = None):
    """Expected counts per bin (no noise); see :func:`simulate_spectrum`.

    With ``reference_theta_rad`` the Compton ``counts`` are those the same sample gives at that
    angle, and the counts at ``theta_rad`` follow the physics (Klein-Nishina, absorption and the
    profile range inside the energy axis) instead of being normalised to ``counts``.
    """
    nb = np.asarray(energies_kev).size
    edges = np.asarray(energies_kev, np.float64)
    edges = core.edges_from_axis(edges, nb - 1 if nb > 1 else nb)
    if not counts >= 0:
        raise InputError(f"counts must be >= 0, got {counts}")
    atoms = _atoms(composition)
    if fwhm_kev is None:
        fine = edges
    else:
        if not fwhm_kev > 0:
            raise InputError(f"fwhm_kev must be positive or None, got {fwhm_kev}")
        pad = 5 * fwhm_kev
        step = min(np.diff(edges).min(), fwhm_kev) / max(int(oversample), 1)
        fine = np.arange(edges[0] - pad, edges[-1] + pad + step, step)
    fine = fine[fine < e0_kev * 0.9999]
    cen = 0.5 * (fine[:-1] + fine[1:])
    pz_e = pz_from_energy(fine, e0_kev, theta_rad)
    prof = np.diff(reference_cumulative(atoms, pz_e))
    comp = _correction(cen, e0_kev, theta_rad, absorption) * prof
    total = comp.sum()
    if reference_theta_rad is not None:
        pz_r = pz_from_energy(fine, e0_kev, reference_theta_rad)
        total = (_correction(cen, e0_kev, reference_theta_rad, absorption)
                 * np.diff(reference_cumulative(atoms, pz_r))).sum()
    comp = comp * (counts / total) if total > 0 else comp
    sig = None if fwhm_kev is None else fwhm_kev * core.FWHM_TO_SIGMA
    if sig is not None:
        from scipy.ndimage import gaussian_filter1d

        comp = gaussian_filter1d(comp, sig / step, mode="constant")
    # rebin the fine grid (which stops below E0) onto the requested edges
    cum = np.concatenate([[0.0], np.cumsum(comp)])
    spec = np.diff(np.interp(edges, fine, cum))
    if background_per_kev:
        spec = spec + background_per_kev * np.diff(edges)
    width = 0.05 if sig is None else sig
    for e_line, n_line in (lines or {}).items():
        spec = spec + n_line * core.gaussian_bin_integrals(edges, float(e_line), width)
    if elastic_counts:
        spec = spec + elastic_counts * core.gaussian_bin_integrals(edges, e0_kev, width)
    return spec


def simulate_spectrum(composition, energies_kev, *, e0_kev: float = 115.0,
                      theta_rad: float = np.pi / 2, counts: float = 1e6,
                      fwhm_kev: float | None = 0.8, absorption=None,
                      background_per_kev: float = 0.0, lines: dict | None = None,
                      elastic_counts: float = 0.0, noise: bool = True, seed=None):
    """Simulated Compton spectrum (counts per bin) of a composition.

    Parameters
    ----------
    composition : str or dict
        Formula, a name from ``COMPOSITIONS`` or {element: atoms}.
    energies_kev : array_like
        Bin edges (keV).
    e0_kev : float
        Incident energy (keV).
    theta_rad : float
        Scattering angle (radians).
    counts : float
        Expected Compton counts summed over the bins (before resolution).
    fwhm_kev : float or None
        Gaussian detector resolution FWHM (keV); None for infinite resolution.
    absorption : None, callable or (compound, density_g_cm3, path_out_mm)
        Outgoing transmittance, as in :func:`compton.compton_profile`.
    background_per_kev : float
        Flat background (counts per keV).
    lines : dict, optional
        {line energy (keV): counts} fluorescence/escape lines, Gaussian of the resolution.
    elastic_counts : float
        Counts in the elastic (Rayleigh) line at ``e0_kev``.
    noise : bool
        Draw Poisson counts (int64); otherwise return the expectation (float64).
    seed : int or numpy Generator, optional

    Examples
    --------
    >>> edges = np.arange(85.0, 103.0, 0.2)
    >>> s = simulate_spectrum("Li", edges, counts=1000, seed=0)
    >>> s.shape, s.dtype.kind
    ((89,), 'i')
    """
    spec = expected_spectrum(composition, energies_kev, e0_kev=e0_kev, theta_rad=theta_rad,
                             counts=counts, fwhm_kev=fwhm_kev, absorption=absorption,
                             background_per_kev=background_per_kev, lines=lines,
                             elastic_counts=elastic_counts)
    if not noise:
        return spec
    rng = np.random.default_rng(seed)
    return rng.poisson(np.clip(spec, 0, None)).astype(np.int64)


def simulate_cube(compositions, labels, energies_kev, *, geometry=None, counts_per_pixel: float = 1e4,
                  noise: bool = True, seed=None, **kwargs):
    """Simulated hyperspectral cube: one composition per label, per-pixel scattering angle.

    Parameters
    ----------
    compositions : sequence
        Composition per label value (``labels == k`` uses ``compositions[k]``; None = empty).
    labels : array [rows, cols] of int
        Region label per detector pixel.
    energies_kev : array_like
        Bin edges (keV).
    geometry : compton.geometry.Geometry, optional
        Per-pixel angles and E0 (default 90 degrees, 115 keV).
    counts_per_pixel : float or array [rows, cols]
        Expected Compton counts of a pixel at the central scattering angle (other angles scale
        with the Klein-Nishina cross-section), one composition per unit volume.
    noise, seed, **kwargs
        As in :func:`simulate_spectrum`; ``background_per_kev``, ``lines`` and
        ``elastic_counts`` are counts per pixel (not scaled with ``counts_per_pixel``).

    Returns
    -------
    compton.Cube
        Counts [rows, cols, bins] (uint32 with noise), ``attrs['simulation']`` describing it.
    """
    from .frames import Cube
    from .geometry import Geometry

    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise InputError(f"labels must be a 2-D integer array, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(compositions):
        raise InputError(f"labels run {labels.min()}..{labels.max()} but {len(compositions)} compositions were given")
    geometry = geometry or Geometry(shape=labels.shape)
    if tuple(geometry.shape) != labels.shape:
        raise InputError(f"geometry shape {geometry.shape} differs from labels shape {labels.shape}")
    theta = geometry.scattering_angles()
    edges = np.asarray(energies_kev, np.float64)
    n_pix = np.broadcast_to(np.asarray(counts_per_pixel, np.float64), labels.shape)
    expect = np.zeros((*labels.shape, edges.size - 1))
    th_round = np.round(theta, 6)
    extra_keys = ("background_per_kev", "lines", "elastic_counts")
    extra_kw = {k: kwargs[k] for k in extra_keys if kwargs.get(k)}
    compton_kw = {k: v for k, v in kwargs.items() if k not in extra_keys}
    for lab in np.unique(labels):
        comp = compositions[lab]
        if comp is None:
            continue
        sel = labels == lab
        for th in np.unique(th_round[sel]):
            m = sel & (th_round == th)
            spec = expected_spectrum(comp, edges, e0_kev=geometry.e0_kev, theta_rad=float(th),
                                     counts=1.0, reference_theta_rad=geometry.theta_centre_rad,
                                     **compton_kw)
            expect[m] = n_pix[m][:, None] * spec[None, :]
    if extra_kw:   # background and lines: counts per pixel, not scaled by the Compton counts
        expect += expected_spectrum("Li", edges, e0_kev=geometry.e0_kev, counts=0.0,
                                    fwhm_kev=kwargs.get("fwhm_kev", 0.8), **extra_kw)
    if noise:
        counts = np.random.default_rng(seed).poisson(np.clip(expect, 0, None)).astype(np.uint32)
    else:
        counts = expect
    total = counts.sum(axis=2).astype(np.int64)
    return Cube(counts=counts, bin_edges_kev=edges, accepted=total, rejected=np.zeros_like(total),
                units="keV", n_frames=0,
                attrs={"simulation": {"compositions": [str(c) for c in compositions],
                                      "geometry": geometry.to_dict(), "noise": bool(noise)}})


def simulate_frames(cube, n_frames: int, *, gain_kev_per_adu: float = 0.03, dark_adu: float = 100.0,
                    seed=None) -> np.ndarray:
    """HEXITEC-like frames (uint16 ADU) holding the events of a simulated cube.

    Each count of ``cube.counts`` becomes one single-pixel event with an energy drawn uniformly
    in its bin, placed in a random frame; ADU = dark + E / gain (rounded). Two events of one
    pixel in one frame keep the higher energy (pick ``n_frames`` large for low occupancy).

    Returns
    -------
    ndarray uint16 [n_frames, rows, cols]
    """
    counts = np.asarray(cube.counts)
    if counts.ndim != 3 or n_frames < 1 or not gain_kev_per_adu > 0:
        raise InputError("simulate_frames needs a cube [rows, cols, bins], n_frames >= 1 and gain > 0")
    rng = np.random.default_rng(seed)
    rows, cols, nb = counts.shape
    flat = counts.reshape(-1, nb).astype(np.int64)
    pix, b = np.nonzero(flat)
    reps = flat[pix, b]
    pix, b = np.repeat(pix, reps), np.repeat(b, reps)
    e = cube.bin_edges_kev
    energy = e[b] + rng.random(b.size) * (e[b + 1] - e[b])
    adu = np.clip(np.rint(dark_adu + energy / gain_kev_per_adu), 0, 65535)
    frame = rng.integers(0, n_frames, b.size)
    frames = np.full((n_frames, rows * cols), np.uint16(round(dark_adu)), np.uint16)
    order = np.argsort(adu)
    np.maximum.at(frames, (frame[order], pix[order]), adu[order].astype(np.uint16))
    return frames.reshape(n_frames, rows, cols)
