"""segment_layers in lateral tiles (volumes larger than memory): identical labels, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from scipy import ndimage

from pipelines.samples import anode_free_cell
from segment import InputError, segment_layers
from segment._seg_chunked import ExactSum, TileComponents, TileSource


@pytest.fixture(scope="module")
def cell():
    c = anode_free_cell(shape=(48, 96, 96), seed=1)
    rng = np.random.default_rng(0)
    vol = ndimage.gaussian_filter(c.mu_per_px, 0.8) + rng.normal(0, 5e-5, c.mu_per_px.shape)
    return c, vol.astype(np.float32)


@pytest.fixture(scope="module")
def in_memory(cell):
    return segment_layers(cell[1], return_info=True)


def _same(ref, got):
    lab_a, ia = ref
    lab_b, ib = got
    np.testing.assert_array_equal(np.asarray(lab_b), lab_a)
    for key in ("cuts", "interfaces_px", "footprint"):
        np.testing.assert_array_equal(ib[key], ia[key])
    for key in ("levels", "thresholds", "interface_smooth_px", "li_column_fraction"):
        assert ib[key] == ia[key], key


def test_many_tiles_give_identical_labels(cell, in_memory):
    c, vol = cell
    lab, info = in_memory
    assert info["n_tiles"] == 1
    # the in-memory labels are right: Li thickness within a voxel of the simulated truth
    t = (lab == 2).sum(axis=0) * 1.7
    ok = info["footprint"] & np.isfinite(c.thickness_um)
    assert np.abs(t - c.thickness_um)[ok].mean() < 1.7
    assert (lab == 0)[:, info["footprint"]].any()  # pores / particles became inclusions
    got = segment_layers(vol, tile_px=13, return_info=True)  # 64 tiles, ragged last row/column
    assert got[1]["n_tiles"] == 64
    assert "smoothed" not in got[1]
    _same(in_memory, got)


def test_zarr_backed_dask_volume_writes_identical_labels(cell, in_memory, tmp_path):
    import dask.array as da
    import zarr

    _, vol = cell
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=vol.shape, chunks=(16, 24, 24), dtype="float32")
    z[...] = vol
    out = zarr.open_array(str(tmp_path / "lab.zarr"), mode="w", shape=vol.shape, chunks=(48, 24, 24),
                          dtype="uint8")
    res, info = segment_layers(da.from_zarr(z), out=out, return_info=True)  # tiles = the 24-voxel chunks
    assert res is out and info["n_tiles"] == 16
    _same(in_memory, (out[...], info))


def test_tiles_along_another_stacking_axis(cell, in_memory):
    import dask.array as da

    _, vol = cell
    v2 = np.ascontiguousarray(np.moveaxis(vol, 0, 2))
    lab, info = segment_layers(da.from_array(v2, chunks=(20, 30, 48)), axis=2, return_info=True)
    _same(in_memory, (np.moveaxis(lab, 2, 0), info))


def test_tiles_with_lithium_class_and_kmeans(cell):
    _, vol = cell
    for kw in ({"method": "kmeans"}, {"li_class": 0}):
        _same(segment_layers(vol, return_info=True, **kw), segment_layers(vol, tile_px=20, return_info=True, **kw))


def test_bad_tile_and_out_are_rejected(cell):
    _, vol = cell
    with pytest.raises(InputError, match="tile_px"):
        segment_layers(vol, tile_px=0)
    with pytest.raises(InputError, match="out has shape"):
        segment_layers(vol, out=np.zeros((2, 2, 2), np.uint8))


def test_exact_sum_is_the_exact_mean_in_any_order():
    rng = np.random.default_rng(5)
    # values spanning many binary orders of magnitude, signs and zeros
    v = (rng.normal(size=(3, 40, 50)) * 10.0 ** rng.integers(-20, 20, size=(3, 40, 50))).astype(np.float32)
    v[0, :3] = 0
    m = rng.random(v.shape) < 0.7
    truth = [sum((Fraction(float(x)) for x in v[r][m[r]]), Fraction(0)) / int(m[r].sum()) for r in range(3)]
    whole = ExactSum(3)
    whole.add(v, m)
    parts = ExactSum(3)
    for xs in (slice(30, 50), slice(0, 7), slice(7, 30)):  # another order
        parts.add(np.ascontiguousarray(v[:, :, xs]), np.ascontiguousarray(m[:, :, xs]))
    counts = m.reshape(3, -1).sum(axis=1)
    for a, b, t in zip(whole.means(counts), parts.means(counts), truth):
        assert a == b == float(t)
    assert whole.total_mean(int(m.sum())) == float(sum(t * int(c) for t, c in zip(truth, counts)) / int(m.sum()))


def test_components_merged_across_tiles_match_whole_volume_labelling():
    rng = np.random.default_rng(2)
    mask = ndimage.binary_opening(rng.random((6, 41, 37)) < 0.55)  # blobs crossing tile faces
    lab, n = ndimage.label(mask)
    sizes = np.bincount(lab.ravel())
    for tile in (5, 11, 64):
        src = TileSource(np.zeros(mask.shape, np.float32), tile, "cpu")
        comps = TileComponents(mask.shape)
        for b in src.tiles():
            comps.add(b, mask[:, b[0]:b[1], b[2]:b[3]])
        for min_size in (2, 9, 40):
            big = np.zeros(mask.shape, bool)
            for b in src.tiles():
                y0, y1, x0, x1 = b
                loc, nloc = comps.label(mask[:, y0:y1, x0:x1])
                big[:, y0:y1, x0:x1] = comps.large(b, nloc, min_size)[loc]
            np.testing.assert_array_equal(big, (sizes >= min_size)[lab] & mask)


_CHILD = r"""
import json, sys
import numpy as np
import dask, dask.array as da, zarr
dask.config.set(scheduler="synchronous")
mode, path = sys.argv[1], sys.argv[2]
import segment, segment.classify as C, segment._seg_chunked as K
C.MAX_SAMPLE = 1 << 18  # small statistics budgets: memory then follows the tile size
K.MAX_COLUMN_VOXELS = 1 << 18
C.MAX_NOISE_DIFFS = 1 << 18
z = zarr.open_array(path + "/v.zarr", mode="r")
warm = np.asarray(z[:, 240:280, 240:280])  # inside the cell
segment.segment_layers(warm, mask=np.ones(warm.shape[1:], bool), tile_px=20)  # imports, JIT
del warm
import gc
gc.collect()
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # KiB
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak-RSS mark (VmHWM); ru_maxrss would include the parent's RSS at fork
base = status("VmRSS")
if mode == "chunked":
    out = zarr.open_array(path + "/lab.zarr", mode="w", shape=z.shape, chunks=(z.shape[0], 64, 64), dtype="uint8")
    _, info = segment.segment_layers(da.from_zarr(z), tile_px=64, out=out, return_info=True)
    res = {"n_tiles": info["n_tiles"], "li": info["li_column_fraction"]}
