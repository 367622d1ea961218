"""Embedded sample data: simulated anode-free cells with known ground truth.

The samples are generated, not shipped: deterministic from a seed, with attenuation
coefficients from xraylib's tabulated cross-sections at the chosen energy, so the
demo, the tests and the benchmarks share one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ._errors import InputError

__all__ = ["MATERIALS", "CellSample", "attenuation_per_cm", "smooth_field", "anode_free_cell"]

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
    """

    mu_per_px: np.ndarray
    labels: np.ndarray
    thickness_um: np.ndarray
    li_bottom_px: int
    pixel_size_um: float
    energy_kev: float
    mu_per_cm: dict = field(default_factory=dict)


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
    >>> cell.mu_per_px.shape, cell.labels.max()
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
