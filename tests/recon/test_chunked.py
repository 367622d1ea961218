"""Chunked reconstruction into OME-Zarr: equality with the in-memory chain, NGFF metadata,
pyramid, resume after interruption, refusal to clobber outputs, memory planning."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from recon import InputError
from recon._chunk_plan import parse_memory, plan_chunks
from recon._omezarr import mean_pool2

# ----------------------------------------------------------------------------- helpers
N_ANGLES, N_ROWS, WIDTH = 90, 10, 64
CENTER = 31.5 + 1.25  # off-centre axis (pixels)
PIXEL_UM = 1.7


def _disc_sinogram(theta, width, center, discs):
    """Analytic line integrals (per pixel) of discs (x0, y0, r, mu) in the binding geometry."""
    s = np.arange(width, dtype=np.float64)[None, :] - center
    p = np.zeros((theta.size, width))
    for x0, y0, r, mu in discs:
        s0 = x0 * np.cos(theta) + y0 * np.sin(theta)
        d2 = r * r - (s - s0[:, None]) ** 2
        p += 2 * mu * np.sqrt(np.clip(d2, 0, None))
    return p


def _row_discs(row):
    # the phantom changes from row to row so that slabs differ
    return [
        (0.0, 0.0, 22.0 + row, 0.01),
        (8.0 - row, -5.0, 6.0, 0.03),
        (-10.0, 9.0 + 0.5 * row, 4.0, 0.02),
    ]


def disc_scan(n_angles=N_ANGLES, n_rows=N_ROWS, width=WIDTH, center=CENTER, *, seed=0, zingers=0):
    """A small simulated scan (Projections) of discs, with flats, darks and noise."""
    import dask.array as da

    from recon.io import Projections

    rng = np.random.default_rng(seed)
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    line = np.stack([_disc_sinogram(theta, width, center, _row_discs(r)) for r in range(n_rows)], 1)
    flat_profile = 1000.0 * (1 + 0.2 * np.sin(np.arange(width) / 7.0))[None, None, :]
    flats = rng.poisson(np.broadcast_to(flat_profile, (5, n_rows, width))).astype(np.float32)
    darks = rng.poisson(20.0, (3, n_rows, width)).astype(np.float32)
    data = (20.0 + (flat_profile - 20.0) * np.exp(-line)).astype(np.float32)
    data += rng.normal(0, 2.0, data.shape).astype(np.float32)
    for _ in range(zingers):
        a, r, c = rng.integers(0, n_angles), rng.integers(0, n_rows), rng.integers(0, width)
        data[a, r, c] *= 5
    chunks = (-1, 3, -1)
    return Projections(
        data=da.from_array(data, chunks=chunks),
        flats=da.from_array(flats, chunks=chunks),
        darks=da.from_array(darks, chunks=chunks),
        theta_rad=theta,
        pixel_size_um=PIXEL_UM,
        energy_kev=25.5,
        source="<disc phantom>",
    )


def in_memory_volume(proj, center, *, zingers=False, rings=None, algorithm="fourier", ring_options=None):
    """The whole stack through the chain in one go (no chunks)."""
    from recon.algorithms import reconstruct
    from recon.prep import minus_log, normalize, remove_zingers

    t = normalize(np.asarray(proj.data), np.asarray(proj.flats), np.asarray(proj.darks))
    if zingers:
        t = remove_zingers(t, size=3)
    sino = minus_log(t)
    if rings is not None:
        from recon import stripes

        remover = {"sorting": stripes.remove_stripes_sorting, "all": stripes.remove_all_stripes}[rings]
        sino = remover(sino, **(ring_options or {}))
    return np.asarray(reconstruct(sino, proj.theta_rad, center, algorithm=algorithm, device="cpu"))


def tree_digest(path: Path) -> str:
    """SHA-256 over every file's name, content and mtime under ``path``."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(path).rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(p.read_bytes())
        h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scan():
    return disc_scan()


@pytest.fixture(scope="module")
def needs_recon():
    pytest.importorskip("recon.algorithms")


# ----------------------------------------------------------------------------- planning
def test_parse_memory_units():
    assert parse_memory("512MB") == 512 * 10**6
    assert parse_memory("2GiB") == 2 * 2**30
    assert parse_memory("1.5 gb") == 1_500_000_000
    assert parse_memory(4096) == 4096
    for bad in ("lots", "-1GB", "0", 0, "5 parsecs", True):
        with pytest.raises(InputError, match="memory_limit"):
            parse_memory(bad)


