"""Readers: OME-Zarr volume (+ labels and maps) from recon/segment writers, DXchange and NXtomo
scans, spectral cubes; data and physical scale compared with the packages' own readers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

import recon
import segment
from pipelines.napari import napari_get_reader
from pipelines.samples import anode_free_cell


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A small simulated cell scan in DXchange and NXtomo (1.7 um pixels)."""
    cell = anode_free_cell(shape=(40, 48, 48), n_particles=0, n_pores=0, seed=3)
    theta = np.linspace(0, np.pi, 60, endpoint=False)
    proj = recon.simulate_scan(cell.mu_per_px, theta, incident_counts=2e4, seed=1, pixel_size_um=1.7,
                               energy_kev=25.5)
    d = tmp_path_factory.mktemp("scan")
    dx = recon.write_dxchange(d / "cell_dx.h5", proj)
    nx = recon.write_nxtomo(d / "cell_nx.nxs", proj)
    return cell, proj, dx, nx


@pytest.fixture(scope="module")
def volume_store(scan, tmp_path_factory):
    """A reconstructed OME-Zarr with labels and maps written as the CLI writes them."""
    cell, proj, dx, _ = scan
    out = tmp_path_factory.mktemp("vol") / "cell.zarr"
    recon.reconstruct_to_zarr(dx, out, center=(48 - 1) / 2, progress=False, pyramid_levels=2)
    import zarr

    from pipelines._cli_segment import _labels_array, _write_label_attrs

    g, arr = _labels_array(out, cell.labels.shape, 0, 48)
    arr[...] = cell.labels
    info = {"interfaces_px": np.zeros((2, 48, 48)), "footprint": np.ones((48, 48), bool), "axis": 0}
    _write_label_attrs(g, 1.7, ("collector", "li", "electrolyte"), info)
    maps = segment.layer_maps(cell.labels, voxel_size_um=1.7, li_label=2)
    segment.write_maps(zarr.open_group(str(out), mode="a").require_group("maps"), maps)
    return out, maps


def test_not_ours(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    assert napari_get_reader(str(tmp_path / "a.txt")) is None
    assert napari_get_reader(str(tmp_path)) is None  # a plain folder
    assert napari_get_reader([]) is None


def test_ome_zarr_volume_labels_maps(volume_store):
    out, maps = volume_store
    reader = napari_get_reader(str(out))
    assert reader is not None
    layers = {kw["name"]: (d, kw, t) for d, kw, t in reader(str(out))}
    data, kw, kind = layers["cell"]
    assert kind == "image" and kw["multiscale"] and len(data) == 2
    assert all(hasattr(a, "dask") for a in data)  # lazy
    ref, attrs = recon.open_volume(out)
    np.testing.assert_array_equal(np.asarray(data[0][5]), np.asarray(ref[5]))
    np.testing.assert_allclose(kw["scale"], [1.7] * 3)
    assert kw["metadata"]["anodescope"]["voxel_size_um"] == pytest.approx(1.7)
    lab, lkw, lkind = layers["cell layers"]
    assert lkind == "labels" and lkw["metadata"]["anodescope"]["phases"] == ["collector", "li", "electrolyte"]
    np.testing.assert_array_equal(np.asarray(lab), anode_free_cell(shape=(40, 48, 48), n_particles=0,
                                                                   n_pores=0, seed=3).labels)
    t, tkw, _ = layers["cell Li thickness (µm)"]
    np.testing.assert_array_equal(t, maps.thickness_um)
    np.testing.assert_allclose(tkw["scale"], [1.7, 1.7])


def test_float16_volume_shown_as_float32(scan, tmp_path):
    """A volume stored as float16 opens as float32 images at every level, equal to the
    stored values."""
    _, _, dx, _ = scan
    out = recon.reconstruct_to_zarr(dx, tmp_path / "h.zarr", center=(48 - 1) / 2, progress=False,
                                    pyramid_levels=2, dtype="float16")
    import zarr

    (data, kw, kind), = napari_get_reader(str(out))(str(out))
    assert kind == "image" and len(data) == 2 and all(a.dtype == np.float32 for a in data)
    for level, a in enumerate(data):
        stored = zarr.open_array(str(out / str(level)), mode="r")[:]
        assert stored.dtype == np.float16
        np.testing.assert_array_equal(np.asarray(a), stored.astype(np.float32))


def test_viewer_opens_volume(volume_store, viewer):
    out, _ = volume_store
    for d, kw, kind in napari_get_reader(str(out))(str(out)):
        getattr(viewer, f"add_{kind}")(d, **kw)
    layer = viewer.layers["cell"]
    assert layer.multiscale and layer.scale[-1] == pytest.approx(1.7)
    assert "cell layers" in viewer.layers


@pytest.mark.parametrize("which", ["dx", "nx"])
def test_projections(scan, which):
    _, proj, dx, nx = scan
    path = dx if which == "dx" else nx
    reader = napari_get_reader(str(path))
    assert reader is not None
    [(data, kw, kind)] = reader(str(path))
    assert kind == "image" and hasattr(data, "dask")
    assert data.shape == proj.shape
    np.testing.assert_array_equal(np.asarray(data[7]), np.asarray(proj.data[7]))
    assert kw["scale"][-1] == pytest.approx(1.7)
    assert kw["metadata"]["anodescope"]["projections"].theta_rad.shape == (60,)


@pytest.mark.parametrize("fmt", ["zarr", "h5"])
def test_cube(tmp_path, fmt):
    import compton

    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, (6, 5, 40)).astype(np.uint32)
    cube = compton.Cube(counts=counts, bin_edges_kev=np.linspace(80, 88, 41), accepted=counts.sum(-1).astype(np.int64),
                        rejected=np.zeros((6, 5), np.int64))
    path = compton.write_cube(cube, tmp_path / f"cube.{fmt}")
    reader = napari_get_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    (c, ckw, _), (tot, _, _) = layers[0], layers[1]
    assert c.shape == (40, 6, 5)
    np.testing.assert_array_equal(c[:, 2, 3], counts[2, 3])  # energy axis first
    np.testing.assert_array_equal(tot, counts.sum(-1))
    assert ckw["scale"][0] == pytest.approx(0.2) and ckw["translate"][0] == pytest.approx(80.1)


