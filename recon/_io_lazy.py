"""Lazy, picklable array sources for the readers, and unit conversion helpers.

The sources here are small objects holding only a path, a dataset name and the frame
selection. They open the file inside ``__getitem__`` and close it again, so a dask graph
built on them is safe for threads (h5py serialises calls internally) and for pickling to
dask.distributed workers: no open file handle ever travels with the graph. Raw and
gzip/shuffle-compressed HDF5 datasets are copied (and inflated) straight from a memory map of
the file (``recon._io_direct``), in parallel across threads; other layouts go through h5py.
"""

from __future__ import annotations

import os

import numpy as np

from ._errors import InputError

#: default size of one dask chunk (bytes) when the caller does not choose ``rows_chunk``
CHUNK_BYTES = 64 * 2**20

_LENGTH_TO_UM = {
    "m": 1e6, "meter": 1e6, "meters": 1e6, "metre": 1e6, "metres": 1e6,
    "cm": 1e4, "mm": 1e3, "millimeter": 1e3, "millimeters": 1e3,
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "micrometers": 1.0, "micrometre": 1.0, "micrometres": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometers": 1e-3,
}
_ENERGY_TO_KEV = {"ev": 1e-3, "kev": 1.0, "mev": 1e3, "gev": 1e6}
_ANGLE_TO_DEG = {
    "deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0,
    "rad": 180.0 / np.pi, "radian": 180.0 / np.pi, "radians": 180.0 / np.pi,
    "mrad": 0.18 / np.pi,
}


def units_of(obj) -> str | None:
    """The ``units`` attribute of an h5py object as a lower-case str, or None."""
    u = obj.attrs.get("units", obj.attrs.get("unit"))
    if u is None:
        return None
    if isinstance(u, bytes):
        u = u.decode("utf-8", "replace")
    if isinstance(u, np.ndarray):
        u = u.ravel()[0]
        u = u.decode("utf-8", "replace") if isinstance(u, bytes) else str(u)
    return str(u).strip().lower()


def length_to_um(value: float, units: str | None, *, default: str, where: str) -> float:
    """Convert a length with a ``units`` string to micrometres.

    Without units the value is taken in ``default`` units; an unknown unit raises InputError.
    """
    u = default if units in (None, "") else units
    if u not in _LENGTH_TO_UM:
        raise InputError(f"{where}: unknown length units {units!r} (expected one of m, mm, um, nm)")
    return float(value) * _LENGTH_TO_UM[u]


def energy_to_kev(value: float, units: str | None, *, where: str) -> float:
    """Convert an energy to keV; without units keV is assumed unless the value exceeds 1000 (eV)."""
    if units in (None, ""):
        return float(value) * (1e-3 if float(value) > 1000.0 else 1.0)
    if units not in _ENERGY_TO_KEV:
        raise InputError(f"{where}: unknown energy units {units!r} (expected eV, keV or MeV)")
    return float(value) * _ENERGY_TO_KEV[units]


def angles_to_rad(values, units: str | None, *, default: str, where: str) -> np.ndarray:
    """Convert rotation angles to radians (float64), honouring a ``units`` string."""
    u = default if units in (None, "") else units
    if u not in _ANGLE_TO_DEG:
        raise InputError(f"{where}: unknown angle units {units!r} (expected degrees or radians)")
    deg = np.asarray(values, dtype=np.float64).ravel() * _ANGLE_TO_DEG[u]
    return np.deg2rad(deg)


