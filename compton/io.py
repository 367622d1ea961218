"""HEXITEC readers (``.bin`` frame streams, DAQ HDF5, ``.hxt`` v3) and cube files (Zarr, HDF5).

Frame readers stream in chunks of frames so an acquisition of millions of frames never sits
in memory; cube files store the spectra with a HyperSpy-style energy axis.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import struct
from pathlib import Path

import numpy as np

from ._errors import InputError
from .frames import Cube, check_frame_shape

BIN_SHAPE = (80, 80)
BIN_FRAME_BYTES = 80 * 80 * 2
#: storage position ``n`` of a ``.bin`` row holds pixel column ``(n % 4) * 20 + n // 4``
BIN_COLMAP = np.array([(n % 4) * 20 + n // 4 for n in range(80)], dtype=np.int64)
H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")


# --------------------------------------------------------------------------- .bin streams


def _bin_n_frames(path: str) -> int:
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    size = os.path.getsize(path)
    if size % BIN_FRAME_BYTES:
        raise InputError(
            f"{path}: truncated .bin stream: {size} bytes is not a whole number of "
            f"80 x 80 uint16 frames ({BIN_FRAME_BYTES} bytes each; {size // BIN_FRAME_BYTES} "
            f"whole frames and {size % BIN_FRAME_BYTES} bytes left over)"
        )
    return size // BIN_FRAME_BYTES


def deinterleave(raw: np.ndarray) -> np.ndarray:
    """Put ``.bin`` storage order [n, 80, 80] into pixel order: value n of a row -> column
    ``(n % 4) * 20 + n // 4``."""
    out = np.empty_like(raw)
    out[..., BIN_COLMAP] = raw
    return out


def read_bin(path, *, start: int = 0, count: int | None = None) -> np.ndarray:
    """Read frames of a headerless HEXITEC ``.bin`` stream (uint16, 80 x 80, interleaved).

    Parameters
    ----------
    path : str or Path
        The ``.bin`` file.
    start : int
        First frame to read.
    count : int, optional
        Number of frames (default: to the end). For whole acquisitions use
        :func:`iter_frames`, which streams.

    Returns
    -------
    ndarray uint16 [count, 80, 80]
        De-interleaved frames in ADU.

    Raises
    ------
    InputError
        Missing file, or a size that is not a whole number of frames.
    """
    path = os.fspath(path)
    n = _bin_n_frames(path)
    if not 0 <= start <= n:
        raise InputError(f"{path}: start frame {start} outside 0..{n}")
    count = n - start if count is None else min(int(count), n - start)
    raw = np.fromfile(path, dtype="<u2", count=count * 6400, offset=start * BIN_FRAME_BYTES)
    return deinterleave(raw.reshape(count, 80, 80))


_DROP_LAG_FRAMES = 16384  # frames kept mapped behind the reading position, at least 4 chunks
_DROP_BATCH_BYTES = 1 << 28  # page-table entries dropped in batches of this many bytes
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux >= 5.14


def _populate(mm, data, start: int, stop: int) -> None:
    """Map the pages of bytes ``start:stop`` of ``mm`` now, in one call where the OS can."""
    page = mmap.PAGESIZE
    lo = start // page * page
    try:
        mm.madvise(_MADV_POPULATE_READ, lo, stop - lo)
    except (AttributeError, OSError, ValueError):  # older kernel or not Linux: touch each page
        data[start // 2 : stop // 2 : page // 2].sum()


def _iter_bin_raw(path: str, chunk_frames: int):
    """Chunks of a .bin in storage order, each a read-only view of one memory map of the file.

    No copy: the kernel reads the page cache directly. The file is mapped once (one mapping
    per chunk, unmapped in the main loop while the worker threads ran, stalled it for 15-25 %
    of a run at 100,000+ frames/s). Each chunk's pages are mapped here before it is yielded
    (in the prefetch thread when called from :func:`compton.process_frames`), and the
    page-table entries of the part read more than ``_DROP_LAG_FRAMES`` frames (at least 4
    chunks) ago are dropped in large batches (``MADV_DONTNEED``, harmless on a read-only file
    mapping: a later access reads the page cache again), so mapped memory stays bounded.
    """
    n = _bin_n_frames(path)
    if n == 0:
        return
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), n * BIN_FRAME_BYTES, access=mmap.ACCESS_READ)
    flat = np.frombuffer(mm, dtype="<u2", count=n * 6400)
    data = flat.reshape(n, 80, 80)
    page = mmap.PAGESIZE
    dropped = 0  # bytes at the start of the mapping whose page-table entries were dropped
    lag = max(_DROP_LAG_FRAMES, 4 * chunk_frames)  # more than the chunks in flight
    done = 0
    while done < n:
        k = min(chunk_frames, n - done)
        _populate(mm, flat, done * BIN_FRAME_BYTES, (done + k) * BIN_FRAME_BYTES)
        yield data[done : done + k]
        done += k
        old = (max(0, done - lag) * BIN_FRAME_BYTES) // page * page
        if old - dropped >= _DROP_BATCH_BYTES and hasattr(mm, "madvise"):
            mm.madvise(mmap.MADV_DONTNEED, dropped, old - dropped)
            dropped = old


