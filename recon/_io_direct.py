"""Direct reads of HDF5 frame datasets (raw, or gzip/shuffle chunks), without h5py's global lock.

h5py serialises every call through one lock, and a hyperslab read of a band of rows across all
projections costs HDF5 a selection per chunk: about 0.5 GB/s from the page cache, one thread at
a time, which is the slowest step of a GPU reconstruction; a compressed dataset also inflates
every chunk under that lock, on one core. When a dataset is stored raw (no filters, no external
storage, not virtual, native byte order) its bytes are simply laid out in the file,
contiguously or chunk by chunk; when its only filters are HDF5's own deflate (gzip) and
shuffle, each chunk is a zlib stream of (byte-shuffled) values at a known address. This module
records that layout once per process (the chunk addresses, sizes and filter masks, from
``DatasetID.chunk_iter``) and then copies the requested region straight out of a memory map of
the file, inflating and unshuffling chunks itself (``zlib`` releases the GIL), so several
threads read at the same time. Anything else (other filters, Fletcher-32 checksums, missing
chunks) returns None and the caller reads through h5py as before.

The layout is cached per (path, dataset, file size, modification time): a rewritten file is
looked up again.
"""

from __future__ import annotations

import os
import threading
import zlib

import numpy as np

_LOCK = threading.Lock()
_CACHE: dict = {}
#: datasets with more chunks than this are read through h5py (the index would be too large)
MAX_CHUNKS = 4_000_000
#: HDF5's filter identifiers (H5Zpublic.h) that the direct path decodes
FILTER_DEFLATE = 1
FILTER_SHUFFLE = 2


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
    filters : tuple of int
        HDF5 filter identifiers of the pipeline, in the order they were applied when writing
        (``FILTER_SHUFFLE``, ``FILTER_DEFLATE``); empty for raw data.
    chunk_sizes : dict
        Chunk start coordinates -> stored (compressed) size in bytes (filtered data only).
    chunk_masks : dict
        Chunk start coordinates -> HDF5 filter mask (bit ``i`` set: filter ``i`` was skipped
        for that chunk); only chunks with a non-zero mask are listed.
    """

    def __init__(self, filename, shape, dtype, offset=None, chunks=None, chunk_offsets=None,
                 filters=(), chunk_sizes=None, chunk_masks=None):
        self.filename = filename
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.offset = offset
        self.chunks = chunks
        self.chunk_offsets = chunk_offsets or {}
        self.filters = tuple(int(f) for f in filters)
        self.chunk_sizes = chunk_sizes or {}
        self.chunk_masks = chunk_masks or {}


def _inspect(ds, path: str) -> Layout | None:
    """The raw layout of an open h5py dataset, or None when it cannot be read directly."""
    if os.path.abspath(ds.file.filename) != os.path.abspath(path):
        return None  # behind an external link: the cache key would not see the target change
    if ds.ndim != 3 or not ds.dtype.isnative or ds.dtype.kind not in "uif" or ds.is_virtual:
        return None
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count():
        return None
    filters = tuple(int(dcpl.get_filter(i)[0]) for i in range(dcpl.get_nfilters()))
    if any(code not in (FILTER_DEFLATE, FILTER_SHUFFLE) for code in filters):
        return None  # Fletcher-32, LZF, plugins (Blosc, bitshuffle, ...): h5py decodes them
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
        table[tuple(int(c) for c in info.chunk_offset)] = (int(info.byte_offset), int(info.size),
                                                           int(info.filter_mask))

    try:
        ds.id.chunk_iter(visit)
    except Exception:  # noqa: BLE001 - old HDF5 without chunk iteration: read through h5py
        return None
    if len(table) != expected:
        return None  # unallocated chunks (fill values): let h5py handle it
    offsets = {k: v[0] for k, v in table.items()}
    if not filters:
        nbytes = int(np.prod(chunks)) * ds.dtype.itemsize
        if any(size != nbytes or mask for _, size, mask in table.values()):
            return None  # unexpected sizes: let h5py handle it
        return Layout(filename, ds.shape, ds.dtype, chunks=chunks, chunk_offsets=offsets)
    return Layout(filename, ds.shape, ds.dtype, chunks=chunks, chunk_offsets=offsets, filters=filters,
                  chunk_sizes={k: v[1] for k, v in table.items()},
                  chunk_masks={k: v[2] for k, v in table.items() if v[2]})


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
    decoded: dict = {}  # the filtered chunks of the current frame group, inflated once
    for i, f in enumerate(frames):
        f0 = (int(f) // cf) * cf
        for rs in range((r0 // cr) * cr, r1, cr):
            for cs in range((c0 // cc) * cc, c1, cc):
                key = (f0, rs, cs)
                if not lay.filters:
                    chunk = np.ndarray((cf, cr, cc), lay.dtype, buffer=mm, offset=lay.chunk_offsets[key])
                else:
                    if key not in decoded:
                        if decoded and next(iter(decoded))[0] != f0:
                            decoded.clear()
                        decoded[key] = _decode(lay, mm, key)
                    chunk = decoded[key]
                a, b = max(r0, rs), min(r1, rs + cr)
                c, d = max(c0, cs), min(c1, cs + cc)
                out[i, a - r0 : b - r0, c - c0 : d - c0] = chunk[int(f) - f0, a - rs : b - rs, c - cs : d - cs]
    return out


def _decode(lay: Layout, mm, key) -> np.ndarray:
    """Inflate and unshuffle one stored chunk: the HDF5 pipeline undone in reverse order,
    skipping the filters the chunk's mask says were not applied."""
    start = lay.chunk_offsets[key]
    buf = mm[start : start + lay.chunk_sizes[key]]
    if buf.size != lay.chunk_sizes[key]:
        raise ValueError("chunk beyond the end of the file")
    mask = lay.chunk_masks.get(key, 0)
    itemsize = lay.dtype.itemsize
    for i in reversed(range(len(lay.filters))):
        if mask >> i & 1:
            continue
        if lay.filters[i] == FILTER_DEFLATE:
            try:
                buf = zlib.decompress(buf)
            except zlib.error as exc:
                raise ValueError(f"corrupt deflate chunk: {exc}") from None
        elif itemsize > 1:  # shuffle: byte k of every value, then byte k + 1, ...
            raw = np.frombuffer(buf, np.uint8)
            if raw.size % itemsize:
                raise ValueError("shuffled chunk size is not a whole number of values")
            n = raw.size // itemsize
            plain = np.empty(raw.size, np.uint8)
            for k in range(itemsize):  # one strided copy per byte plane (8x faster than a transpose)
                plain[k::itemsize] = raw[k * n : (k + 1) * n]
            buf = plain
    values = np.frombuffer(buf, np.uint8).view(lay.dtype)
    if values.size != int(np.prod(lay.chunks)):
        raise ValueError("decoded chunk has the wrong size")
    return values.reshape(lay.chunks)
