"""Direct (lock-free) reads of raw and gzip/shuffle HDF5 datasets give exactly what h5py reads;
every layout the direct path cannot handle falls back to h5py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from recon import _io_direct
from recon._io_lazy import H5Frames

SHAPE = (23, 17, 29)


def _write(path, *, dtype="<u2", userblock=0, **kw):
    data = np.random.default_rng(5).integers(0, 60000, SHAPE).astype(dtype)
    with h5py.File(path, "w", userblock_size=userblock or None) as f:
        f.create_dataset("exchange/data", data=data, **kw)
    return data


KEYS = [
    (slice(None), slice(3, 11), slice(None)),
    (slice(None), slice(0, 17), slice(4, 25)),
    (slice(5, 9), slice(16, 17), slice(0, 29)),
    (7, slice(2, 5), slice(1, 2)),
    (np.array([0, 3, 4, 22]), slice(8, 15), slice(None)),
    (slice(None), slice(10, 3), slice(None)),  # empty
]


@pytest.mark.parametrize(
    "layout",
    [
        {},  # contiguous
        {"chunks": (1, 17, 29)},  # one frame per chunk (the usual beamline layout)
        {"chunks": (4, 5, 8)},  # partial edge chunks along every axis
        {"userblock": 1024, "chunks": (2, 6, 29)},
        {"userblock": 512},
        {"chunks": (1, 17, 29), "compression": "gzip"},
        {"chunks": (1, 17, 29), "compression": "gzip", "shuffle": True},
        {"chunks": (4, 5, 8), "compression": "gzip", "compression_opts": 9, "shuffle": True},
        {"chunks": (3, 6, 29), "shuffle": True},
        {"chunks": (2, 8, 16), "compression": "gzip", "shuffle": True, "dtype": "<f4"},
        {"chunks": (1, 17, 29), "compression": "gzip", "shuffle": True, "dtype": "u1"},
    ],
    ids=["contiguous", "frame-chunks", "odd-chunks", "userblock-chunked", "userblock-contiguous",
         "gzip", "gzip-shuffle", "gzip9-shuffle-odd-chunks", "shuffle-only", "gzip-shuffle-float32",
         "gzip-shuffle-uint8"],
)
def test_direct_reads_equal_h5py(tmp_path, layout):
    path = tmp_path / "scan.h5"
    data = _write(path, **layout)
    lay = _io_direct.layout(str(path), "exchange/data")
    assert lay is not None, "the direct path should handle this layout"
    assert bool(lay.filters) == ("compression" in layout or "shuffle" in layout)
    src = H5Frames(path, "exchange/data", SHAPE, data.dtype)
    for key in KEYS:
        got = src[key]
        assert got.dtype == data.dtype
        np.testing.assert_array_equal(got, data[key])
    sub = H5Frames(path, "exchange/data", SHAPE, data.dtype, frames=[2, 3, 10, 20])
    np.testing.assert_array_equal(sub[1:3, 4:9], data[[3, 10], 4:9])
    # threads read at the same time and still get their own bands
    with ThreadPoolExecutor(4) as ex:
        bands = list(ex.map(lambda r: src[:, r : r + 3], range(0, 17, 3)))
    np.testing.assert_array_equal(np.concatenate(bands, axis=1), data)


@pytest.mark.parametrize("kw", [{}, {"compression": "gzip", "shuffle": True}], ids=["raw", "gzip-shuffle"])
def test_direct_path_avoids_h5py(tmp_path, monkeypatch, kw):
    path = tmp_path / "scan.h5"
    data = _write(path, chunks=(1, 17, 29), **kw)
    src = H5Frames(path, "exchange/data", SHAPE, data.dtype)
    src[:, :2]  # the layout is looked up once per process

    def no_h5py(*a, **k):
        raise AssertionError("h5py.File opened on the direct path")

    monkeypatch.setattr(h5py, "File", no_h5py)
    np.testing.assert_array_equal(src[:, 5:9], data[:, 5:9])


@pytest.mark.parametrize(
    "kw",
    [
        {"chunks": (1, 17, 29), "compression": "lzf"},
        {"chunks": (1, 17, 29), "compression": "gzip", "fletcher32": True},
        {"chunks": (1, 17, 29), "scaleoffset": 0},
        {"chunks": (1, 17, 29), "compression": "gzip", "dtype": ">u2"},
        {"dtype": ">u2"},
        {"chunks": (1, 17, 29), "dtype": ">f4"},
    ],
    ids=["lzf", "gzip-fletcher32", "scaleoffset", "gzip-big-endian", "big-endian", "big-endian-chunked"],
)
def test_other_layouts_fall_back_to_h5py(tmp_path, kw):
    path = tmp_path / "scan.h5"
    data = _write(path, **kw)
    assert _io_direct.layout(str(path), "exchange/data") is None
    src = H5Frames(path, "exchange/data", SHAPE, data.dtype)
    np.testing.assert_array_equal(src[:, 3:9, 2:20], data[:, 3:9, 2:20])


def test_chunks_stored_without_their_filters(tmp_path):
    """HDF5 skips an optional filter for a chunk it does not shrink and says so in the chunk's
    filter mask; the direct path undoes only the filters that were applied."""
    import zlib

    path = tmp_path / "scan.h5"
    data = np.random.default_rng(2).integers(0, 60000, SHAPE).astype("<u2")
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("exchange/data", SHAPE, "<u2", chunks=(1, 17, 29), compression="gzip",
                              shuffle=True)
        for k in range(SHAPE[0]):
            frame = data[k]
            shuffled = frame.view(np.uint8).reshape(-1, 2).T.tobytes()
            if k % 3 == 0:  # both filters skipped (mask bits 0 and 1): raw bytes
                ds.id.write_direct_chunk((k, 0, 0), frame.tobytes(), filter_mask=0b11)
            elif k % 3 == 1:  # deflate skipped (bit 1): shuffled bytes only
                ds.id.write_direct_chunk((k, 0, 0), shuffled, filter_mask=0b10)
            else:  # the full pipeline, shuffle then deflate
                ds.id.write_direct_chunk((k, 0, 0), zlib.compress(shuffled), filter_mask=0)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["exchange/data"][:], data)  # what HDF5 itself reads
    lay = _io_direct.layout(str(path), "exchange/data")
    assert lay is not None and len(lay.chunk_masks) == sum(k % 3 != 2 for k in range(SHAPE[0]))
    got = _io_direct.read(lay, np.arange(SHAPE[0]), slice(2, 15), slice(None))
    np.testing.assert_array_equal(got, data[:, 2:15])


def test_corrupt_chunk_falls_back_to_h5py_error(tmp_path):
    """A chunk that does not inflate is left to h5py, whose error says what is wrong."""
    import zlib

    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("exchange/data", SHAPE, "<u2", chunks=(1, 17, 29), compression="gzip")
        for k in range(SHAPE[0]):
            ds.id.write_direct_chunk((k, 0, 0), b"not a zlib stream" if k == 4 else
                                     zlib.compress(np.zeros((17, 29), "<u2").tobytes()))
    lay = _io_direct.layout(str(path), "exchange/data")
    assert lay is not None
    assert _io_direct.read(lay, np.arange(3, 6), slice(None), slice(None)) is None
    np.testing.assert_array_equal(_io_direct.read(lay, np.arange(0, 3), slice(None), slice(None)), 0)
    src = H5Frames(path, "exchange/data", SHAPE, np.dtype("<u2"))
    with pytest.raises(OSError):
        src[3:6]


def test_unallocated_chunks_fall_back(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("exchange/data", SHAPE, "<u2", chunks=(1, 17, 29), fillvalue=7)
        ds[0:5] = 1  # the other frames' chunks are never written
    assert _io_direct.layout(str(path), "exchange/data") is None
    src = H5Frames(path, "exchange/data", SHAPE, np.dtype("<u2"))
    got = src[:, 0:4]
    assert (got[:5] == 1).all() and (got[5:] == 7).all()


def test_rewritten_file_is_looked_up_again(tmp_path):
    import os

    path = tmp_path / "scan.h5"
    _write(path, chunks=(1, 17, 29))
    first = _io_direct.layout(str(path), "exchange/data")
    data = _write(path)  # now contiguous, same shape
    os.utime(path, ns=(1, 1))  # a different modification time even on coarse clocks
    second = _io_direct.layout(str(path), "exchange/data")
    assert first.chunks == (1, 17, 29) and second.chunks is None and second.offset is not None
    np.testing.assert_array_equal(H5Frames(path, "exchange/data", SHAPE, data.dtype)[:, 1:3], data[:, 1:3])


def test_reconstruction_from_raw_and_compressed_files_is_identical(tmp_path):
    """The whole chain reads a raw DXchange file directly and a gzip one through h5py:
    same projections, same volume."""
    from recon import read_projections, reconstruct_to_zarr
    from recon.chunked import open_volume

    rng = np.random.default_rng(0)
    theta = np.linspace(0, 180, 60, endpoint=False)
    data = rng.integers(1000, 3000, (60, 6, 40)).astype(np.uint16)
    outs = []
    for name, kw in (("raw", {"chunks": (1, 6, 40)}), ("gz", {"chunks": (1, 6, 40), "compression": "gzip"})):
        p = tmp_path / f"{name}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("exchange/data", data=data, **kw)
            f.create_dataset("exchange/data_white", data=np.full((3, 6, 40), 4000, np.uint16))
            f.create_dataset("exchange/data_dark", data=np.full((2, 6, 40), 100, np.uint16))
            f.create_dataset("exchange/theta", data=theta).attrs["units"] = "degrees"
        np.testing.assert_array_equal(np.asarray(read_projections(p).data), data)
        out = reconstruct_to_zarr(p, tmp_path / f"{name}.zarr", center=19.5, progress=False, device="cpu")
        outs.append(open_volume(out)[0].compute())
    assert _io_direct.layout(str(tmp_path / "raw.h5"), "exchange/data") is not None
    np.testing.assert_array_equal(outs[0], outs[1])