@pytest.mark.parametrize("limit_mb,per_row_mb,halo,rows", [(64, 1, 0, 1000), (64, 5, 3, 40), (2000, 30, 10, 2)])
def test_plan_fits_limit_and_covers_rows(limit_mb, per_row_mb, halo, rows):
    limit, per_row = limit_mb * 2**20, per_row_mb * 2**20
    plan = plan_chunks(row_start=7, row_stop=7 + rows, bytes_per_row=per_row, memory_limit=limit,
                       halo=halo, max_workers=4)
    covered = []
    for i in range(plan.n_chunks):
        a, b = plan.bounds(i)
        covered.extend(range(a, b))
        ra, rb = plan.read_bounds(i, 7 + rows)
        assert ra <= a and rb >= b and rb - ra <= b - a + 2 * halo
    assert covered == list(range(7, 7 + rows))
    if (1 + 2 * halo) * per_row <= limit:  # feasible at all
        assert plan.chunks_in_flight * (plan.rows_per_chunk + 2 * halo) * per_row <= limit


@pytest.mark.parametrize("shape", [(5, 4, 7), (4, 6, 8), (1, 1, 1), (2, 3, 2), (3, 5, 1)])
def test_mean_pool2_matches_loops(shape):
    rng = np.random.default_rng(1)
    block = rng.normal(size=shape).astype(np.float32)
    pooled = mean_pool2(block)
    assert pooled.shape == tuple(math.ceil(s / 2) for s in shape) and pooled.dtype == np.float32
    for k, j, i in np.ndindex(*pooled.shape):
        cell = block[2 * k : 2 * k + 2, 2 * j : 2 * j + 2, 2 * i : 2 * i + 2]
        assert math.isclose(pooled[k, j, i], float(np.mean(cell, dtype=np.float64)), rel_tol=1e-5, abs_tol=1e-6)


@pytest.mark.parametrize(
    "rows,n_rows,levels,forced,expect_rows,expect_levels",
    [
        (25, 100, 4, False, 24, 3),  # automatic slab height rounded down to a multiple of 8
        (6, 100, 4, False, 6, 1),  # too few rows to round: the tasks write level 1 only
        (6, 100, 4, True, 6, 1),  # a forced height is kept
        (12, 100, 3, True, 12, 2),
        (7, 100, 3, True, 7, 0),
        (100, 100, 4, False, 100, 3),  # one slab holds the whole volume
        (25, 100, 1, False, 25, 0),  # no pyramid
    ],
)
def test_align_for_pyramid(rows, n_rows, levels, forced, expect_rows, expect_levels):
    from recon.chunked import _align_for_pyramid

    plan = plan_chunks(row_start=0, row_stop=n_rows, bytes_per_row=1, memory_limit=2**30, rows_per_chunk=rows)
    aligned, task_levels = _align_for_pyramid(plan, levels, forced=forced)
    assert (aligned.rows_per_chunk, task_levels) == (expect_rows, expect_levels)
    assert aligned.n_chunks * aligned.rows_per_chunk >= n_rows


# ----------------------------------------------------------------------------- equality
@pytest.mark.parametrize("options", [{}, {"zingers": True}])
def test_chunked_equals_in_memory(tmp_path, needs_recon, options):
    from recon.chunked import open_volume, reconstruct_to_zarr

    proj = disc_scan(zingers=20) if options.get("zingers") else disc_scan()
    out = reconstruct_to_zarr(proj, tmp_path / "v.zarr", center=CENTER, rows_per_chunk=3,
                              progress=False, device="cpu", **options)
    vol, attrs = open_volume(out)
    assert attrs["anodescope_run"]["plan"]["rows_per_chunk"] == 3  # 4 slabs: 3+3+3+1
    expected = in_memory_volume(proj, CENTER, **options)
    got = vol.compute()
    assert got.shape == expected.shape == (N_ROWS, WIDTH, WIDTH)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=1e-5 * scale)


