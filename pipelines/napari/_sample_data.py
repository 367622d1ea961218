"""napari sample data: the simulated anode-free cell and a simulated XCS acquisition."""

from __future__ import annotations

import numpy as np

__all__ = ["make_cell_sample", "make_xcs_sample", "XCS_REGIONS"]

#: label -> (region name, composition) of the simulated XCS detector image
XCS_REGIONS = {1: ("Li anode", "Li metal"), 2: ("separator", "PEO-LiTFSI"), 3: ("cathode x=0.5", None)}


def make_cell_sample(*, shape: tuple[int, int, int] = (48, 160, 160), seed: int = 0) -> list:
    """The embedded demo cell: attenuation volume, true phase labels and true Li thickness.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (z, y, x) in voxels (1.7 um voxels, 25.5 keV).
    seed : int
        Random seed of :func:`pipelines.samples.anode_free_cell`.

    Returns
    -------
    list of (data, kwargs, layer_type)
        "cell attenuation" (image, mu per voxel), "cell phases" (labels: 1 collector, 2 Li,
        3 electrolyte, 4 pore) and "true Li thickness (µm)" (image, y x), scaled in um.

    Examples
    --------
    >>> layers = make_cell_sample(shape=(40, 48, 48))
    >>> [kw["name"] for _, kw, _ in layers]
    ['cell attenuation', 'cell phases', 'true Li thickness (µm)']
    """
    from ..samples import anode_free_cell

    cell = anode_free_cell(shape=shape, seed=seed)
    px = cell.pixel_size_um
    rng = np.random.default_rng(seed)
    noisy = cell.mu_per_px + rng.normal(0.0, 0.05 * float(cell.mu_per_px.max()), cell.mu_per_px.shape)
    meta = {"voxel_size_um": px, "energy_kev": cell.energy_kev}
    phases = ["collector", "li", "electrolyte", "pore"]
    return [
        (noisy.astype(np.float32), {"name": "cell attenuation", "scale": (px, px, px), "colormap": "gray",
                                    "metadata": {"anodescope": {"kind": "volume", **meta}}}, "image"),
        (cell.labels, {"name": "cell phases", "scale": (px, px, px),
                       "metadata": {"anodescope": {"kind": "labels", "phases": phases, "axis": 0, **meta}}},
         "labels"),
        (cell.thickness_um, {"name": "true Li thickness (µm)", "scale": (px, px), "colormap": "viridis",
                             "metadata": {"anodescope": {"kind": "map", "map": "thickness_um",
                                                         "pixel_size_um": px}}}, "image"),
    ]


def xcs_cube(*, shape: tuple[int, int] = (80, 80), counts_per_pixel: float = 2e4, noise: bool = True,
             seed: int = 0):
    """Simulated XCS cube and its region labels (Li anode, separator, half-charged NMC622).

    Parameters
    ----------
    shape : (int, int)
        Detector (rows, cols) in pixels (250 um pitch).
    counts_per_pixel : float
        Expected Compton counts per pixel at 90 degrees.
    noise : bool
        Poisson counts (True) or the expectation.
    seed : int
        Random seed.

    Returns
    -------
    cube : compton.Cube
        Counts (rows, cols, bins), 0.2 keV bins from 60 to 120 keV.
    labels : ndarray (rows, cols) of int
        0 empty, 1 Li anode, 2 separator, 3 cathode.
    geometry : compton.Geometry
        Pinhole camera of SCIENCE.md section 6 (115 keV, 90 degrees at the centre).
    compositions : list
        Composition per label (None for 0).
    """
    from compton.geometry import Geometry
    from compton.simulate import nmc622, simulate_cube

    rows, cols = shape
    labels = np.zeros(shape, np.int64)
    band = max(1, cols // 4)
    r0, r1 = rows // 20, rows - rows // 20
    for k in range(3):
        c0 = k * (cols // 3) + cols // 20
        labels[r0:r1, c0:c0 + band] = k + 1
    geometry = Geometry(e0_kev=115.0, theta_centre_rad=np.pi / 2, pinhole_to_beam_mm=160.0,
                        pinhole_to_detector_mm=150.0, pixel_pitch_um=250.0, shape=shape)
    comps = [None, "Li metal", "PEO-LiTFSI", nmc622(0.5)]
    edges = np.arange(60.0, 120.0 + 1e-9, 0.2)
    cube = simulate_cube(comps, labels, edges, geometry=geometry, counts_per_pixel=counts_per_pixel,
                         noise=noise, seed=seed)
    return cube, labels, geometry, comps


def make_xcs_sample(*, shape: tuple[int, int] = (80, 80), seed: int = 0) -> list:
    """A simulated X-ray Compton scattering acquisition: HEXITEC spectral cube of a cell.

    Three bands of detector columns see a Li anode, a PEO-LiTFSI separator and a half-charged
    NMC622 cathode at the per-pixel scattering angles of the pinhole camera.

    Parameters
    ----------
    shape : (int, int)
        Detector (rows, cols) in pixels.
    seed : int
        Random seed.

    Returns
    -------
    list of (data, kwargs, layer_type)
        "xcs counts" (energy in keV, row, col), "xcs total counts" (row, col) and "xcs regions"
        (labels); the cube and geometry are in ``metadata["anodescope"]``.
    """
    from ._reader import cube_layers

    cube, labels, geometry, _ = xcs_cube(shape=shape, seed=seed)
    layers = cube_layers(cube, "xcs")
    for _, kw, _ in layers:
        kw["metadata"]["anodescope"]["geometry"] = geometry
    layers.append((labels.astype(np.int32), {"name": "xcs regions", "opacity": 0.3}, "labels"))
    return layers