else:
    v = np.asarray(z[...])
    res = {"sum": float(v[::7, ::7, ::7].sum())}
res["peak_kib"] = status("VmHWM") - base
print(json.dumps(res))
"""


def _write_big_cell(path, shape):
    """A layered cylinder (collector | Li of varying thickness | electrolyte) written slab by slab."""
    import zarr

    nz, ny, nx = shape
    z = zarr.open_array(str(path / "v.zarr"), mode="w", shape=shape, chunks=(nz, 32, 32), dtype="float32")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:ny, 0:nx]
    inside = (yy - ny / 2) ** 2 + (xx - nx / 2) ** 2 < (0.45 * nx) ** 2
    top = 8 + 6 + 5 * np.sin(yy / 37.0) * np.cos(xx / 53.0) + 4  # Li from z = 8 to 14..23
    zz = np.arange(nz)[:, None, None]
    for y0 in range(0, ny, 32):
        sl = slice(y0, y0 + 32)
        v = np.where(zz < 8, 3.0, np.where(zz < top[None, sl], 0.6, 2.0)).astype(np.float32)
        v[:, ~inside[sl]] = 0.05
        v += rng.normal(0, 0.08, v.shape).astype(np.float32)
        z[:, sl] = v
    return inside, top


def _child(mode, path):
    env = dict(os.environ, NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", ""), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_follows_the_tile_not_the_volume(tmp_path):
    import zarr

    shape = (128, 512, 512)  # 134 MB of float32; tiles of 64 x 64 columns (2.1 MB)
    inside, top = _write_big_cell(tmp_path, shape)
    vol_kib = np.prod(shape) * 4 / 1024
    loaded = _child("load", tmp_path)  # the measurement sees a whole-volume copy
    assert loaded["peak_kib"] > 0.9 * vol_kib
    res = _child("chunked", tmp_path)
    print(f"volume {vol_kib / 1024:.0f} MiB, whole-volume load +{loaded['peak_kib'] / 1024:.0f} MiB, "
          f"tiled labelling +{res['peak_kib'] / 1024:.0f} MiB peak RSS")
    assert res["n_tiles"] == 64
    assert res["peak_kib"] < 0.5 * vol_kib, (res, vol_kib)  # measured ~0.37 (tile reads, 2-D maps)
    lab = zarr.open_array(str(tmp_path / "lab.zarr"), mode="r")
    col = lab[:, 256, 240]  # a column in the cell: thickness of the Li layer as built
    assert (col == 1).sum() == 8
    assert abs(int((col == 2).sum()) - (np.ceil(top[256, 240]) - 8)) <= 1


def _ngff(path, vol, voxel_size_um=1.7):
    import zarr

    g = zarr.open_group(str(path), mode="w")
    a = g.create_array("0", shape=vol.shape, dtype="float32", chunks=(16, 32, 32))
    a[...] = vol
    g.attrs["voxel_size_um"] = voxel_size_um
    return path


def test_cli_tile_and_memory_options_steer_the_tiling(cell, in_memory, tmp_path, capsys):
    import zarr

    from pipelines._cli_segment import tile_from_memory
    from pipelines.cli import main

    _, vol = cell
    runs = {}
    for name, opts in (("tiles", ["--tile", "20"]), ("memory", ["--memory-gb", "0.02"])):
        store = _ngff(tmp_path / f"{name}.zarr", vol)
        assert main(["segment", str(store), "--chunks", "16,32,32", "--quiet", *opts]) == 0
        g = zarr.open_group(str(store), mode="r")["labels"]["layers"]
        runs[name] = (g["0"][...], g.attrs["segmentation"]["n_tiles"], g["0"].chunks)
        assert not any(p.name.startswith(".denoised_") for p in (tmp_path / f"{name}_maps").iterdir())
    edge = tile_from_memory(0.02, vol.shape[0])
    assert edge == int((0.02e9 / (48 * 48)) ** 0.5) - 48
    assert runs["tiles"][1] == 25 and runs["memory"][1] == (-(-96 // edge)) ** 2 == 9
    assert runs["tiles"][2] == (48, 20, 20)  # labels written in tile-shaped chunks
    np.testing.assert_array_equal(runs["tiles"][0], runs["memory"][0])  # 20- and 46-voxel tiles
    # denoised input (median 3) still labels the simulated Li layer like the raw in-memory run
    agree = np.mean((runs["tiles"][0] == 2) == (in_memory[0] == 2))
    assert agree > 0.99
    store = _ngff(tmp_path / "small.zarr", vol)
    assert main(["segment", str(store), "--memory-gb", "0.0001", "--quiet"]) == 2
    assert "--memory-gb" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_smoothing_in_tiles_matches_gpu_whole_and_cpu(cell, in_memory):
    import cupy as cp

    _, vol = cell
    whole = segment_layers(cp.asarray(vol), device="gpu")
    tiled = segment_layers(cp.asarray(vol), device="gpu", tile_px=20)
    assert isinstance(whole, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(tiled), cp.asnumpy(whole))  # same cupyx kernels per tile
    assert np.mean(cp.asnumpy(whole) == in_memory[0]) > 0.999  # GPU vs SciPy rounding only