def test_auto_center_and_truth(tmp_path, needs_recon):
    """Centre 'auto' finds the simulated axis; the slice matches the disc phantom."""
    pytest.importorskip("recon.center")
    from recon.chunked import open_volume, reconstruct_to_zarr

    proj = disc_scan(n_angles=180)
    out = reconstruct_to_zarr(proj, tmp_path / "auto.zarr", progress=False, device="cpu",
                              memory_limit="64MB")
    vol, attrs = open_volume(out)
    assert abs(attrs["center"] - CENTER) < 0.3
    assert Path(attrs["quicklook"]["center_png"]).is_file()
    assert Path(attrs["quicklook"]["slice_png"]).is_file()
    # ground truth inside the big disc (row 4): mu 0.01 per pixel, small disc adds 0.03
    img = vol[4].compute()
    n = WIDTH
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    truth = np.zeros((n, n))
    for x0, y0, r, mu in _row_discs(4):
        truth += mu * ((x - x0) ** 2 + (y - y0) ** 2 < (r - 1.5) ** 2)
    inside = (x**2 + y**2 < (22 + 4 - 2) ** 2)
    edge_free = inside & ((x - 4) ** 2 + (y + 5) ** 2 > 9**2) & ((x + 10) ** 2 + (y - 11) ** 2 > 7**2)
    assert abs(np.median(img[edge_free]) - 0.01) < 0.002
    core = (x - 4) ** 2 + (y + 5) ** 2 < 3**2
    assert abs(np.median(img[core]) - 0.04) < 0.006


# ----------------------------------------------------------------------------- metadata
def test_ngff_metadata_and_pyramid(tmp_path, scan, needs_recon):
    import zarr

    from recon.chunked import open_volume, reconstruct_to_zarr

    out = reconstruct_to_zarr(scan, tmp_path / "m.zarr", center=CENTER, rows_per_chunk=4,
                              pyramid_levels=3, progress=False, device="cpu")
    attrs = json.loads((out / ".zattrs").read_text())
    assert json.loads((out / ".zgroup").read_text())["zarr_format"] == 2
    (ms,) = attrs["multiscales"]
    assert ms["version"] == "0.4"
    assert [(a["name"], a["type"], a["unit"]) for a in ms["axes"]] == [
        ("z", "space", "micrometer"), ("y", "space", "micrometer"), ("x", "space", "micrometer")]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    shape = (N_ROWS, WIDTH, WIDTH)
    for k, d in enumerate(ms["datasets"]):
        tr = d["coordinateTransformations"]
        assert tr[0]["type"] == "scale"  # NGFF 0.4: scale first, then optional translation
        assert tr[0]["scale"] == pytest.approx([PIXEL_UM * 2**k] * 3)
        if k:
            assert tr[1]["type"] == "translation"
            assert tr[1]["translation"] == pytest.approx([PIXEL_UM * (2**k - 1) / 2] * 3)
        zarray = json.loads((out / d["path"] / ".zarray").read_text())
        assert zarray["zarr_format"] == 2 and zarray["dimension_separator"] == "/"
        assert tuple(zarray["shape"]) == shape
        shape = tuple(math.ceil(s / 2) for s in shape)
    assert attrs["voxel_size_um"] == PIXEL_UM and attrs["energy_kev"] == 25.5
    assert attrs["center"] == pytest.approx(CENTER)
    assert "attenuation per pixel" in attrs["units"]
    for key in ("algorithm", "filter_name", "rings", "zingers", "phase", "flat_method", "rows"):
        assert key in attrs["parameters"]
    prov = attrs["provenance"]
    assert set(prov["versions"]) >= {"anodescope", "numpy", "scipy", "dask", "zarr", "numba"}
    assert prov["versions"]["numpy"] == np.__version__
    assert prov["created"] and prov["finished"]
    # levels are 2x mean pools, checked with plain loops on the stored level 0 and 1
    g = zarr.open_group(str(out), mode="r")
    lvl0, lvl1, lvl2 = (np.asarray(g[k][:], dtype=np.float64) for k in "012")
    for src, dst in ((lvl0, lvl1), (lvl1, lvl2)):
        for idx in np.ndindex(*dst.shape):
            sl = tuple(slice(2 * i, 2 * i + 2) for i in idx)
            assert dst[idx] == pytest.approx(src[sl].mean(), rel=1e-5, abs=1e-7)
    v1, _ = open_volume(out, level=1)
    assert v1.shape == lvl1.shape
    with pytest.raises(InputError, match="level 3"):
        open_volume(out, level=3)


def test_unknown_pixel_size_uses_scale_one(tmp_path, needs_recon):
    from dataclasses import replace

    from recon.chunked import open_volume, reconstruct_to_zarr

    proj = replace(disc_scan(n_rows=2), pixel_size_um=None)
    out = reconstruct_to_zarr(proj, tmp_path / "u.zarr", center=CENTER, progress=False, device="cpu")
    _, attrs = open_volume(out)
    assert attrs["voxel_size_um"] is None and attrs["voxel_size_known"] is False
    assert "unknown" in attrs["voxel_size_note"]
    (ms,) = attrs["multiscales"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0] * 3
    assert all("unit" not in ax for ax in ms["axes"])  # pixels, not micrometres


