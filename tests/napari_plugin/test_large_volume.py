"""A 20 GB OME-Zarr volume (virtual: only the first slab's chunks exist on disk) opens lazily and
its first slice is available in under 2 s, without loading the volume."""

from __future__ import annotations

import math
import shutil
import time

import numpy as np
import psutil
import pytest

pytest.importorskip("napari")

from pipelines.napari import napari_get_reader

SHAPE = (320, 4096, 4096)  # float32: 21.5 GB
CHUNK_Z = 2


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """The store recon.reconstruct_to_zarr would write (NGFF 0.4, Zarr v2, 512 x 512 tiles, 5 levels)."""
    from recon._omezarr import create_level, create_store, default_levels, level_shapes, multiscales

    root = tmp_path_factory.mktemp("big")
    if shutil.disk_usage(root).free < 2 * 2**30:
        pytest.skip(f"less than 2 GiB free in {root} for the first slabs of the virtual 20 GB volume")
    out = root / "big.zarr"
    n_levels = default_levels(SHAPE)
    attrs = {"multiscales": multiscales(n_levels, 1.7, name="big"), "voxel_size_um": 1.7, "units": "1/pixel"}
    group = create_store(out, SHAPE, CHUNK_Z, attrs)
    yy, xx = np.mgrid[0:SHAPE[1], 0:SHAPE[2]].astype(np.float32)
    first = (np.sin(yy / 97.0) * np.cos(xx / 61.0)).astype(np.float32)  # known first slice
    group["0"][:CHUNK_Z] = np.broadcast_to(first, (CHUNK_Z, *SHAPE[1:]))
    for k, shape in enumerate(level_shapes(SHAPE, n_levels)[1:], start=1):
        arr = create_level(group, k, shape, CHUNK_Z)
        f = 2**k
        arr[0] = first[::f, ::f]
    small = root / "small.zarr"
    g = create_store(small, (4, 64, 64), 2, {"multiscales": multiscales(1, 1.7, name="small")})
    g["0"][...] = 1.0
    return out, first, n_levels, small


def test_first_slice_under_2s(big_store, viewer):
    import dask
    from dask.callbacks import Callback

    out, first, n_levels, small = big_store
    # a running napari has the plugin and its libraries loaded: open a small store first so the
    # timing below is the big volume's, not Python's first imports of zarr, dask and napari layers
    for d, kw, kind in napari_get_reader(str(small))(str(small)):
        getattr(viewer, f"add_{kind}")(d, **kw)
    on_disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert on_disk < 1 * 2**30  # sparse: the 21.5 GB are virtual

    class Count(Callback):
        n = 0

        def _posttask(self, *args):
            Count.n += 1

    rss0 = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    with Count():
        layers = napari_get_reader(str(out))(str(out))
        data, kw, kind = layers[0]
        layer = getattr(viewer, f"add_{kind}")(data, **kw)
        viewer.dims.set_current_step(0, 0)
        slice0 = np.asarray(layer.data[0][0])  # full-resolution first slice, as shown at full zoom
    elapsed = time.perf_counter() - t0
    rss1 = psutil.Process().memory_info().rss

    assert elapsed < 2.0, f"first slice after {elapsed:.2f} s"
    np.testing.assert_array_equal(slice0, first)
    assert layer.multiscale and len(layer.data) == n_levels
    assert all(hasattr(a, "dask") for a in layer.data)  # lazy levels
    assert math.prod(layer.data[0].shape) * 4 > 20e9
    assert layer.scale[-1] == pytest.approx(1.7)
    # nothing loaded the volume: a few hundred chunk tasks at most and < 1 GiB more memory
    n_chunks_slice = (SHAPE[1] // 512) * (SHAPE[2] // 512)
    assert Count.n < 4 * n_chunks_slice + 200
    assert rss1 - rss0 < 2**30
    print(f"first slice of the {math.prod(SHAPE) * 4 / 1e9:.1f} GB volume in {elapsed:.3f} s; "
          f"{Count.n} dask tasks; RSS +{(rss1 - rss0) / 2**20:.0f} MiB; {on_disk / 2**20:.0f} MiB on disk")
    with dask.config.set(scheduler="sync"):
        assert float(layer.data[0][SHAPE[0] // 2, :8, :8].sum()) == 0.0  # unwritten chunks read as fill
