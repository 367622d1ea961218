"""Read a lithium thickness map for the ``strip`` verb: MAPS.zarr, ``.npy`` or ``.tif``.

MAPS.zarr (written by the segmentation maps stage): a zarr group with a 2-D float array
``thickness_um`` [y, x] (um; NaN = never covered / outside the electrode), the attribute
``pixel_size_um`` on that array or on the group, and an optional boolean ``mask`` [y, x].
A ``.npy`` or ``.tif``/``.tiff`` file holds the thickness map alone; its pixel size comes
from ``--pixel-size-um``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._errors import InputError


def read_thickness_map(path, *, pixel_size_um: float | None = None):
    """Read a thickness map and its pixel size.

    Parameters
    ----------
    path : str or Path
        MAPS.zarr group folder, ``.npy`` or ``.tif``/``.tiff`` file.
    pixel_size_um : float, optional
        Pixel size (um); overrides the zarr attribute and is required for ``.npy``/``.tif``.

    Returns
    -------
    thickness_um : (y, x) ndarray of float64
        Thickness (um), NaN outside the electrode.
    pixel_size_um : float
        Pixel size (um).
    mask : (y, x) ndarray of bool or None
        Electrode mask from the store, when present.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    mask = None
    px = None
    suffix = path.suffix.lower()
    if path.is_dir():
        import zarr

        try:
            grp = zarr.open_group(str(path), mode="r")
        except Exception as exc:
            raise InputError(f"{path}: not a zarr group ({type(exc).__name__}: {exc})") from None
        if "thickness_um" not in grp:
            raise InputError(f"{path}: no 'thickness_um' array in the maps group (found {sorted(grp.keys())})")
        arr = grp["thickness_um"]
        thickness = np.asarray(arr[...], dtype=np.float64)
        px = arr.attrs.get("pixel_size_um", grp.attrs.get("pixel_size_um"))
        if "mask" in grp:
            mask = np.asarray(grp["mask"][...])
            if mask.dtype != bool:
                raise InputError(f"{path}: dataset 'mask' must be boolean, got {mask.dtype}")
            if mask.shape != thickness.shape:
                raise InputError(
                    f"{path}: dataset 'mask' has shape {mask.shape}, 'thickness_um' {thickness.shape}"
                )
        where = f"{path}: 'thickness_um'"
    elif suffix == ".npy":
        try:
            thickness = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        except Exception as exc:
            raise InputError(f"{path}: not a readable .npy array ({type(exc).__name__})") from None
        where = str(path)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            thickness = np.asarray(tifffile.imread(path), dtype=np.float64)
        except Exception as exc:
            raise InputError(f"{path}: not a readable TIFF image ({type(exc).__name__})") from None
        where = str(path)
    else:
        raise InputError(f"{path}: expected a MAPS.zarr folder, a .npy or a .tif thickness map")
    if pixel_size_um is not None:
        px = pixel_size_um
    if px is None:
        raise InputError(
            f"{path}: no pixel size: add the attribute 'pixel_size_um' to the group or to "
            "'thickness_um', or pass --pixel-size-um"
        )
    try:
        px = float(px)
    except (TypeError, ValueError):
        raise InputError(f"{path}: pixel_size_um must be a number (um), got {px!r}") from None
    if not (np.isfinite(px) and px > 0):
        raise InputError(f"{path}: pixel_size_um must be > 0 (um), got {px!r}")
    if thickness.ndim != 2:
        raise InputError(f"{where} must be a 2-D map [y, x], got shape {thickness.shape}")
    finite = thickness[np.isfinite(thickness)]
    if finite.size and finite.min() < 0:
        raise InputError(f"{where} has negative thickness values (min {finite.min():.4g} um); expected >= 0")
    return thickness, px, mask