# ----------------------------------------------------------------------------- resume
class _Stop(Exception):
    pass


def test_resume_after_interruption(tmp_path, scan, needs_recon):
    from recon._omezarr import done_chunks
    from recon.chunked import open_volume, reconstruct_to_zarr

    kw = dict(center=CENTER, rows_per_chunk=2, progress=False, device="cpu", num_workers=1)
    full = reconstruct_to_zarr(scan, tmp_path / "full.zarr", **kw)

    out = tmp_path / "resumed.zarr"
    seen = []

    def stop_after_two(index):
        seen.append(index)
        if len(seen) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        reconstruct_to_zarr(scan, out, _chunk_hook=stop_after_two, **kw)
    done = done_chunks(out)
    assert done == set(seen) and len(done) == 2
    assert json.loads((out / ".zattrs").read_text())["anodescope_run"]["status"] == "running"
    # a slab half-written when the process died: garbage data, no marker
    import zarr

    missing = sorted(set(range(5)) - done)
    victim = missing[0]
    zarr.open_array(str(out / "0"), mode="r+")[2 * victim : 2 * victim + 1] = 123.0

    computed = []
    reconstruct_to_zarr(scan, out, on_slab_done=computed.append, **kw)  # the public progress hook
    assert sorted(computed) == missing  # only the missing slabs were computed
    a, attrs = open_volume(out)
    b, _ = open_volume(full)
    np.testing.assert_array_equal(a.compute(), b.compute())
    assert attrs["anodescope_run"]["status"] == "complete"
    # a complete output with the same call is left untouched
    before = tree_digest(out)
    computed.clear()
    reconstruct_to_zarr(scan, out, _chunk_hook=computed.append, **kw)
    assert computed == [] and tree_digest(out) == before


def _levels(out):
    import zarr

    g = zarr.open_group(str(out), mode="r")
    return [np.asarray(g[k][:]) for k in sorted(g.array_keys(), key=int)]


def test_slab_tasks_write_the_pyramid(tmp_path, scan, needs_recon):
    """Slabs of 4 rows write levels 1 and 2 themselves; each level equals 2x pooling of the
    whole level below, bit for bit, as the after-the-fact pass (slabs of 3 rows) gives, and
    an interrupted, resumed run equals an uninterrupted one."""
    from recon.chunked import open_volume, reconstruct_to_zarr

    kw = dict(center=CENTER, pyramid_levels=3, progress=False, device="cpu", num_workers=1)
    post = reconstruct_to_zarr(scan, tmp_path / "post.zarr", rows_per_chunk=3, **kw)
    full = reconstruct_to_zarr(scan, tmp_path / "full.zarr", rows_per_chunk=4, **kw)
    assert open_volume(post)[1]["anodescope_run"]["storage"]["task_levels"] == 0
    assert open_volume(full)[1]["anodescope_run"]["storage"] == {"compression": "lz4", "task_levels": 2,
                                                                  "dtype": "float32"}
    for store in (post, full):
        levels = _levels(store)
        for k in (1, 2):
            np.testing.assert_array_equal(levels[k], mean_pool2(levels[k - 1]), err_msg=f"{store.name} level {k}")

    seen = []

    def stop_after_one(index):
        seen.append(index)
        if len(seen) == 1:
            raise _Stop

    out = tmp_path / "task.zarr"
    with pytest.raises(_Stop):
        reconstruct_to_zarr(scan, out, rows_per_chunk=4, _chunk_hook=stop_after_one, **kw)
    assert not any((out / ".anodescope").glob("level-*.json"))
    import zarr

    victim = 2 * (1 - seen[0])  # level-1 rows of a slab without its marker: garbage
    zarr.open_array(str(out / "1"), mode="r+")[victim : victim + 1] = 99.0
    reconstruct_to_zarr(scan, out, rows_per_chunk=4, **kw)
    for level, (a, b) in enumerate(zip(_levels(out), _levels(full))):
        np.testing.assert_array_equal(a, b, err_msg=f"level {level}")
    assert sorted(p.name for p in (out / ".anodescope").glob("level-*.json")) == ["level-1.json", "level-2.json"]