def _spectra(rows=4, cols=5, bins=30):
    rng = np.random.default_rng(5)
    return rng.poisson(4.0, (rows, cols, bins)).astype(np.float64), 60.0 + 0.2 * np.arange(bins)


def test_hexitec_daq_h5(tmp_path):
    """A HEXITEC DAQ file (pixel_spectra, spectra_bins, summed_spectra; SCIENCE.md section 6)."""
    import h5py

    spec, lower = _spectra()
    path = tmp_path / "daq.h5"
    with h5py.File(path, "w") as f:
        f["pixel_spectra"] = spec
        f["spectra_bins"] = lower
        f["summed_spectra"] = spec.sum(axis=(0, 1))
    layers = napari_get_reader(str(path))(str(path))
    counts, kw, _ = layers[0]
    np.testing.assert_array_equal(counts, np.moveaxis(spec, -1, 0))
    assert kw["translate"][0] == pytest.approx(60.1)  # first bin centre, keV
    with h5py.File(tmp_path / "raw.h5", "w") as f:  # raw frames only: not a cube, not ours
        f["raw_frames"] = np.zeros((2, 4, 4), np.uint16)
    assert napari_get_reader(str(tmp_path / "raw.h5")) is None


def test_hxt(tmp_path):
    """A .hxt v3 file packed here byte by byte from the documented layout."""
    import struct

    spec, lower = _spectra()
    rows, cols, bins = spec.shape
    head = struct.pack("<8sQ9Ii100s16s3I", b"HEXITECH", 3, *([0] * 9), 4, b"test".ljust(100, b"\0"),
                       b"20260101_000000".ljust(16, b"\0"), rows, cols, bins)
    path = tmp_path / "spectra.hxt"
    path.write_bytes(head + lower.astype("<f8").tobytes() + spec.astype("<f8").tobytes())
    layers = napari_get_reader(str(path))(str(path))
    np.testing.assert_array_equal(layers[0][0], np.moveaxis(spec, -1, 0))
    np.testing.assert_array_equal(layers[1][0], spec.sum(axis=-1))