# --------------------------------------------------------------------------- HDF5


def _h5_find(f, name: str):
    """The first dataset called ``name`` anywhere in an open HDF5 file, or None."""
    import h5py

    if name in f and isinstance(f[name], h5py.Dataset):
        return f[name]
    hit = []

    def visit(key, obj):
        if isinstance(obj, h5py.Dataset) and key.rsplit("/", 1)[-1] == name:
            hit.append(obj)
            return True
        return None

    f.visititems(visit)
    return hit[0] if hit else None


def _open_h5(path: str):
    import h5py

    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None


def _iter_h5_frames(path: str, chunk_frames: int, dataset: str):
    with _open_h5(path) as f:
        ds = _h5_find(f, dataset)
        if ds is None:
            raise InputError(f"{path}: no dataset '{dataset}' (expected [N, rows, cols] frames)")
        if ds.ndim != 3:
            raise InputError(f"{path}: dataset '{ds.name}' has shape {ds.shape}; expected [N, rows, cols]")
        check_frame_shape(ds.shape[1:], f"{path}:{ds.name}")
        for i in range(0, ds.shape[0], chunk_frames):
            yield ds[i : i + chunk_frames]


def read_hexitec_h5(path) -> Cube:
    """Read an already processed HEXITEC DAQ HDF5 file into a :class:`Cube`.

    Uses ``pixel_spectra`` [rows, cols, bins] and ``spectra_bins`` [bins] (taken as the lower
    bin edges in keV, uniform width); ``summed_spectra`` is checked against the pixel sum when
    present. Raw ``raw_frames`` files are streamed with :func:`iter_frames` instead.

    Raises
    ------
    InputError
        Missing file or datasets, or inconsistent shapes.
    """
    path = os.fspath(path)
    with _open_h5(path) as f:
        spec = _h5_find(f, "pixel_spectra")
        bins = _h5_find(f, "spectra_bins")
        if spec is None or bins is None:
            has_raw = _h5_find(f, "raw_frames") is not None
            hint = " (it holds raw_frames: process it with compton.process_frames)" if has_raw else ""
            raise InputError(f"{path}: no 'pixel_spectra' and 'spectra_bins' datasets{hint}")
        counts = spec[()]
        labels = np.asarray(bins[()], dtype=np.float64).ravel()
        summed = _h5_find(f, "summed_spectra")
        summed = None if summed is None else np.asarray(summed[()]).ravel()
    if counts.ndim != 3 or counts.shape[2] != labels.size:
        raise InputError(
            f"{path}: pixel_spectra has shape {counts.shape}; expected [rows, cols, {labels.size}] "
            "to match spectra_bins"
        )
    if summed is not None and summed.size == labels.size:
        if not np.allclose(summed, counts.sum(axis=(0, 1)), rtol=1e-6, atol=1e-6):
            raise InputError(f"{path}: summed_spectra does not equal the sum of pixel_spectra")
    return _cube_from_labels(counts, labels, source=path)