@pytest.mark.parametrize("compression,codec", [("zstd", "zstd"), ("none", None)])
def test_compression_option(tmp_path, scan, needs_recon, compression, codec):
    from recon.chunked import reconstruct_to_zarr

    kw = dict(center=CENTER, rows_per_chunk=4, pyramid_levels=2, progress=False, device="cpu")
    ref = reconstruct_to_zarr(scan, tmp_path / "lz4.zarr", **kw)
    out = reconstruct_to_zarr(scan, tmp_path / f"{compression}.zarr", compression=compression, **kw)
    for level in ("0", "1"):
        meta = json.loads((out / level / ".zarray").read_text())
        got = meta["compressor"]["cname"] if meta["compressor"] else None
        assert got == codec
    assert json.loads((ref / "0" / ".zarray").read_text())["compressor"]["cname"] == "lz4"
    for a, b in zip(_levels(out), _levels(ref)):
        np.testing.assert_array_equal(a, b)


def test_float16_output(tmp_path, scan, needs_recon):
    """dtype="float16" stores the float32 run's values rounded to float16: the slab-task
    levels exactly (pooled in float32, then rounded), the level pooled afterwards from the
    float16 level below within float16 rounding; readers get float32; an interrupted float16
    run resumes as float16 even when rerun without the option."""
    import zarr

    from recon.chunked import open_volume, reconstruct_to_zarr

    kw = dict(center=CENTER, rows_per_chunk=4, pyramid_levels=4, progress=False, device="cpu",
              num_workers=1)
    ref = _levels(reconstruct_to_zarr(scan, tmp_path / "f32.zarr", **kw))
    out = reconstruct_to_zarr(scan, tmp_path / "f16.zarr", dtype=np.float16, **kw)
    storage = open_volume(out)[1]["anodescope_run"]["storage"]
    assert storage["dtype"] == "float16" and storage["task_levels"] == 2  # 4-row slabs: levels 1, 2
    got = _levels(out)
    assert [a.dtype for a in got] == [np.float16] * 4
    assert np.abs(ref[0]).max() > 1e-3  # values worth rounding
    for level in (0, 1, 2):
        np.testing.assert_array_equal(got[level], ref[level].astype(np.float16), err_msg=f"level {level}")
    assert not np.array_equal(got[0].astype(np.float32), ref[0])  # rounding happened
    np.testing.assert_allclose(got[3].astype(np.float32), ref[3], rtol=2e-3, atol=1e-7)
    vol = open_volume(out)[0]
    assert vol.dtype == np.float32
    np.testing.assert_array_equal(vol.compute(), got[0].astype(np.float32))
    assert json.loads((out / "0" / ".zarray").read_text())["dtype"] == "<f2"

    seen = []

    def stop_after_one(index):
        seen.append(index)
        raise _Stop

    part = tmp_path / "part.zarr"
    with pytest.raises(_Stop):
        reconstruct_to_zarr(scan, part, dtype="float16", _chunk_hook=stop_after_one, **kw)
    reconstruct_to_zarr(scan, part, **kw)  # default dtype: the run keeps float16
    assert zarr.open_array(str(part / "0"), mode="r").dtype == np.float16
    for level, (a, b) in enumerate(zip(_levels(part), got)):
        np.testing.assert_array_equal(a, b, err_msg=f"level {level}")


def test_float16_overflow_is_an_input_error():
    from types import SimpleNamespace

    from recon._chunk_tasks import _stored

    job = SimpleNamespace(dtype="float16", source="scan.h5")
    ok = np.array([[[1.0, -65504.0, np.inf]]], np.float32)  # an infinity already there is kept
    np.testing.assert_array_equal(_stored(ok, job, 0, 1), ok.astype(np.float16))
    with pytest.raises(InputError, match=r"scan\.h5: rows 4:8: .*7e\+04 overflow float16.*float32"):
        _stored(np.array([[[1.0, 7e4]]], np.float32), job, 4, 8)
    assert _stored(ok, SimpleNamespace(dtype="float32"), 0, 1).dtype == np.float32


def test_refuses_different_parameters(tmp_path, scan, needs_recon):
    from recon.chunked import reconstruct_to_zarr

    out = reconstruct_to_zarr(scan, tmp_path / "r.zarr", center=CENTER, progress=False, device="cpu")
    before = tree_digest(out)
    with pytest.raises(InputError, match=r"r\.zarr.*filter_name.*--overwrite"):
        reconstruct_to_zarr(scan, out, center=CENTER, filter_name="hann", progress=False, device="cpu")
    with pytest.raises(InputError, match="center.*--overwrite"):
        reconstruct_to_zarr(scan, out, center=CENTER + 1, progress=False, device="cpu")
    assert tree_digest(out) == before
    reconstruct_to_zarr(scan, out, center=CENTER, filter_name="hann", progress=False, device="cpu",
                        overwrite=True)
    attrs = json.loads((out / ".zattrs").read_text())
    assert attrs["parameters"]["filter_name"] == "hann"


