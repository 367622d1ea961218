"""Embedded sample data: simulated anode-free cells with known ground truth.

The samples are generated, not shipped: deterministic from a seed, with attenuation
coefficients from xraylib's tabulated cross-sections at the chosen energy, so the
demo, the tests and the benchmarks share one source of truth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ._errors import InputError

__all__ = [
    "MATERIALS",
    "CellSample",
    "XcsAcquisition",
    "HexitecFrames",
    "attenuation_per_cm",
    "smooth_field",
    "anode_free_cell",
    "anode_free_cell_states",
    "xcs_acquisition",
    "hexitec_frames",
    "make_sample_study",
]

#: name -> (chemical formula for xraylib, density in g cm^-3)
MATERIALS: dict[str, tuple[str, float]] = {
    "grafoil": ("C", 1.1),
    "copper": ("Cu", 8.96),
    "lithium": ("Li", 0.534),
    "lpsc": ("Li6PS5Cl", 1.64),
    "air": ("N0.78O0.21Ar0.01", 0.0012),
}

#: phase labels used in :class:`CellSample` ``labels`` (0 = outside the cell)
PHASES = ("collector", "li", "electrolyte", "pore")


def attenuation_per_cm(material: str, energy_kev: float) -> float:
    """Linear attenuation coefficient of a material from xraylib.

    Parameters
    ----------
    material : str
        A key of :data:`MATERIALS` or a chemical formula (density must then be in MATERIALS).
    energy_kev : float
        Photon energy in keV.

    Returns
    -------
    float
        mu in cm^-1 (total cross-section with coherent scattering times density).
    """
    import xraylib

    formula, density = MATERIALS[material]
    return float(xraylib.CS_Total_CP(formula, float(energy_kev)) * density)


def smooth_field(shape: tuple[int, ...], corr_px: float, *, seed: int = 0) -> np.ndarray:
    """Gaussian random field with unit variance and correlation length ``corr_px`` (pixels).

    Parameters
    ----------
    shape : tuple of int
        Output shape.
    corr_px : float
        Gaussian smoothing width in pixels (sets the lateral size of features).
    seed : int
        Random seed.
    """
    rng = np.random.default_rng(seed)
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), corr_px, mode="wrap")
    field_ -= field_.mean()
    return field_ / field_.std()


@dataclass
class CellSample:
    """A simulated cell: attenuation volume, phase labels and the lithium thickness truth.

    Attributes
    ----------
    mu_per_px : ndarray, (z, y, x) float32
        Linear attenuation per voxel (mu in cm^-1 times the voxel size in cm).
    labels : ndarray, (z, y, x) uint8
        0 outside, 1 collector, 2 lithium, 3 electrolyte, 4 pore.
    thickness_um : ndarray, (y, x) float32
        True lithium thickness in um (NaN outside the cell).
    li_bottom_px : int
        First z index of lithium (top of the collector).
    pixel_size_um : float
        Voxel edge in um.
    energy_kev : float
        Photon energy in keV.
    mu_per_cm : dict
        Attenuation of each phase in cm^-1.
    info : dict
        Extra description of the state (e.g. the stripping of :func:`anode_free_cell_states`:
        depth in um, stack model, removed capacity in mAh cm^-2); empty for a plain cell.
    """

    mu_per_px: np.ndarray
    labels: np.ndarray
    thickness_um: np.ndarray
    li_bottom_px: int
    pixel_size_um: float
    energy_kev: float
    mu_per_cm: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def anode_free_cell(
    *,
    shape: tuple[int, int, int] = (48, 160, 160),
    pixel_size_um: float = 1.7,
    energy_kev: float = 25.5,
    mean_thickness_um: float = 25.0,
    min_thickness_um: float = 8.0,
    max_thickness_um: float = 50.0,
    collector_px: int = 5,
    corr_um: float = 40.0,
    n_particles: int = 40,
    n_pores: int = 25,
    seed: int = 0,
) -> CellSample:
    """Simulate an anode-free cell: Grafoil collector | plated Li | Li6PS5Cl electrolyte.

    The layers are stacked along z (the rotation axis, detector rows); the cell is a
    cylinder filling most of the field of view. The Li thickness is a smooth random field
    scaled to the requested mean and clipped to the range; the electrolyte holds denser
    particles and air pores.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (z, y, x) in voxels.
    pixel_size_um : float
        Voxel edge in um.
    energy_kev : float
        Photon energy in keV (attenuation from xraylib).
    mean_thickness_um, min_thickness_um, max_thickness_um : float
        Statistics of the Li thickness map in um.
    collector_px : int
        Collector thickness in voxels.
    corr_um : float
        Lateral correlation length of the thickness field in um.
    n_particles, n_pores : int
        Number of spherical particles (10 % denser) and pores in the electrolyte.
    seed : int
        Random seed; the sample is deterministic.

    Returns
    -------
    CellSample

    Examples
    --------
    >>> cell = anode_free_cell(shape=(40, 64, 64), seed=1)
    >>> cell.mu_per_px.shape, int(cell.labels.max())
    ((40, 64, 64), 4)
    """
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    mu_cm = {name: attenuation_per_cm(name, energy_kev) for name in ("grafoil", "lithium", "lpsc", "air")}

    yy, xx = np.mgrid[0:ny, 0:nx]
    radius = 0.45 * min(ny, nx)
    inside = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 <= radius**2

    field_ = smooth_field((ny, nx), corr_um / pixel_size_um, seed=seed)
    spread = (max_thickness_um - min_thickness_um) / 4.0
    offset = mean_thickness_um
    for _ in range(20):  # shift so that the mean after clipping is the requested one
        thickness = np.clip(offset + spread * field_, min_thickness_um, max_thickness_um)
        offset += mean_thickness_um - thickness[inside].mean()
    thickness_px = thickness / pixel_size_um

    top_needed = collector_px + int(np.ceil(thickness_px.max())) + 4
    if top_needed > nz:
        raise InputError(f"shape[0]={nz} too small: need at least {top_needed} slices for this thickness")

    z = np.arange(nz)[:, None, None] + 0.5  # voxel centres
    li_bottom = collector_px
    labels = np.zeros(shape, np.uint8)
    labels[:li_bottom] = 1
    li = (z >= li_bottom) & (z < li_bottom + thickness_px[None])
    labels[li] = 2
    labels[(z >= li_bottom + thickness_px[None])] = 3

    zz = np.arange(nz)[:, None, None]
    for count, label in ((n_particles, 5), (n_pores, 4)):
        for _ in range(count):
            r = rng.uniform(2.0, 5.0)
            cy, cx = rng.uniform(r, ny - r), rng.uniform(r, nx - r)
            zmin = li_bottom + thickness_px[int(cy), int(cx)] + r + 1
            if zmin >= nz - r:
                continue
            cz = rng.uniform(zmin, nz - r)
            ball = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            labels[ball & (labels == 3)] = label

    mu = np.zeros(shape, np.float64)
    mu[labels == 1] = mu_cm["grafoil"]
    mu[labels == 2] = mu_cm["lithium"]
    mu[labels == 3] = mu_cm["lpsc"]
    mu[labels == 5] = 1.1 * mu_cm["lpsc"]
    mu[labels == 4] = mu_cm["air"]
    labels[labels == 5] = 3
    outside = ~inside
    mu[:, outside] = 0.0
    labels[:, outside] = 0
    thickness = thickness.astype(np.float32)
    thickness[outside] = np.nan
    mu_px = (mu * pixel_size_um * 1e-4).astype(np.float32)
    return CellSample(
        mu_per_px=mu_px,
        labels=labels,
        thickness_um=thickness,
        li_bottom_px=li_bottom,
        pixel_size_um=float(pixel_size_um),
        energy_kev=float(energy_kev),
        mu_per_cm={"collector": mu_cm["grafoil"], "li": mu_cm["lithium"], "electrolyte": mu_cm["lpsc"], "pore": mu_cm["air"]},
    )


#: um of lithium metal per mAh cm^-2 (molar volume 13.02 cm^3/mol, 96485 C/mol; SCIENCE.md section 1)
LI_UM_PER_MAH_CM2 = 4.86

#: stack models of :func:`anode_free_cell_states`
STACK_MODELS = ("void", "relaxed")


def _strip_depth(thickness_um: np.ndarray, rate: np.ndarray, stripped_um: float) -> float:
    """Depth d0 (um) such that the mean of min(T, d0 * rate) is ``stripped_um`` (bisection)."""
    lo, hi = 0.0, float(np.max(thickness_um / np.maximum(rate, 1e-12)))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.mean(np.minimum(thickness_um, mid * rate)) < stripped_um:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(hi, 1.0):
            break
    return 0.5 * (lo + hi)


def anode_free_cell_states(
    *,
    shape: tuple[int, int, int] = (48, 160, 160),
    pixel_size_um: float = 1.7,
    energy_kev: float = 25.5,
    mean_thickness_um: float = 25.0,
    min_thickness_um: float = 8.0,
    max_thickness_um: float = 50.0,
    collector_px: int = 5,
    corr_um: float = 40.0,
    n_particles: int = 40,
    n_pores: int = 25,
    stripped_um: float = 16.0,
    nonuniformity: float = 0.0,
    stack: str = "void",
    seed: int = 0,
) -> dict[str, CellSample]:
    """One anode-free cell after plating and after partial stripping.

    The ``"plated"`` state is :func:`anode_free_cell` with the same arguments. The
    ``"stripped"`` state is the same cell (same collector, electrolyte, particles, pores and
    geometry) after a mean lithium depth ``stripped_um`` (a capacity of ``stripped_um / 4.86``
    mAh cm^-2) has been stripped, following the virtual-stripping picture of SCIENCE.md
    section 4: lithium leaves through the Li | electrolyte interface at the same rate wherever
    lithium remains, so a depth ``d`` is removed everywhere, columns thinner than ``d`` run
    empty and the thick regions remain as islands. The remaining thickness is
    ``T' = max(T - d, 0)`` with ``d`` solved (by bisection) so that ``mean(T - T') =
    stripped_um`` exactly. With ``nonuniformity = a > 0`` the local stripping rate is ``1 + a
    g(x, y)`` (``g`` a smooth unit-variance field, clipped at 0), i.e. a removed depth
    ``d0 (1 + a g)``, again solved for the requested mean.

    Where does the space go? Two stack models:

    - ``"void"`` (default): the collector and the ceramic Li6PS5Cl separator are rigid and
      stay in place; lithium leaves through the Li | electrolyte interface and a gap (air,
      label 4) opens there: on top of the remaining islands and, where lithium ran out,
      between collector and electrolyte. This is the picture of SCIENCE.md section 1 ("voids
      form at the remaining islands"): the stack pressure is carried by the remaining islands,
      so the stack cannot close while they stand, and lithium creep closes the voids far more
      slowly than stripping at 0.5 mA cm^-2 opens them. The gap is barely visible in
      absorption contrast (lithium 0.09 cm^-1, air 0.0006 cm^-1 at 25.5 keV): a measurement
      that takes the darkest layer for lithium sees ``T`` (lithium plus gap), not ``T'``.
    - ``"relaxed"``: complete creep under high stack pressure: the remaining lithium stays
      pressed against the electrolyte and the compliant Grafoil collector follows it (its top
      rises by the removed depth ``T - T'``; the collector extends below the field of view,
      so its voxels simply replace the lithium that left); where lithium ran out the collector
      touches the electrolyte.

    Either way only voxels that held lithium change.

    Parameters
    ----------
    shape, pixel_size_um, energy_kev, mean_thickness_um, min_thickness_um, max_thickness_um, \
collector_px, corr_um, n_particles, n_pores, seed
        As in :func:`anode_free_cell` (voxels, um, keV).
    stripped_um : float
        Mean lithium depth removed over the cell area, um (capacity ``stripped_um / 4.86``
        mAh cm^-2); must be below the mean plated thickness.
    nonuniformity : float
        Relative amplitude (0 to 1) of the lateral variation of the stripping rate; 0 = the
        uniform stripping of SCIENCE.md section 4.
    stack : {"void", "relaxed"}
        What fills the space the lithium left (see above).

    Returns
    -------
    dict
        ``{"plated": CellSample, "stripped": CellSample}``; ``stripped.info`` holds the
        stripping depth ``depth_um`` (uniform part, um), ``removed_um`` (mean removed depth,
        um), ``removed_mah_cm2``, ``stack``, ``nonuniformity`` and ``active_fraction`` (area
        fraction where lithium remains).

    Examples
    --------
    >>> cells = anode_free_cell_states(shape=(40, 64, 64), pixel_size_um=2.0, stripped_um=10.0)
    >>> plated, stripped = cells["plated"], cells["stripped"]
    >>> inside = ~np.isnan(plated.thickness_um)
    >>> bool(np.all(stripped.thickness_um[inside] <= plated.thickness_um[inside]))
    True
    >>> round(float(np.nanmean(plated.thickness_um - stripped.thickness_um)), 3)
    10.0
    """
    if stack not in STACK_MODELS:
        raise InputError(f"stack must be one of {STACK_MODELS}, got {stack!r}")
    if not (np.isfinite(nonuniformity) and 0.0 <= nonuniformity <= 1.0):
        raise InputError(f"nonuniformity must be in [0, 1], got {nonuniformity!r}")
    if not (np.isfinite(stripped_um) and 0.0 < stripped_um < mean_thickness_um):
        raise InputError(
            f"stripped_um must be in (0, mean_thickness_um={mean_thickness_um}) um, got {stripped_um!r}"
        )
    plated = anode_free_cell(
        shape=shape, pixel_size_um=pixel_size_um, energy_kev=energy_kev, mean_thickness_um=mean_thickness_um,
        min_thickness_um=min_thickness_um, max_thickness_um=max_thickness_um, collector_px=collector_px,
        corr_um=corr_um, n_particles=n_particles, n_pores=n_pores, seed=seed,
    )
    inside = ~np.isnan(plated.thickness_um)
    t = plated.thickness_um[inside].astype(np.float64)
    rate = np.ones_like(t)
    if nonuniformity > 0:
        g = smooth_field(plated.thickness_um.shape, corr_um / pixel_size_um, seed=seed + 1)[inside]
        rate = np.clip(1.0 + nonuniformity * g, 0.0, None)
    depth = _strip_depth(t, rate, float(stripped_um))
    removed = np.minimum(t, depth * rate)
    remaining = t - removed

    ny, nx = plated.thickness_um.shape
    removed_map = np.zeros((ny, nx))
    removed_map[inside] = removed
    thickness = np.full((ny, nx), np.nan, np.float32)
    thickness[inside] = remaining

    labels = plated.labels.copy()
    mu = plated.mu_per_px.copy()
    z = np.arange(shape[0])[:, None, None] + 0.5  # voxel centres, as in anode_free_cell
    li = labels == 2
    px = plated.pixel_size_um
    if stack == "relaxed":
        # collector top rises by the removed depth: its voxels replace the lithium that left
        gone = li & (z < plated.li_bottom_px + removed_map[None] / px)
        new_label, new_mu = 1, plated.mu_per_cm["collector"]
    else:
        # gap of air between the remaining lithium and the electrolyte
        full = np.zeros((ny, nx))
        full[inside] = remaining
        gone = li & (z >= plated.li_bottom_px + full[None] / px)
        new_label, new_mu = 4, plated.mu_per_cm["pore"]
    labels[gone] = new_label
    mu[gone] = np.float32(new_mu * px * 1e-4)
    info = {
        "stack": stack,
        "depth_um": float(depth),
        "removed_um": float(removed.mean()),
        "removed_mah_cm2": float(removed.mean() / LI_UM_PER_MAH_CM2),
        "nonuniformity": float(nonuniformity),
        "active_fraction": float(np.mean(remaining > 0)),
    }
    stripped = CellSample(
        mu_per_px=mu, labels=labels, thickness_um=thickness, li_bottom_px=plated.li_bottom_px,
        pixel_size_um=plated.pixel_size_um, energy_kev=plated.energy_kev, mu_per_cm=dict(plated.mu_per_cm),
        info=info,
    )
    plated.info = {"stack": stack, "plated_um": float(t.mean()),
                   "plated_mah_cm2": float(t.mean() / LI_UM_PER_MAH_CM2)}
    return {"plated": plated, "stripped": stripped}


# --------------------------------------------------------------------------- XCS (Compton) samples

#: XCS regions of :func:`xcs_acquisition`: label -> name
XCS_REGIONS = {1: "anode", 2: "separator", 3: "cathode"}

#: published pinhole-camera geometry (SCIENCE.md section 6), keys of compton.read_geometry
XCS_GEOMETRY = {"e0_kev": 115.0, "theta_centre_deg": 90.0, "pinhole_to_beam_mm": 160.0,
                "pinhole_to_detector_mm": 150.0, "pixel_pitch_um": 250.0}


@dataclass
class XcsAcquisition:
    """Simulated XCS acquisitions of one cell at several states of charge.

    Attributes
    ----------
    cubes : dict
        State of charge (0 = discharged, 1 = charged) -> ``compton.Cube`` with Poisson counts
        (rows, cols, energy bins of ``bin_width_kev``).
    labels : ndarray, (rows, cols) int64
        Region per detector pixel: 1 anode, 2 separator, 3 cathode, -1 none.
    geometry : compton.Geometry
        Pinhole-camera geometry (per-pixel scattering angles).
    geometry_yaml : dict
        The geometry as written to YAML (``theta_centre_deg`` in degrees, lengths in mm/um).
    regions : dict
        Region label -> name (:data:`XCS_REGIONS`).
    compositions : dict
        State of charge -> {region: chemical formula}.
    lithiation : dict
        State of charge -> Li content x of the Li_x Ni0.6Mn0.2Co0.2O2 cathode.
    expected_emf : dict
        State of charge -> {region: EMF of the noiseless cube at the 0.8 keV detector
        resolution, as the ratio of the region's summed valence and core windows (the
        estimator of ``anodescope compton --regions``)}; dimensionless.
    reference_emf : dict
        State of charge -> {region: EMF of xraylib's reference Compton profile}; dimensionless.
    """

    cubes: dict
    labels: np.ndarray
    geometry: object
    geometry_yaml: dict
    regions: dict
    compositions: dict
    lithiation: dict
    expected_emf: dict
    reference_emf: dict


def _xcs_labels(shape: tuple[int, int]) -> np.ndarray:
    """Three column bands (anode | separator | cathode) with margins; -1 elsewhere."""
    rows, cols = shape
    margin, gap = round(0.075 * cols), round(0.05 * cols)
    width = (cols - 2 * margin - 2 * gap) // 3
    r0 = round(0.05 * rows)
    labels = np.full(shape, -1, np.int64)
    for k in (1, 2, 3):
        c0 = margin + (k - 1) * (width + gap)
        labels[r0:rows - r0, c0:c0 + width] = k
    return labels


def xcs_acquisition(
    *,
    states_of_charge=(0.0, 0.5, 1.0),
    shape: tuple[int, int] = (80, 80),
    counts_per_pixel: float = 4e4,
    lithiation: tuple[float, float] = (1.0, 0.35),
    bin_width_kev: float = 0.2,
    e_max_kev: float = 120.0,
    seed: int = 0,
) -> XcsAcquisition:
    """Simulated Compton-scattering (XCS) cubes of a cell at several states of charge.

    The pinhole camera of SCIENCE.md section 6 (115 keV, 90 degrees, 160 mm / 150 mm, 250 um
    pixels) images the beam plane across a lithium-metal polymer cell: detector column bands
    see the Li metal anode, the PEO-LiTFSI separator and the NMC622 cathode. The cathode's
    lithium content follows the state of charge linearly, ``x = x0 + soc (x1 - x0)`` with
    ``(x0, x1) = lithiation`` (x = 1 discharged, about 0.35 charged to 4.3 V), so its EMF
    falls as the cell charges; anode and separator do not change. Spectra come from
    :func:`compton.simulate.simulate_cube` (xraylib reference profiles, Klein-Nishina at
    each pixel's scattering angle, 0.8 keV FWHM resolution, Poisson noise).

    Parameters
    ----------
    states_of_charge : sequence of float
        States of charge in [0, 1] (0 discharged, 1 charged); distinct values.
    shape : tuple of int
        Detector (rows, cols) in pixels (HEXITEC: 80 x 80).
    counts_per_pixel : float
        Expected Compton counts per pixel at the central angle.
    lithiation : (float, float)
        Cathode Li content x at state of charge 0 and 1.
    bin_width_kev, e_max_kev : float
        Energy bins (keV) from 0 to ``e_max_kev``.
    seed : int
        Random seed (each state of charge draws its own stream).

    Returns
    -------
    XcsAcquisition

    Examples
    --------
    >>> acq = xcs_acquisition(states_of_charge=(0.0, 1.0), shape=(16, 16), counts_per_pixel=1e3)
    >>> acq.cubes[0.0].counts.shape
    (16, 16, 600)
    >>> bool(acq.reference_emf[0.0][3] > acq.reference_emf[1.0][3])  # cathode EMF rises with Li
    True
    """
    import compton
    from compton.simulate import nmc622, reference_emf, simulate_cube

    socs = [float(s) for s in states_of_charge]
    if not socs or len(set(socs)) != len(socs) or not all(0.0 <= s <= 1.0 for s in socs):
        raise InputError(f"states_of_charge must be distinct values in [0, 1], got {tuple(states_of_charge)!r}")
    if len(shape) != 2 or min(shape) < 8:
        raise InputError(f"shape must be detector (rows, cols) of at least 8 x 8 pixels, got {shape!r}")
    if not (np.isfinite(counts_per_pixel) and counts_per_pixel > 0):
        raise InputError(f"counts_per_pixel must be a positive number of counts, got {counts_per_pixel!r}")
    x0, x1 = (float(v) for v in lithiation)
    if not (0.0 <= x0 <= 1.2 and 0.0 <= x1 <= 1.2):
        raise InputError(f"lithiation must be two Li contents x in [0, 1.2], got {lithiation!r}")
    if not (0 < bin_width_kev < e_max_kev):
        raise InputError(f"bin_width_kev must be in (0, e_max_kev={e_max_kev}) keV, got {bin_width_kev!r}")

    shape = (int(shape[0]), int(shape[1]))
    labels = _xcs_labels(shape)
    geometry_yaml = dict(XCS_GEOMETRY, shape=list(shape))
    geo = compton.Geometry(e0_kev=XCS_GEOMETRY["e0_kev"], theta_centre_rad=float(np.deg2rad(90.0)),
                           pinhole_to_beam_mm=XCS_GEOMETRY["pinhole_to_beam_mm"],
                           pinhole_to_detector_mm=XCS_GEOMETRY["pinhole_to_detector_mm"],
                           pixel_pitch_um=XCS_GEOMETRY["pixel_pitch_um"], shape=shape)
    edges = np.arange(0.0, e_max_kev + 1e-9, bin_width_kev)
    lab = np.where(labels > 0, labels, 0)
    cubes, comps_out, x_out, expected, reference = {}, {}, {}, {}, {}
    for i, soc in enumerate(socs):
        x = round(x0 + soc * (x1 - x0), 6)
        comps = {1: "Li", 2: "C42H80O24LiF6NS2", 3: nmc622(x)}
        seq = [None, comps[1], comps[2], comps[3]]
        cubes[soc] = simulate_cube(seq, lab, edges, geometry=geo, counts_per_pixel=counts_per_pixel,
                                   seed=[int(seed), 7, i])
        clean = simulate_cube(seq, lab, edges, geometry=geo, counts_per_pixel=counts_per_pixel, noise=False)
        res = compton.emf_map(clean, geometry=geo)
        exp_k = {}
        for k in XCS_REGIONS:
            m = (labels == k) & np.isfinite(res.e_low) & np.isfinite(res.e_high)
            exp_k[k] = float(res.e_low[m].sum() / res.e_high[m].sum())
        expected[soc] = exp_k
        reference[soc] = {k: float(reference_emf(c)) for k, c in comps.items()}
        comps_out[soc] = comps
        x_out[soc] = x
    return XcsAcquisition(cubes=cubes, labels=labels, geometry=geo, geometry_yaml=geometry_yaml,
                          regions=dict(XCS_REGIONS), compositions=comps_out, lithiation=x_out,
                          expected_emf=expected, reference_emf=reference)


@dataclass
class HexitecFrames:
    """Simulated raw HEXITEC frames with their per-pixel energy calibration.

    Attributes
    ----------
    frames : ndarray, (n_frames, rows, cols) uint16
        Raw frames in ADU (sparse events with charge sharing, read noise).
    gradients : ndarray, (rows, cols) float64
        Calibration gradients in keV per ADU.
    intercepts : ndarray, (rows, cols) float64
        Calibration intercepts in keV.
    lines_kev, weights : tuple of float
        Photon lines (keV) and their relative weights.
    """

    frames: np.ndarray
    gradients: np.ndarray
    intercepts: np.ndarray
    lines_kev: tuple
    weights: tuple


def hexitec_frames(*, n_frames: int = 20000, shape: tuple[int, int] = (80, 80), seed: int = 0) -> HexitecFrames:
    """Raw HEXITEC frames of an XCS acquisition, with the calibration that converts them.

    Photons of the Am-241 59.54 keV line, the 93.9 keV Compton peak (115 keV at 90 degrees)
    and the Cd 26.1 / Te 31.0 keV fluorescence, with 15 % two-pixel and 5 % three-pixel
    charge-sharing clusters and 0.8 keV FWHM, recorded with per-pixel gains (0.027 to 0.033
    keV per ADU) and intercepts (-2 to -1 keV), as in the demo.

    Parameters
    ----------
    n_frames : int
        Number of frames (about 1 % of the pixels hit per frame).
    shape : tuple of int
        Frame (rows, cols) in pixels, multiples of 80 (HEXITEC modules).
    seed : int
        Random seed.

    Returns
    -------
    HexitecFrames

    Examples
    --------
    >>> hx = hexitec_frames(n_frames=10)
    >>> hx.frames.shape, hx.frames.dtype.name
    ((10, 80, 80), 'uint16')
    """
    from compton._sim_frames import sparse_frames

    if isinstance(n_frames, (bool, np.bool_)) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise InputError(f"n_frames must be a positive integer, got {n_frames!r}")
    if len(shape) != 2 or min(shape) < 80 or shape[0] % 80 or shape[1] % 80:
        raise InputError(f"shape must be multiples of 80 x 80 pixels (HEXITEC modules), got {shape!r}")
    rng = np.random.default_rng([int(seed), 11])
    shape = (int(shape[0]), int(shape[1]))
    gains = rng.uniform(0.027, 0.033, shape)
    intercepts = rng.uniform(-2.0, -1.0, shape)
    lines, weights = (59.54, 93.9, 26.1, 31.0), (0.25, 0.6, 0.08, 0.07)
    frames, _ = sparse_frames(int(n_frames), shape=shape, lines_kev=lines, weights=weights,
                              gain_kev_per_adu=gains, intercept_kev=intercepts, dark_adu=0.0, seed=int(seed))
    return HexitecFrames(frames=frames, gradients=gains, intercepts=intercepts, lines_kev=lines, weights=weights)


# --------------------------------------------------------------------------- the sample study

#: sizes of :func:`make_sample_study`
STUDY_SIZES = {
    "demo": {"shape": (48, 160, 160), "pixel_size_um": 1.7, "n_angles": 900, "n_particles": 40, "n_pores": 25,
             "xcs_shape": (80, 80), "n_frames": 20000},
    "test": {"shape": (28, 64, 64), "pixel_size_um": 3.4, "n_angles": 180, "n_particles": 10, "n_pores": 6,
             "xcs_shape": (32, 32), "n_frames": 2000},
}

#: the states of charge of the sample study's XCS acquisitions
STUDY_SOCS = (0.0, 0.5, 1.0)

#: columns of ``scans.tsv`` (the scan keys of the study config)
SCAN_COLUMNS = ("id", "kind", "projections", "truth_thickness", "capacity_mah_cm2", "frames", "cube",
                "gradients", "intercepts", "geometry", "regions")

#: stage parameters written into ``study.yaml`` (the defaults of the verbs used by the demo)
STUDY_STAGES = {
    "reconstruct": {"algorithm": "fourier", "center": "auto", "rings": "sorting", "ring_size": 7,
                    "memory_limit": "1GB", "device": "auto"},
    "segment": {"phases": ["collector", "li", "electrolyte"], "method": "multiotsu", "median": 3},
    "strip": {"fractions": [0.64, 0.85, 0.95], "current_density_ma_cm2": 0.5, "electrolyte_thickness_um": 50,
              "critical_current_density_ma_cm2": 2.0, "lateral_boundary": "mirror", "crop": "inscribed"},
    "hexitec": {"threshold_adu": 300, "charge_sharing": "discriminate", "bin_width_kev": 0.2, "e_max_kev": 120},
    "compton": {},
}


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _atomic(path: Path, write) -> bool:
    """Create ``path`` through ``write(tmp)`` on ``<path>.part`` and a rename; reuse an existing one.

    Returns True when the file was written, False when an existing complete one was kept.
    """
    if path.exists():
        return False
    tmp = path.with_name(path.name + ".part")
    _remove(tmp)  # left over from an interrupted run
    write(tmp)
    os.replace(tmp, path)
    return True


def _write_text(path: Path, text: str) -> None:
    """Write a small text file atomically when its content differs."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, array)

    _atomic(path, write)


def _soc_id(soc: float) -> str:
    return f"xcs_soc{round(100 * soc):03d}"


def _value(value, unit: str, description: str = "") -> dict:
    out = {"value": value, "unit": unit}
    if description:
        out["description"] = description
    return out


def _tsv(scans: list[dict]) -> str:
    lines = ["\t".join(SCAN_COLUMNS)]
    for scan in scans:
        lines.append("\t".join("" if scan.get(c) is None else str(scan[c]) for c in SCAN_COLUMNS))
    return "\n".join(lines) + "\n"


def make_sample_study(out_dir, *, size: str = "demo", seed: int = 0) -> Path:
    """Write the sample study: simulated tomography and XCS data, their truth, and the study config.

    Written into ``out_dir`` (created):

    - ``data/plated.h5`` and ``data/stripped.h5``: DXchange scans (``recon.simulate_scan``:
      flats, darks, Poisson noise, a dead and a hot detector column) of the two states of one
      anode-free cell (:func:`anode_free_cell_states`, 16 um of the 25 um stripped, voids
      where lithium left), with the true Li thickness maps ``data/<state>_thickness_um.npy``
      (um, NaN outside the cell) and ``data/stripped_li_plus_gap_um.npy`` (lithium plus the
      gap it left, the dark layer absorption contrast shows);
    - ``data/xcs_soc000.zarr``, ``xcs_soc050.zarr``, ``xcs_soc100.zarr``: XCS cubes
      (``compton.write_cube``) of a cell at states of charge 0, 0.5 and 1
      (:func:`xcs_acquisition`), with ``data/xcs_geometry.yaml`` and the region labels
      ``data/xcs_regions.npy`` (1 anode, 2 separator, 3 cathode, -1 none);
    - ``data/hexitec_frames.h5`` (``raw_frames``) with ``data/hexitec_gradients.txt`` and
      ``data/hexitec_intercepts.txt`` (:func:`hexitec_frames`);
    - ``truth.json``: true rotation centre, pixel size, energy and attenuation, mean thickness
      and capacity of each state, stripped depth, expected and reference EMF per region and
      state of charge, every value with its unit;
    - ``study.yaml`` (study config, scans inline, output folder ``results``) and
      ``scans.tsv`` (the same scans as a sheet).

    Every data file is written as ``<name>.part`` and renamed when complete; existing
    complete files are reused, so an interrupted call can simply be repeated. The content is
    deterministic from ``seed``.

    Parameters
    ----------
    out_dir : str or Path
        Study folder.
    size : {"demo", "test"}
        "demo": 48 x 160 x 160 voxels of 1.7 um, 900 projections, 80 x 80 XCS pixels, 20000
        HEXITEC frames (about a minute on 2 cores); "test": 28 x 64 x 64 voxels of 3.4 um,
        180 projections, 32 x 32 XCS pixels, 2000 frames (a few seconds).
    seed : int
        Seed of the samples and of the noise.

    Returns
    -------
    Path
        ``out_dir/study.yaml``.

    Raises
    ------
    InputError
        Unknown ``size``, or ``out_dir`` already holds a study made with another size or seed.

    Examples
    --------
    >>> cfg = make_sample_study("sample_study", size="test")  # doctest: +SKIP
    >>> cfg.name  # doctest: +SKIP
    'study.yaml'
    """
    import json

    import yaml

    import compton
    import recon

    if size not in STUDY_SIZES:
        raise InputError(f"size must be one of {sorted(STUDY_SIZES)}, got {size!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    p = STUDY_SIZES[size]
    out = Path(out_dir)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    truth_path = out / "truth.json"
    marker = data / "sample.json"  # written first: a folder of another size or seed is never mixed in
    for path in (marker, truth_path):
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = {}
            if (old.get("size"), old.get("seed")) != (size, seed):
                raise InputError(f"{out}: holds a sample study of size {old.get('size')!r}, seed "
                                 f"{old.get('seed')!r} ({path.name}); expected size {size!r}, seed {seed} "
                                 "(use another folder)")
    _write_text(marker, json.dumps({"size": size, "seed": seed}) + "\n")

    # ---- tomography: one cell, two states
    cells = anode_free_cell_states(shape=p["shape"], pixel_size_um=p["pixel_size_um"],
                                   n_particles=p["n_particles"], n_pores=p["n_pores"], stack="void", seed=seed)
    theta = np.linspace(0.0, np.pi, p["n_angles"], endpoint=False)
    width = p["shape"][2]
    scans, states = [], {}
    for i, (state, cell) in enumerate(cells.items()):
        h5 = data / f"{state}.h5"

        def write_scan(tmp, cell=cell, i=i):
            proj = recon.simulate_scan(
                cell.mu_per_px, theta, incident_counts=50000, n_flats=10, n_darks=10,
                dead_columns=(width // 3,), hot_columns=(2 * width // 3 + 5,), seed=seed * 10 + i,
                pixel_size_um=cell.pixel_size_um, energy_kev=cell.energy_kev,
            )
            recon.write_dxchange(tmp, proj, pixel_size_um=cell.pixel_size_um, energy_kev=cell.energy_kev,
                                 overwrite=True)

        _atomic(h5, write_scan)
        truth_npy = data / f"{state}_thickness_um.npy"
        _save_npy(truth_npy, cell.thickness_um)
        if state == "stripped":  # lithium plus the gap it left: what absorption contrast shows as dark
            gap_npy = data / "stripped_li_plus_gap_um.npy"
            _save_npy(gap_npy, cells["plated"].thickness_um)
        mean_um = float(np.nanmean(cell.thickness_um))
        capacity = round(mean_um / LI_UM_PER_MAH_CM2, 4)
        scans.append({"id": state, "kind": "tomo", "projections": f"data/{h5.name}",
                      "truth_thickness": f"data/{truth_npy.name}", "capacity_mah_cm2": capacity})
        entry = {
            "projections": f"data/{h5.name}",
            "truth_thickness": f"data/{truth_npy.name}",
            "mean_thickness": _value(mean_um, "um", "mean true Li thickness inside the cell"),
            "min_thickness": _value(float(np.nanmin(cell.thickness_um)), "um"),
            "max_thickness": _value(float(np.nanmax(cell.thickness_um)), "um"),
            "capacity": _value(mean_um / LI_UM_PER_MAH_CM2, "mAh cm^-2", "mean thickness / 4.86 um per mAh cm^-2"),
        }
        if state == "stripped":
            info = cell.info
            entry.update(
                stack=info["stack"],
                li_plus_gap=f"data/{gap_npy.name}",
                stripped=_value(info["removed_um"], "um", "mean Li depth removed"),
                stripped_capacity=_value(info["removed_mah_cm2"], "mAh cm^-2"),
                strip_depth=_value(info["depth_um"], "um", "depth removed wherever Li remained"),
                active_fraction=_value(info["active_fraction"], "1", "area fraction with Li left"),
            )
        states[state] = entry
    any_cell = cells["plated"]

    # ---- XCS cubes at several states of charge
    acq = xcs_acquisition(states_of_charge=STUDY_SOCS, shape=p["xcs_shape"], seed=seed)
    geometry_path = data / "xcs_geometry.yaml"
    _write_text(geometry_path, yaml.safe_dump(acq.geometry_yaml, sort_keys=True))
    regions_path = data / "xcs_regions.npy"
    _save_npy(regions_path, acq.labels)
    xcs_truth = {}
    for soc, cube in acq.cubes.items():
        sid = _soc_id(soc)
        path = data / f"{sid}.zarr"
        _atomic(path, lambda tmp, cube=cube: compton.write_cube(cube, tmp))
        scans.append({"id": sid, "kind": "xcs", "cube": f"data/{path.name}",
                      "geometry": f"data/{geometry_path.name}", "regions": f"data/{regions_path.name}"})
        xcs_truth[sid] = {
            "cube": f"data/{path.name}",
            "state_of_charge": _value(soc, "1", "0 discharged, 1 charged"),
            "cathode_lithiation": _value(acq.lithiation[soc], "1", "x in Li_x Ni0.6Mn0.2Co0.2O2"),
            "compositions": {acq.regions[k]: c for k, c in acq.compositions[soc].items()},
            "expected_emf": {acq.regions[k]: _value(v, "1", "noiseless cube at 0.8 keV FWHM, region window sums")
                             for k, v in acq.expected_emf[soc].items()},
            "reference_emf": {acq.regions[k]: _value(v, "1", "xraylib reference Compton profile")
                              for k, v in acq.reference_emf[soc].items()},
        }

    # ---- raw HEXITEC frames with their calibration
    hx = hexitec_frames(n_frames=p["n_frames"], seed=seed)
    frames_path = data / "hexitec_frames.h5"

    def write_frames(tmp):
        import h5py

        with h5py.File(tmp, "w") as f:
            f.create_dataset("raw_frames", data=hx.frames, chunks=(min(1024, hx.frames.shape[0]), *hx.frames.shape[1:]))

    _atomic(frames_path, write_frames)
    cal = {}
    for name, values in (("gradients", hx.gradients), ("intercepts", hx.intercepts)):
        cal[name] = data / f"hexitec_{name}.txt"
        _atomic(cal[name], lambda tmp, values=values: compton.write_values(tmp, values))
    # an Am-241 + single-line detector acquisition: no scattering geometry, so the study
    # processes it into a calibrated cube only (the hexitec stage), without Compton profiles
    scans.append({"id": "hexitec", "kind": "xcs", "frames": f"data/{frames_path.name}",
                  "gradients": f"data/{cal['gradients'].name}", "intercepts": f"data/{cal['intercepts'].name}"})

    truth = {
        "study": f"anode-free-sample-{size}",
        "size": size,
        "seed": seed,
        "tomography": {
            "pixel_size": _value(any_cell.pixel_size_um, "um"),
            "energy": _value(any_cell.energy_kev, "keV"),
            "n_angles": p["n_angles"],
            "shape_zyx": list(p["shape"]),
            "true_center": _value((width - 1) / 2, "px", "rotation axis, detector column"),
            "mu": {k: _value(v, "cm^-1", "xraylib total attenuation") for k, v in any_cell.mu_per_cm.items()},
            "states": states,
        },
        "xcs": {"regions": {str(k): v for k, v in acq.regions.items()}, "regions_file": f"data/{regions_path.name}",
                "geometry": f"data/{geometry_path.name}", "scans": xcs_truth},
        "hexitec": {"frames": f"data/{frames_path.name}", "n_frames": int(hx.frames.shape[0]),
                    "lines": _value(list(hx.lines_kev), "keV"), "weights": list(hx.weights),
                    "compton_peak": _value(93.9, "keV", "115 keV scattered at 90 degrees")},
    }
    _write_text(truth_path, json.dumps(truth, indent=2) + "\n")
    _write_text(out / "scans.tsv", _tsv(scans))
    config = {"study": f"anode-free-sample-{size}", "out": "results",
              "scans": [{k: v for k, v in s.items() if v is not None} for s in scans],
              "stages": STUDY_STAGES}
    yaml_path = out / "study.yaml"
    _write_text(yaml_path, "# sample study written by pipelines.samples.make_sample_study "
                f"(size {size!r}, seed {seed}); paths relative to this file\n"
                + yaml.safe_dump(config, sort_keys=False))
    return yaml_path