def _cube_from_labels(counts, labels, *, source: str) -> Cube:
    if labels.size < 2:
        raise InputError(f"{source}: need at least two spectrum bins")
    width = np.diff(labels)
    if np.any(width <= 0) or not np.allclose(width, width[0], rtol=1e-6, atol=1e-9):
        raise InputError(f"{source}: spectrum bins are not uniform and increasing")
    edges = np.append(labels, labels[-1] + width[0])
    counts = np.asarray(counts)
    if np.all(counts == np.round(counts)) and counts.min(initial=0) >= 0:
        counts = counts.astype(np.uint32 if counts.max(initial=0) < 2**32 else np.uint64)
    total = counts.sum(axis=2)
    total = np.rint(total).astype(np.int64)
    return Cube(counts=counts, bin_edges_kev=edges, accepted=total,
                rejected=np.zeros_like(total), units="keV",
                attrs={"source": source, "bin_labels": "lower edges (assumed)"})


# --------------------------------------------------------------------------- .hxt


def read_hxt(path) -> Cube:
    """Read a HEXITEC ``.hxt`` (version 3) spectra file into a :class:`Cube`.

    Layout (little-endian): ``"HEXITECH"``, uint64 version (3), 9 uint32 motor positions,
    int32 prefix length, 100 bytes file prefix, 16 bytes time stamp, uint32 rows, cols, bins,
    float64 bin labels [bins] (taken as lower edges in keV), float64 spectra [rows, cols, bins].

    Raises
    ------
    InputError
        Missing file, wrong label or version, or a size that does not match the header.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    head = struct.Struct("<8sQ9Ii100s16s3I")
    with open(path, "rb") as fh:
        raw = fh.read(head.size)
        if len(raw) < head.size:
            raise InputError(f"{path}: too short for a .hxt header ({len(raw)} bytes)")
        label, version, *_, prefix_len, prefix, stamp, rows, cols, nbins = head.unpack(raw)
        if label != b"HEXITECH":
            raise InputError(f"{path}: not a .hxt file (label {label!r}, expected b'HEXITECH')")
        if version != 3:
            raise InputError(f"{path}: .hxt version {version}; only version 3 is supported")
        expected = head.size + 8 * nbins * (1 + rows * cols)
        size = os.path.getsize(path)
        if size != expected:
            raise InputError(
                f"{path}: {size} bytes; a .hxt v3 file of {rows} x {cols} pixels and {nbins} bins "
                f"has {expected}"
            )
        labels = np.fromfile(fh, dtype="<f8", count=nbins)
        counts = np.fromfile(fh, dtype="<f8", count=rows * cols * nbins).reshape(rows, cols, nbins)
    cube = _cube_from_labels(counts, labels, source=path)
    cube.attrs["file_prefix"] = prefix[: max(0, min(prefix_len, 100))].decode("ascii", "replace")
    cube.attrs["timestamp"] = stamp.split(b"\0", 1)[0].decode("ascii", "replace")
    return cube


# --------------------------------------------------------------------------- dispatch


def _is_h5(path: str) -> bool:
    return path.lower().endswith(H5_SUFFIXES)


def _iter_storage_chunks(path, *, chunk_frames: int = 4096, dataset: str = "raw_frames"):
    """Yield ``(chunk, colmap)`` in storage order (no de-interleave copy for ``.bin``)."""
    path = os.fspath(path)
    if _is_h5(path):
        for chunk in _iter_h5_frames(path, chunk_frames, dataset):
            yield chunk, None
    elif path.lower().endswith(".bin"):
        for chunk in _iter_bin_raw(path, chunk_frames):
            yield chunk, BIN_COLMAP
    else:
        if not os.path.exists(path):
            raise InputError(f"{path}: file not found")
        raise InputError(f"{path}: unknown frame file type (expected .bin or .h5/.hdf5 with raw_frames)")


def iter_frames(path, *, chunk_frames: int = 4096, dataset: str = "raw_frames"):
    """Stream the frames of a ``.bin`` or DAQ HDF5 file in chunks.

    Parameters
    ----------
    path : str or Path
        ``.bin`` stream or HDF5 file holding ``dataset`` [N, rows, cols].
    chunk_frames : int
        Frames per chunk.
    dataset : str
        HDF5 dataset name (searched anywhere in the file).

    Yields
    ------
    ndarray [n, rows, cols]
        De-interleaved frames in ADU.
    """
    for chunk, colmap in _iter_storage_chunks(path, chunk_frames=chunk_frames, dataset=dataset):
        yield chunk if colmap is None else deinterleave(chunk)


def count_frames(path, *, dataset: str = "raw_frames") -> int:
    """Number of frames in a ``.bin`` or DAQ HDF5 file (for progress bars)."""
    path = os.fspath(path)
    if _is_h5(path):
        with _open_h5(path) as f:
            ds = _h5_find(f, dataset)
            if ds is None:
                raise InputError(f"{path}: no dataset '{dataset}'")
            return int(ds.shape[0])
    return _bin_n_frames(path)


# --------------------------------------------------------------------------- cube files


def _cube_attrs(cube: Cube) -> dict:
    axes = cube.axes()
    return {
        "anodescope": {"kind": "hexitec_cube", "format_version": 1},
        "units": cube.units,
        "n_frames": int(cube.n_frames),
        "axes": axes,
        "energy_axis": axes[2],
        "processing": cube.attrs,
    }


def write_cube(cube: Cube, path, *, overwrite: bool = False) -> Path:
    """Write a cube to Zarr (a ``.zarr`` directory) or HDF5 (``.h5``/``.hdf5``).

    Arrays: ``counts`` [rows, cols, bins], ``bin_edges`` [bins + 1], ``summed_spectrum``
    [bins], ``accepted`` and ``rejected`` [rows, cols]. Attributes: ``axes`` (HyperSpy-style
    list of dicts with name, size, scale, offset, units, navigate; the energy axis in keV with
    offset = centre of the first bin), ``units``, ``n_frames`` and ``processing``. HDF5 stores the
    dict-valued attributes as JSON strings.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(17, "output exists (use overwrite)", str(path))
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    attrs = json.loads(json.dumps(_cube_attrs(cube), default=_json_default))
    arrays = {
        "counts": cube.counts,
        "bin_edges": np.asarray(cube.bin_edges_kev, np.float64),
        "summed_spectrum": cube.summed_spectrum,
        "accepted": np.asarray(cube.accepted, np.int64),
        "rejected": np.asarray(cube.rejected, np.int64),
    }
    if _is_h5(str(path)):
        import h5py

        with h5py.File(path, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
            for name, arr in arrays.items():
                kw = {"chunks": (*arr.shape[:2], min(arr.shape[2], 128)), "compression": "gzip"} if arr.ndim == 3 else {}
                ds = f.create_dataset(name, data=arr, **kw)
                if name == "counts":
                    ds.attrs["axes"] = json.dumps(attrs["axes"])
        return path
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.attrs.update(attrs)
    for name, arr in arrays.items():
        chunks = (*arr.shape[:2], min(arr.shape[2], 128)) if arr.ndim == 3 else arr.shape
        a = group.create_array(name, data=arr, chunks=chunks)
        if name == "counts":
            a.attrs["axes"] = attrs["axes"]
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def read_cube(path) -> Cube:
    """Read a cube written by :func:`write_cube` (Zarr directory or HDF5 file).

    Raises
    ------
    InputError
        Missing path, or a file/group without the cube arrays.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    names = ("counts", "bin_edges", "accepted", "rejected")
    if _is_h5(path):
        with _open_h5(path) as f:
            missing = [n for n in names if n not in f]
            if missing:
                raise InputError(f"{path}: not a cube file (missing datasets {missing})")
            data = {n: f[n][()] for n in names}
            attrs = {k: (json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v)
                     for k, v in f.attrs.items()}
    else:
        import zarr

        try:
            group = zarr.open_group(path, mode="r")
        except Exception as exc:  # noqa: BLE001 - zarr raises several types
            raise InputError(f"{path}: not a readable Zarr group ({type(exc).__name__})") from None
        missing = [n for n in names if n not in group]
        if missing:
            raise InputError(f"{path}: not a cube (missing arrays {missing})")
        data = {n: group[n][...] for n in names}
        attrs = dict(group.attrs)
    return Cube(
        counts=data["counts"], bin_edges_kev=data["bin_edges"], accepted=data["accepted"],
        rejected=data["rejected"], units=str(attrs.get("units", "keV")),
        n_frames=int(attrs.get("n_frames", 0)), attrs=dict(attrs.get("processing", {})),
    )