def test_refuses_other_input(tmp_path, scan, needs_recon):
    from recon.chunked import reconstruct_to_zarr

    out = reconstruct_to_zarr(scan, tmp_path / "i.zarr", center=CENTER, progress=False, device="cpu")
    other = disc_scan(seed=1)  # same shape, other noise
    with pytest.raises(InputError, match=r"i\.zarr.*\(input\).*--overwrite"):
        reconstruct_to_zarr(other, out, center=CENTER, progress=False, device="cpu")


def test_refuses_foreign_outputs(tmp_path, scan):
    from recon.chunked import reconstruct_to_zarr

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    with pytest.raises(InputError, match="photos.*--overwrite"):
        reconstruct_to_zarr(scan, folder, center=CENTER, progress=False)
    with pytest.raises(InputError, match="not a Zarr store; refusing to delete"):
        reconstruct_to_zarr(scan, folder, center=CENTER, progress=False, overwrite=True)
    assert (folder / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"algorithm": "art"}, "algorithm"),
        ({"filter_name": "box"}, "filter_name"),
        ({"rings": "yes"}, "rings"),
        ({"rows": (5, 5)}, "rows"),
        ({"rows": "a:b"}, "rows"),
        ({"rows": (0, 99)}, "outside the 10 detector rows"),
        ({"memory_limit": "much"}, "memory_limit"),
        ({"center": "middle"}, "center"),
        ({"phase": {"distance_mm": 100}}, "delta_beta"),
        ({"phase": {"distance_mm": -1, "delta_beta": 100}}, "distance_mm"),
        ({"device": "tpu"}, "device"),
        ({"compression": "gzip"}, "compression"),
        ({"dtype": "float64"}, "dtype"),
        ({"dtype": "int16"}, "dtype"),
        ({"ring_options": {"size": 5}}, "without a ring removal method"),
        ({"rings": "sorting", "ring_options": {"sigma": 2}}, "not options of remove_stripes_sorting"),
    ],
)
def test_bad_parameters(tmp_path, scan, kwargs, match):
    from recon.chunked import reconstruct_to_zarr

    with pytest.raises(InputError, match=match):
        reconstruct_to_zarr(scan, tmp_path / "bad.zarr", progress=False, **kwargs)
    assert not (tmp_path / "bad.zarr").exists()


def test_missing_output_folder(tmp_path, scan):
    from recon.chunked import reconstruct_to_zarr

    with pytest.raises(InputError, match="output folder .*nowhere does not exist"):
        reconstruct_to_zarr(scan, tmp_path / "nowhere" / "v.zarr", center=CENTER, progress=False)


