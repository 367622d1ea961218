"""HDF5 helpers of the readers: opening with clear errors, links, scalars, lazy frame arrays.

Messages name the file and the dataset; a missing target of an external link is reported
with the link and the file it points to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._errors import InputError
from ._io_lazy import H5Frames, as_dask, default_rows_chunk, length_to_um, units_of




def open_h5(path: Path):
    """Open an HDF5 file read-only, turning 'missing', 'not HDF5' and 'truncated' into clear errors."""
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"scan not found: {path}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an HDF5 file")
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError:
        is_h5 = False
    if not is_h5:
        raise InputError(f"{path}: not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot open as HDF5 (truncated or damaged file?): {exc}") from None


def link_exists(f, name: str) -> bool:
    """Whether every link along ``name`` exists, without opening external files."""
    try:
        return f.get(name, getlink=True) is not None
    except (KeyError, OSError, ValueError):
        return False


def check_external_links(f, path: Path, name: str) -> str | None:
    """Follow ``name`` component by component; for an external link whose file is missing raise.

    Returns the external file path when the object lives in another file, else None.
    """
    import h5py

    parts = [p for p in name.split("/") if p]
    current = ""
    external = None
    for part in parts:
        current = f"{current}/{part}"
        try:
            link = f.get(current, getlink=True)
        except (KeyError, OSError, ValueError):
            return external
        if isinstance(link, h5py.ExternalLink):
            target = Path(link.filename)
            candidates = [target] if target.is_absolute() else [path.parent / target, Path.cwd() / target]
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                raise InputError(
                    f"{path}: {current} is an external link to {link.filename}:{link.path}, "
                    f"but that file is missing (looked for {candidates[0]})"
                )
            external = str(found)
    return external


def get_dataset(f, path: Path, name: str, *, what: str):
    """Return the h5py dataset ``name`` or raise InputError naming file, dataset and role."""
    import h5py

    check_external_links(f, path, name)
    try:
        obj = f[name]
    except (KeyError, OSError) as exc:
        raise InputError(f"{path}: dataset {name} ({what}) not found or unreadable: {exc}") from None
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{path}: {name} ({what}) is a group, expected a dataset")
    return obj


def read_scalar(f, name: str):
    """Value and units of a scalar (or length-1) numeric dataset, or (None, None) when absent/bad."""
    import h5py

    if not link_exists(f, name):
        return None, None
    try:
        obj = f[name]
    except (KeyError, OSError):
        return None, None
    if not isinstance(obj, h5py.Dataset) or obj.size < 1:
        return None, None
    try:
        value = float(np.asarray(obj[()]).ravel()[0])
    except (TypeError, ValueError):
        return None, None
    if not np.isfinite(value):
        return None, None
    return value, units_of(obj)


def read_string(f, name: str) -> str | None:
    import h5py

    if not link_exists(f, name):
        return None
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        return None
    v = np.asarray(obj[()]).ravel()
    if v.size == 0:
        return None
    v = v[0]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def length_um_guess(value: float, units: str | None, *, where: str) -> float:
    """Pixel size to um; without units a value below 1e-3 is taken as metres, else um."""
    if units in (None, ""):
        return value * 1e6 if value < 1e-3 else value
    return length_to_um(value, units, default="um", where=where)


def distance_mm_guess(value: float, units: str | None, *, where: str) -> float:
    """Distance to mm; without units a value below 20 is taken as metres, else mm."""
    if units in (None, ""):
        return value * 1e3 if value < 20 else value
    return length_to_um(value, units, default="mm", where=where) / 1e3


def dask_name(kind: str, path: Path, dataset: str, frames=None) -> str:
    from dask.base import tokenize

    st = path.stat()
    token = tokenize(str(path.resolve()), dataset, st.st_mtime_ns, st.st_size,
                     None if frames is None else np.asarray(frames).tobytes())
    return f"{kind}-{token}"


def frames_array(path: Path, ds, name: str, *, frames=None, rows_chunk=None, kind: str):
    """Lazy dask array over (a subset of frames of) a 2-D or 3-D dataset, chunked along rows."""
    import dask.array as da

    if ds.ndim == 2 and frames is None:
        src = H5Frames(path, name, ds.shape, ds.dtype)
        arr = da.from_array(src, chunks=(rows_chunk or ds.shape[0], ds.shape[1]),
                            name=dask_name(kind, path, name), meta=np.empty((0, 0), ds.dtype))
        return arr[None]
    src = H5Frames(path, name, ds.shape, ds.dtype, frames=frames)
    if rows_chunk is None and ds.chunks is not None and ds.ndim == 3:
        # whole HDF5 chunks per dask chunk: a chunk is decompressed once, not once per band
        rc = default_rows_chunk(src.shape[0], ds.shape[1], ds.shape[2], ds.dtype.itemsize)
        step = max(1, int(ds.chunks[1]))
        rows_chunk = min(ds.shape[1], -(-rc // step) * step)
    return as_dask(src, rows_chunk=rows_chunk, name=dask_name(kind, path, name, frames))


def check_frames_match(path: Path, data_shape, other_shape, name: str, what: str):
    if tuple(other_shape[-2:]) != tuple(data_shape[1:]):
        raise InputError(
            f"{path}: {what} {name} has frames of {tuple(other_shape[-2:])} (rows, cols), "
            f"expected {tuple(data_shape[1:])} like the projections"
        )


def attr_str(obj, key: str) -> str | None:
    v = obj.attrs.get(key)
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        v = v.ravel()[0] if v.size else ""
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return str(v)


def find_nx_entries(f) -> list[str]:
    """Top-level entries that look like NXtomo, best first (definition NXtomo, then layout)."""
    import h5py

    scored = []
    for key in sorted(f.keys()):
        try:
            link = f.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                continue
            g = f[key]
        except (KeyError, OSError):
            continue
        if not isinstance(g, h5py.Group):
            continue
        is_entry = key.startswith("entry") or attr_str(g, "NX_class") == "NXentry"
        if not is_entry:
            continue
        definition = read_string(f, f"/{key}/definition") or attr_str(g, "definition") or ""
        has_layout = link_exists(f, f"/{key}/instrument/detector/data") or link_exists(f, f"/{key}/data/data")
        if definition.strip().lower() == "nxtomo" and has_layout:
            scored.append((0, key))
        elif has_layout:
            scored.append((1, key))
    return [f"/{k}" for _, k in sorted(scored)]


def first_existing(f, names):
    return next((n for n in names if link_exists(f, n)), None)
