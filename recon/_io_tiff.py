"""TIFF-stack helpers of the readers: natural file order, sub-folder layout, shape checks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._errors import InputError
from ._io_lazy import TiffFrames

#: file suffixes taken as TIFF images (case-insensitive)
TIFF_SUFFIXES = (".tif", ".tiff")
#: sub-folder names recognised for projections, flats and darks (also upper/capitalised)
PROJ_SUBDIRS = ("proj", "projs", "projections", "tomo", "data", "sample")
FLAT_SUBDIRS = ("flats", "flat", "white", "whites", "bright", "flatfield")
DARK_SUBDIRS = ("darks", "dark", "black", "darkfield")


def natural_key(p: Path):
    """Sort key putting ``img_2`` before ``img_10`` (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def tiff_files(folder: Path) -> list[Path]:
    """TIFF files directly in ``folder``, in natural order (hidden files skipped)."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES
         and not p.name.startswith(".")),
        key=natural_key,
    )


def subdir(folder: Path, names) -> Path | None:
    """The first existing sub-folder of ``folder`` among ``names``, or None."""
    for n in names:
        for cand in (folder / n, folder / n.upper(), folder / n.capitalize()):
            if cand.is_dir():
                return cand
    return None


def tiff_source(folder: Path, what: str) -> TiffFrames:
    """Check a folder of single-image TIFFs (same shape) and wrap it lazily."""
    import tifffile

    if not folder.exists():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of {what} TIFF files")
    files = tiff_files(folder)
    if not files:
        raise InputError(f"{folder}: no TIFF files (*.tif, *.tiff) for the {what}")
    shape = None
    dtypes = set()
    for p in files:
        try:
            with tifffile.TiffFile(p) as tf:
                s = tf.series[0]
                shp = tuple(d for d in s.shape if d != 1) if len(s.shape) > 2 else tuple(s.shape)
                dtypes.add(np.dtype(s.dtype))
        except Exception as exc:
            raise InputError(f"{p}: cannot read as TIFF ({type(exc).__name__}: {exc})") from None
        if len(shp) != 2:
            raise InputError(f"{p}: TIFF image has shape {tuple(s.shape)}, expected one 2-D image per file")
        if shape is None:
            shape = shp
        elif shp != shape:
            raise InputError(f"{p}: image shape {shp} differs from {shape} of {files[0].name} in {folder}")
    return TiffFrames(files, shape, np.result_type(*dtypes))
