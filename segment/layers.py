"""Layer geometry: stacking axis, interface plane fit and tilt, thickness per column."""

from __future__ import annotations

import numpy as np

from ._backend import to_device
from ._errors import InputError

__all__ = ["stacking_axis", "fit_plane", "thickness_map", "interfaces_from_labels"]


def stacking_axis(volume) -> int:
    """Axis (0, 1 or 2) along which the layers are stacked.

    The plane-averaged intensity varies most along the stacking axis (each plane cuts one
    layer) and little along the others (each plane cuts all layers).

    Parameters
    ----------
    volume : ndarray or dask.array.Array, (z, y, x)
        Attenuation volume or labels (a Dask array is reduced chunk by chunk).

    Examples
    --------
    >>> import numpy as np
    >>> v = np.zeros((20, 30, 40)); v[:, 10:, :] = 1.0
    >>> stacking_axis(v)
    1
    """
    if getattr(volume, "ndim", None) != 3:
        raise InputError(f"volume must be 3-D, got shape {getattr(volume, 'shape', None)}")
    if hasattr(volume, "dask"):  # a Dask (e.g. zarr-backed) volume: plane means chunk by chunk
        import dask
        import dask.array as da

        v = volume.astype(np.float64)
        means = dask.compute(*[da.nanmean(v, axis=tuple(a for a in range(3) if a != ax)) for ax in range(3)])
    else:
        v = np.asarray(to_device(volume, "cpu"), dtype=np.float64)
        means = [np.nanmean(v, axis=tuple(a for a in range(3) if a != ax)) for ax in range(3)]
    return int(np.argmax([float(np.var(m)) for m in means]))


def fit_plane(height, *, pixel_size_um: float = 1.0, mask=None) -> dict:
    """Least-squares plane through an interface height map, and its tilt.

    Parameters
    ----------
    height : ndarray, (y, x)
        Interface height (um or voxels); NaN = missing.
    pixel_size_um : float
        Lateral sampling (same length unit as ``height``, for the tilt angle).
    mask : ndarray of bool, optional
        Points to use.

    Returns
    -------
    dict
        ``offset`` (height at the map centre), ``slope_y``, ``slope_x`` (height per lateral
        unit), ``tilt_rad`` (angle of the plane normal to the stacking axis), ``plane`` (y, x).
    """
    h = np.asarray(height, dtype=np.float64)
    ok = np.isfinite(h) if mask is None else np.isfinite(h) & np.asarray(mask, bool)
    if ok.sum() < 3:
        raise InputError(f"need at least 3 valid interface points for a plane fit, got {int(ok.sum())}")
    yy, xx = np.mgrid[0:h.shape[0], 0:h.shape[1]].astype(np.float64)
    y = (yy - (h.shape[0] - 1) / 2) * pixel_size_um
    x = (xx - (h.shape[1] - 1) / 2) * pixel_size_um
    a = np.stack([np.ones(ok.sum()), y[ok], x[ok]], axis=1)
    (c0, cy, cx), *_ = np.linalg.lstsq(a, h[ok], rcond=None)
    return {"offset": float(c0), "slope_y": float(cy), "slope_x": float(cx),
            "tilt_rad": float(np.arctan(np.hypot(cy, cx))), "plane": c0 + cy * y + cx * x}


def thickness_map(labels, label: int, *, axis: int = 0, voxel_size_um: float):
    """Thickness of one phase per column: voxels of ``label`` along ``axis`` times the voxel size.

    Parameters
    ----------
    labels : ndarray or dask.array.Array, integer
        Phase labels (0 = unassigned); a Dask array is reduced chunk by chunk.
    label : int
        The phase label (e.g. 2 for lithium in collector, li, electrolyte).
    axis : int
        Stacking axis.
    voxel_size_um : float
        Voxel edge in um.

    Returns
    -------
    ndarray, float32
        Thickness in um; NaN for columns holding no labelled voxel at all (outside the cell).

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((10, 2, 2), np.uint8); lab[:3] = 1; lab[3:7, 0] = 2; lab[3:, 1] = 3
    >>> thickness_map(lab, 2, voxel_size_um=1.7)[:, 0]
    array([6.8, 0. ], dtype=float32)
    """
    if voxel_size_um is None or not np.isfinite(voxel_size_um) or voxel_size_um <= 0:
        raise InputError(f"voxel_size_um must be a positive number in um, got {voxel_size_um!r}")
    lab = labels if hasattr(labels, "dask") else np.asarray(to_device(labels, "cpu"))
    if lab.ndim != 3:
        raise InputError(f"labels must be 3-D, got shape {lab.shape}")
    count, any_label = (lab == label).sum(axis=axis), (lab > 0).any(axis=axis)
    if hasattr(labels, "dask"):  # Dask (e.g. zarr-backed) labels: reduced chunk by chunk
        import dask

        count, any_label = dask.compute(count, any_label)
    count = count.astype(np.float32) * np.float32(voxel_size_um)
    count[~any_label] = np.nan
    return count


def interfaces_from_labels(labels, label: int, *, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper boundary of ``label`` per column, in voxels along ``axis`` (NaN if absent).

    The lower boundary is the index of the first voxel of the phase, the upper one the index
    after its last voxel (voxel i spans [i, i+1)).
    """
    lab = np.moveaxis(np.asarray(to_device(labels, "cpu")), axis, 0) == label
    present = lab.any(axis=0)
    first = np.argmax(lab, axis=0).astype(np.float64)
    last = lab.shape[0] - np.argmax(lab[::-1], axis=0).astype(np.float64)
    first[~present] = np.nan
    last[~present] = np.nan
    return first, last
