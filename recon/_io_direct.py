"""Direct reads of uncompressed HDF5 frame datasets, without h5py's global lock.

h5py serialises every call through one lock, and a hyperslab read of a band of rows across all
projections costs HDF5 a selection per chunk: about 0.5 GB/s from the page cache, one thread at
a time, which is the slowest step of a GPU reconstruction. When a dataset is stored raw (no
filters, no external storage, not virtual, native byte order) its bytes are simply laid out in
the file, contiguously or chunk by chunk. This module records that layout once per process
(the chunk addresses, from ``DatasetID.chunk_iter``) and then copies the requested region
straight out of a memory map of the file, so several threads read at the same time. Anything
else returns None and the caller reads through h5py as before.

The layout is cached per (path, dataset, file size, modification time): a rewritten file is
looked up again.
"""

from __future__ import annotations

import os
import threading

import numpy as np

_LOCK = threading.Lock()
_CACHE: dict = {}
#: datasets with more chunks than this are read through h5py (the index would be too large)
MAX_CHUNKS = 4_000_000


class Layout:
    """Where the raw bytes of a dataset live in its file.

    Attributes
    ----------
    filename : str
        The file holding the data (datasets behind external links are left to h5py).
    shape : tuple of int
        Dataset shape.
    dtype : numpy.dtype
        Native-byte-order element type.
    offset : int or None
        File offset (bytes) of a contiguous dataset; None for a chunked one.
    chunks : tuple of int or None
        Chunk shape of a chunked dataset.
    chunk_offsets : dict
        Chunk start coordinates -> file offset (bytes).
    """

    def __init__(self, filename, shape, dtype, offset=None, chunks=None, chunk_offsets=None):
        self.filename = filename
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.offset = offset
        self.chunks = chunks
        self.chunk_offsets = chunk_offsets or {}


def _inspect(ds, path: str) -> Layout | None:
    """The raw layout of an open h5py dataset, or None when it cannot be read directly."""
    if os.path.abspath(ds.file.filename) != os.path.abspath(path):
        return None  # behind an external link: the cache key would not see the target change
    if ds.ndim != 3 or not ds.dtype.isnative or ds.dtype.kind not in "uif" or ds.is_virtual:
        return None
    dcpl = ds.id.get_create_plist()
    if dcpl.get_nfilters() or dcpl.get_external_count():
        return None
    # h5py's offsets (H5Dget_offset, H5Dchunk_iter) are file offsets, user block included
    filename = ds.file.filename
    if ds.chunks is None:
        offset = ds.id.get_offset()
        if offset is None:  # storage not allocated: reads give the fill value
            return None
        return Layout(filename, ds.shape, ds.dtype, offset=int(offset))
    chunks = tuple(int(c) for c in ds.chunks)
    expected = int(np.prod([-(-s // c) for s, c in zip(ds.shape, chunks)]))
    if expected > MAX_CHUNKS:
        return None
    table: dict = {}

    def visit(info):
        if info.filter_mask == 0:
            table[tuple(int(c) for c in info.chunk_offset)] = (int(info.byte_offset), int(info.size))

    try:
        ds.id.chunk_iter(visit)
    except Exception:  # noqa: BLE001 - old HDF5 without chunk iteration: read through h5py
        return None
    nbytes = int(np.prod(chunks)) * ds.dtype.itemsize
    if len(table) != expected or any(size != nbytes for _, size in table.values()):
        return None  # unallocated chunks (fill values) or unexpected sizes: let h5py handle it
    return Layout(filename, ds.shape, ds.dtype, chunks=chunks, chunk_offsets={k: v[0] for k, v in table.items()})


def layout(path: str, dataset: str) -> Layout | None:
    """The cached raw layout of ``path:dataset`` (None: read through h5py)."""
    import h5py

    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), dataset, st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    try:
        with h5py.File(path, "r") as f:
            found = _inspect(f[dataset], path)
    except Exception:  # noqa: BLE001 - any trouble: the h5py path reports it properly
        found = None
    with _LOCK:
        _CACHE[key] = found
    return found


def _bounds(key: slice, n: int) -> tuple[int, int] | None:
    start, stop, step = key.indices(n)
    if step != 1:
        return None
    return start, max(start, stop)


def read(lay: Layout, frames: np.ndarray, rows: slice, cols: slice) -> np.ndarray | None:
    """Copy ``data[frames, rows, cols]`` out of the file; None for selections it does not do
    (steps other than 1)."""
    rb, cb = _bounds(rows, lay.shape[1]), _bounds(cols, lay.shape[2])
    if rb is None or cb is None:
        return None
    (r0, r1), (c0, c1) = rb, cb
    frames = np.asarray(frames, dtype=np.int64)
    out = np.empty((frames.size, r1 - r0, c1 - c0), lay.dtype)
    if out.size == 0:
        return out
    try:
        mm = np.memmap(lay.filename, dtype=np.uint8, mode="r")
    except (OSError, ValueError):  # a file system without memory maps: read through h5py
        return None
    try:
        return _copy(lay, mm, out, frames, r0, r1, c0, c1)
    except (TypeError, ValueError, KeyError):  # truncated file, odd layout: h5py will say what is wrong
        return None
    finally:
        del mm


def _copy(lay: Layout, mm, out, frames, r0, r1, c0, c1):
    """Fill ``out`` with ``data[frames, r0:r1, c0:c1]`` from the memory map ``mm``."""
    if lay.offset is not None:
        vol = np.ndarray(lay.shape, lay.dtype, buffer=mm, offset=lay.offset)
        for i, f in enumerate(frames):
            out[i] = vol[f, r0:r1, c0:c1]
        return out
    cf, cr, cc = lay.chunks
    for i, f in enumerate(frames):
        f0 = (int(f) // cf) * cf
        for rs in range((r0 // cr) * cr, r1, cr):
            for cs in range((c0 // cc) * cc, c1, cc):
                chunk = np.ndarray((cf, cr, cc), lay.dtype, buffer=mm, offset=lay.chunk_offsets[(f0, rs, cs)])
                a, b = max(r0, rs), min(r1, rs + cr)
                c, d = max(c0, cs), min(c1, cs + cc)
                out[i, a - r0 : b - r0, c - c0 : d - c0] = chunk[int(f) - f0, a - rs : b - rs, c - cs : d - cs]
    return out