def test_open_volume_errors(tmp_path):
    from recon.chunked import open_volume

    with pytest.raises(FileNotFoundError):
        open_volume(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not a Zarr store"):
        open_volume(tmp_path / "plain")


# ----------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_gpu_matches_cpu(tmp_path, scan, needs_recon):
    from recon.chunked import open_volume, reconstruct_to_zarr

    kw = dict(center=CENTER, rows_per_chunk=3, progress=False, zingers=True)
    cpu = reconstruct_to_zarr(scan, tmp_path / "cpu.zarr", device="cpu", **kw)
    gpu = reconstruct_to_zarr(scan, tmp_path / "gpu.zarr", device="gpu", **kw)
    a, b = open_volume(cpu)[0].compute(), open_volume(gpu)[0].compute()
    np.testing.assert_allclose(b, a, atol=1e-3 * np.abs(a).max())


@pytest.mark.gpu
def test_gpu_float16_output(tmp_path, scan, needs_recon):
    """On the GPU the slab (and its task pyramid levels) is rounded to float16 before the copy
    to the host: the GPU float32 run's values within float16 rounding (the gridding's atomic
    sums may differ in the last float32 bit between runs, so not bit for bit)."""
    from recon.chunked import reconstruct_to_zarr

    kw = dict(center=CENTER, rows_per_chunk=4, pyramid_levels=3, progress=False, device="gpu")
    ref = _levels(reconstruct_to_zarr(scan, tmp_path / "f32.zarr", **kw))
    got = _levels(reconstruct_to_zarr(scan, tmp_path / "f16.zarr", dtype="float16", **kw))
    for level, (a, b) in enumerate(zip(got, ref)):
        assert a.dtype == np.float16
        np.testing.assert_allclose(a.astype(np.float32), b, rtol=1e-3, atol=1e-6 * np.abs(b).max(),
                                   err_msg=f"level {level}")


# ----------------------------------------------------------------------------- more chains
def _disc_volume(n_rows, n):
    """Attenuation per pixel of discs changing with the row (nz, n, n)."""
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    vol = np.zeros((n_rows, n, n), np.float32)
    for r in range(n_rows):
        for x0, y0, rad, mu in _row_discs(r % 8):
            vol[r] += mu * ((x - x0) ** 2 + (y - y0) ** 2 < (rad * n / 64) ** 2)
    return vol


def test_paganin_halo_matches_whole_stack(tmp_path, needs_recon):
    """Paganin on slabs with a halo equals Paganin on the whole detector."""
    pytest.importorskip("recon.phase")
    from recon._chunk_plan import paganin_halo
    from recon.algorithms import reconstruct
    from recon.chunked import open_volume, reconstruct_to_zarr
    from recon.phase import paganin_filter
    from recon.prep import minus_log, normalize
    from recon.simulate import simulate_scan

    theta = np.linspace(0, np.pi, 60, endpoint=False)
    phase = {"distance_mm": 5.0, "delta_beta": 50.0}
    proj = simulate_scan(_disc_volume(40, 48), theta, pixel_size_um=1.0, energy_kev=25.0, n_flats=4, n_darks=2)
    halo = paganin_halo(pixel_size_um=1.0, energy_kev=25.0, **phase)
    assert 8 <= halo <= 16  # the test needs slabs that do not see the whole detector
    out = reconstruct_to_zarr(proj, tmp_path / "p.zarr", center=23.5, phase=phase, rows_per_chunk=5,
                              progress=False, device="cpu")
    vol, attrs = open_volume(out)
    assert attrs["anodescope_run"]["plan"]["halo"] == halo
    t = normalize(proj.data.compute(), proj.flats.compute(), proj.darks.compute())
    t = paganin_filter(t, pixel_size_um=1.0, energy_kev=25.0, **phase)
    ref = reconstruct(minus_log(t), theta, 23.5, device="cpu")
    np.testing.assert_allclose(vol.compute(), ref, atol=2e-4 * np.abs(ref).max())


def test_extended_360_scan(tmp_path, needs_recon):
    """An off-centre 360-degree scan is stitched once and reconstructed like the whole stack."""
    pytest.importorskip("recon.extended")
    from recon.algorithms import reconstruct
    from recon.chunked import open_volume, reconstruct_to_zarr
    from recon.extended import sino_360_to_180
    from recon.prep import minus_log, normalize
    from recon.simulate import simulate_scan

    n = 96
    truth = _disc_volume(6, n) * 0.5
    theta = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    axis = 60.5  # detector of 64 columns, axis 3.5 columns from the right edge
    proj = simulate_scan(truth, theta, center=axis, width=64, n_flats=4, n_darks=2, incident_counts=20000)
    out = reconstruct_to_zarr(proj, tmp_path / "e.zarr", rows_per_chunk=2, progress=False, device="cpu")
    vol, attrs = open_volume(out)
    ov = attrs["anodescope_run"]["geometry"]["extended"]
    assert ov["side"] == "right" and abs(ov["overlap"] - 6.0) < 0.3  # 2 * (64 - 0.5 - 60.5)
    sino = minus_log(normalize(proj.data.compute(), proj.flats.compute(), proj.darks.compute()))
    wide, theta180, center = sino_360_to_180(sino, theta, overlap=ov["overlap"], side=ov["side"])
    assert attrs["center"] == pytest.approx(center, abs=1e-6)
    ref = reconstruct(wide, theta180, center, device="cpu")
    got = vol.compute()
    np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max())
    # and it is the phantom: compare the central n x n region with the truth
    m = got.shape[-1]
    lo = (m - n) // 2
    crop = got[:, lo : lo + n, lo : lo + n] if m >= n else got
    if m >= n:
        corr = np.corrcoef(crop.ravel(), truth.ravel())[0, 1]
        assert corr > 0.9


def test_rings_option_matches_whole_stack(tmp_path, scan, needs_recon):
    pytest.importorskip("recon.stripes")
    from recon.chunked import open_volume, reconstruct_to_zarr

    out = reconstruct_to_zarr(scan, tmp_path / "s.zarr", center=CENTER, rings="sorting", rows_per_chunk=4,
                              progress=False, device="cpu")
    ref = in_memory_volume(scan, CENTER, rings="sorting")
    np.testing.assert_allclose(open_volume(out)[0].compute(), ref, atol=1e-5 * np.abs(ref).max())
    # options reach the remover: a 5-px sorting filter gives another, equally chunk-exact result
    out5 = reconstruct_to_zarr(scan, tmp_path / "s5.zarr", center=CENTER, rings="sorting",
                               ring_options={"size": 5}, rows_per_chunk=4, progress=False, device="cpu")
    ref5 = in_memory_volume(scan, CENTER, rings="sorting", ring_options={"size": 5})
    np.testing.assert_allclose(open_volume(out5)[0].compute(), ref5, atol=1e-5 * np.abs(ref5).max())
    assert np.abs(ref5 - ref).max() > 1e-4 * np.abs(ref).max()