def default_rows_chunk(n_frames: int, n_rows: int, n_cols: int, itemsize: int) -> int:
    """Rows per chunk so that one ``(n_frames, rows, n_cols)`` chunk is about CHUNK_BYTES."""
    per_row = max(1, n_frames * n_cols * itemsize)
    return int(max(1, min(n_rows, CHUNK_BYTES // per_row)))


def contiguous_runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted integer indices into ``(start, stop)`` runs of consecutive values."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return []
    breaks = np.nonzero(np.diff(idx) != 1)[0] + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [idx.size]))
    return [(int(idx[a]), int(idx[b - 1]) + 1) for a, b in zip(starts, stops)]


class H5Frames:
    """Array-like view of an HDF5 dataset ``(frames, rows, cols)``, optionally a subset of frames.

    Parameters
    ----------
    path : str
        HDF5 file path.
    dataset : str
        Dataset path inside the file (external links are followed by h5py).
    frames : sequence of int, optional
        Sorted frame indices (axis 0) to expose; all frames when None.
    shape, dtype :
        Shape and dtype of the whole dataset (read once by the caller).
    """

    def __init__(self, path, dataset, shape, dtype, frames=None):
        self.path = os.fspath(path)
        self.dataset = dataset
        self.full_shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.frames = None if frames is None else np.asarray(frames, dtype=np.int64)
        n0 = self.full_shape[0] if self.frames is None else self.frames.size
        self.shape = (n0,) + self.full_shape[1:]
        self.ndim = len(self.shape)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"H5Frames({self.path!r}, {self.dataset!r}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key):
        import h5py

        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        first, rest = key[0], key[1:]
        got = self._direct(first, rest)
        if got is not None:
            return got
        with h5py.File(self.path, "r") as f:
            ds = f[self.dataset]
            if self.frames is None and isinstance(first, slice):
                return ds[(first,) + rest]
            frames = np.arange(self.full_shape[0]) if self.frames is None else self.frames
            sel = frames[first]
            if np.ndim(sel) == 0:
                return ds[(int(sel),) + rest]
            # read runs of consecutive frames as plain slices (fast), then reorder if asked
            uniq, inv = np.unique(sel, return_inverse=True)
            parts = [ds[(slice(a, b),) + rest] for a, b in contiguous_runs(uniq)]
            if not parts:
                return ds[(slice(0, 0),) + rest]
            out = np.concatenate(parts, axis=0)
            if uniq.size != sel.size or not np.array_equal(uniq, sel):
                out = out[inv.ravel()]
            return out

    def _direct(self, first, rest):
        """The same read without h5py for raw or gzip/shuffle 3-D datasets, else None."""
        from . import _io_direct

        if self.ndim != 3 or not all(isinstance(k, slice) for k in rest):
            return None
        lay = _io_direct.layout(self.path, self.dataset)
        if lay is None or lay.shape != self.full_shape:
            return None
        frames = np.arange(self.full_shape[0]) if self.frames is None else self.frames
        sel = frames[first]
        if np.ndim(sel) == 0:
            out = _io_direct.read(lay, np.asarray([sel]), *rest)
            return None if out is None else out[0]
        return _io_direct.read(lay, np.asarray(sel).ravel(), *rest)


class TiffFrames:
    """Array-like view of a list of single-image TIFF files as ``(frames, rows, cols)``.

    Each read opens only the files it needs (memory-mapped when the TIFF is uncompressed).
    """

    def __init__(self, files, shape, dtype):
        self.files = [os.fspath(p) for p in files]
        self.shape = (len(self.files),) + tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"TiffFrames({len(self.files)} files, shape={self.shape}, dtype={self.dtype})"

    @staticmethod
    def _read(path, rows, cols):
        import tifffile

        try:
            img = tifffile.memmap(path, mode="r")
        except Exception:
            img = tifffile.imread(path)
        return np.asarray(img[rows, cols])

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        first, rows, cols = key
        idx = np.arange(self.shape[0])[first]
        if np.ndim(idx) == 0:
            return self._read(self.files[int(idx)], rows, cols).astype(self.dtype, copy=False)
        planes = [self._read(self.files[int(i)], rows, cols) for i in idx]
        if not planes:
            n_r = len(range(*rows.indices(self.shape[1]))) if isinstance(rows, slice) else 1
            n_c = len(range(*cols.indices(self.shape[2]))) if isinstance(cols, slice) else 1
            return np.empty((0, n_r, n_c), self.dtype)
        return np.stack(planes).astype(self.dtype, copy=False)


def as_dask(source, *, rows_chunk: int | None, name: str):
    """Wrap an array-like ``(frames, rows, cols)`` into a dask array chunked along rows."""
    import dask.array as da

    n0, n1, n2 = source.shape
    rc = rows_chunk or default_rows_chunk(n0, n1, n2, source.dtype.itemsize)
    rc = int(max(1, min(rc, max(n1, 1))))
    return da.from_array(
        source,
        chunks=(max(n0, 1), rc, max(n2, 1)),
        name=name,
        asarray=True,
        meta=np.empty((0, 0, 0), dtype=source.dtype),
    )
