"""Maps: capacity conversion, metrics, zarr round trip, OME-Zarr reading, figures."""

from __future__ import annotations

import numpy as np
import pytest

from segment import (UM_PER_MAH_CM2, InputError, capacity_map, layer_maps, read_maps, read_volume,
                     save_figures, write_maps)

PX = 1.7


def stack(li_px, *, nz=30, collector=4):
    """Labels of a collector | Li | electrolyte stack with a given Li thickness per column (voxels)."""
    z = np.arange(nz)[:, None, None]
    li_px = np.asarray(li_px)
    lab = np.where(z < collector, 1, np.where(z < collector + li_px[None], 2, 3)).astype(np.uint8)
    return lab


def test_capacity_of_lithium_from_first_principles():
    # 1 mAh cm^-2 = 3.6 C cm^-2 -> mol Li = 3.6 / 96485; volume = mol * 13.02 cm^3/mol per cm^2
    um = 3.6 / 96485.0 * 13.02 * 1e4
    assert UM_PER_MAH_CM2 == pytest.approx(um, rel=2e-3)
    assert float(capacity_map(24.3)) == pytest.approx(5.0)


def test_layer_maps_of_a_known_stack():
    rng = np.random.default_rng(0)
    li = rng.integers(0, 15, size=(20, 24))
    li[0, 0] = 0  # a bare spot
    m = layer_maps(stack(li), voxel_size_um=PX, coulometric_mah_cm2=2.0)
    np.testing.assert_allclose(m.thickness_um, li * PX, rtol=1e-6)
    np.testing.assert_allclose(m.thickness_voxels_um, li * PX, rtol=1e-6)
    np.testing.assert_allclose(m.capacity_mah_cm2, li * PX / 4.86, rtol=1e-6)
    assert m.metrics["thickness_um"]["mean"] == pytest.approx(li.mean() * PX)
    assert m.metrics["capacity_ratio_to_coulometric"] == pytest.approx(li.mean() * PX / 4.86 / 2.0)
    assert m.metrics["li_coverage_fraction"] == pytest.approx(np.mean(li > 0))
    # bottom interface is flat: zero topology and roughness
    assert np.nanmax(np.abs(m.topology_bottom_um)) < 1e-9
    assert m.metrics["interface_bottom"]["roughness"]["Ra"] < 1e-9
    # top topology = top height minus its fitted plane
    top = (4 + li) * PX
    yy, xx = np.mgrid[0:20, 0:24]
    a = np.stack([np.ones(li.size), yy.ravel(), xx.ravel()], 1)
    coef, *_ = np.linalg.lstsq(a, top.ravel(), rcond=None)
    np.testing.assert_allclose(m.topology_top_um, top - (a @ coef).reshape(top.shape), atol=1e-4)


def test_layer_maps_with_subvoxel_interfaces_and_mask():
    lab = stack(np.full((6, 7), 5))
    ip = np.stack([np.full((6, 7), 4.25), np.full((6, 7), 9.5)])
    mask = np.ones((6, 7), bool)
    mask[0] = False
    m = layer_maps(lab, voxel_size_um=2.0, interfaces_px=ip, mask=mask)
    assert np.isnan(m.thickness_um[0]).all()
    np.testing.assert_allclose(m.thickness_um[1:], (9.5 - 4.25) * 2.0)


def test_layer_maps_errors():
    with pytest.raises(InputError, match="voxel_size_um"):
        layer_maps(stack(np.ones((3, 3), int)), voxel_size_um=0)
    with pytest.raises(InputError, match="no lithium found"):
        layer_maps(stack(np.zeros((3, 3), int)), voxel_size_um=1.0)
    with pytest.raises(InputError, match="coulometric"):
        layer_maps(stack(np.ones((3, 3), int)), voxel_size_um=1.0, coulometric_mah_cm2=-1)


def test_write_read_maps_roundtrip_in_the_stripping_layout(tmp_path):
    import zarr

    li = np.arange(12).reshape(3, 4) % 5 + 1
    m = layer_maps(stack(li), voxel_size_um=PX)
    write_maps(tmp_path / "maps.zarr", m)
    g = zarr.open_group(str(tmp_path / "maps.zarr"), mode="r")
    assert g.attrs["pixel_size_um"] == PX and g["thickness_um"].ndim == 2
    assert g["thickness_um"].attrs["pixel_size_um"] == PX and g["mask"].dtype == bool
    back = read_maps(tmp_path / "maps.zarr")
    np.testing.assert_array_equal(back.thickness_um, m.thickness_um)
    np.testing.assert_array_equal(back.topology_top_um, m.topology_top_um)
    assert back.metrics["thickness_um"]["mean"] == pytest.approx(m.metrics["thickness_um"]["mean"])


def _ngff(path, vol, *, scale=None, attr=None, dtype="float32"):
    import zarr

    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    a = g.create_array("0", shape=vol.shape, dtype=dtype, chunks=(8, 16, 16))
    a[...] = vol
    if scale is not None:
        g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n, "type": "space", "unit": "micrometer"}
                                                             for n in "zyx"],
                                   "datasets": [{"path": "0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [scale] * 3}]}]}]
    if attr is not None:
        g.attrs["voxel_size_um"] = attr
    return path


def test_read_volume_voxel_size_from_multiscales_or_attribute(tmp_path):
    vol = np.random.default_rng(0).random((10, 20, 20)).astype(np.float32)
    d, vs, _ = read_volume(_ngff(tmp_path / "a.zarr", vol, scale=1.7))
    assert vs == 1.7 and d.shape == vol.shape
    np.testing.assert_array_equal(d.compute(), vol)
    _, vs, _ = read_volume(_ngff(tmp_path / "b.zarr", vol, attr=3.24))
    assert vs == 3.24


def test_read_volume_promotes_float16(tmp_path):
    """A float16 volume (recon --dtype float16) is read as float32, value for value."""
    vol = (np.random.default_rng(1).random((10, 20, 20)) * 0.01).astype(np.float16)
    d, vs, _ = read_volume(_ngff(tmp_path / "h.zarr", vol, attr=2.0, dtype="float16"))
    assert d.dtype == np.float32 and vs == 2.0
    np.testing.assert_array_equal(d.compute(), vol.astype(np.float32))


def test_read_volume_errors(tmp_path):
    vol = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(InputError, match="no voxel size"):
        read_volume(_ngff(tmp_path / "c.zarr", vol))
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="plain"):
        read_volume(tmp_path / "plain")


def test_figures_are_written(tmp_path):
    li = (np.add.outer(np.arange(16), np.arange(18)) % 9) + 2
    m = layer_maps(stack(li), voxel_size_um=PX)
    paths = save_figures(m, tmp_path)
    assert [p.name for p in paths] == ["thickness_map.png", "capacity_map.png", "topology_maps.png",
                                       "thickness_histogram.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