class _CountingRows:
    """Array-like that records every row range read from it (to check laziness)."""

    def __init__(self, array, log):
        self.array, self.log = array, log
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        rows = key[1] if isinstance(key, tuple) and len(key) > 1 else slice(None)
        self.log.append(range(*rows.indices(self.shape[1])))
        return self.array[key]


def test_each_row_read_once(tmp_path, scan, needs_recon):
    """Slabs read only their own rows: the scan is never loaded whole."""
    import dask.array as da
    from dataclasses import replace

    from recon.chunked import reconstruct_to_zarr

    log = []
    lazy = da.from_array(_CountingRows(np.asarray(scan.data), log), chunks=(-1, 1, -1), asarray=False)
    proj = replace(scan, data=lazy)
    reconstruct_to_zarr(proj, tmp_path / "l.zarr", center=CENTER, rows_per_chunk=3, progress=False, device="cpu")
    reads = [r for rng in log for r in rng]
    # every row once for its slab, plus the middle row once more for the geometry pass
    assert sorted(reads) == sorted(list(range(N_ROWS)) + [(N_ROWS - 1) // 2])


def test_distributed_client(tmp_path, scan, needs_recon):
    """With a dask.distributed client active, the slabs run on its workers."""
    distributed = pytest.importorskip("distributed")
    from recon.chunked import open_volume, reconstruct_to_zarr

    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        out = reconstruct_to_zarr(scan, tmp_path / "d.zarr", center=CENTER, rows_per_chunk=3,
                                  progress=False, device="cpu")
        assert any(key.startswith("slab-") for key in _task_keys(client))
    ref = in_memory_volume(scan, CENTER)
    np.testing.assert_allclose(open_volume(out)[0].compute(), ref, atol=1e-5 * np.abs(ref).max())


def _task_keys(client):
    """Keys of the tasks the scheduler has run (from its task-stream log)."""
    log = client.run_on_scheduler(lambda dask_scheduler: [str(t[0]) for t in dask_scheduler.transition_log])
    return log


def test_slab_stream_is_one_per_worker_thread(monkeypatch):
    """GPU slab tasks run on their thread's own non-blocking stream, made once per thread and
    reused by its later slabs; CPU tasks and machines without CuPy get no stream."""
    import threading
    from types import SimpleNamespace

    import recon._backend as backend
    from recon._chunk_tasks import _slab_stream

    made = []

    class FakeStream:
        def __init__(self, non_blocking=False):
            self.non_blocking = non_blocking
            made.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(backend, "cupy_or_none", lambda: SimpleNamespace(cuda=SimpleNamespace(Stream=FakeStream)))
    assert not isinstance(_slab_stream("cpu"), FakeStream)
    per_thread = {}

    def work(name):
        per_thread[name] = [_slab_stream("gpu") for _ in range(3)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 3 and all(s.non_blocking for s in made)
    for streams in per_thread.values():
        assert streams[0] is streams[1] is streams[2]
    assert len({id(v[0]) for v in per_thread.values()}) == 3
    monkeypatch.setattr(backend, "cupy_or_none", lambda: None)
    t = threading.Thread(target=lambda: per_thread.update(none=_slab_stream("gpu")))
    t.start()
    t.join()
    assert not isinstance(per_thread["none"], FakeStream)


def test_levels_are_written_dense(tmp_path):
    """Slab writes skip zarr's all-fill-value scan: every chunk written is stored, zeros too
    (what the arrays hold is unchanged)."""
    from recon import _omezarr

    out = tmp_path / "d.zarr"
    _omezarr.create_store(out, (4, 6, 6), 2, {}, task_levels=1)
    for level in (0, 1):
        arr = _omezarr.open_level(out, level)
        arr[:] = 0.0
        stored = [p for p in (out / str(level)).rglob("*") if p.is_file() and not p.name.startswith(".")]
        assert len(stored) == 2  # slabs of 2 rows at level 0, of 1 row at level 1
        np.testing.assert_array_equal(arr[:], 0.0)
