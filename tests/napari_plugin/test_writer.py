"""Labels writer: round trip through the reader, inside a volume store and standalone."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from pipelines._errors import InputError
from pipelines.napari import napari_get_reader, write_labels


def _labels(shape=(6, 20, 24)):
    rng = np.random.default_rng(2)
    return rng.integers(0, 4, shape).astype(np.uint8)


def test_standalone_round_trip(tmp_path):
    lab = _labels()
    attrs = {"name": "edited layers", "scale": (1.7, 1.7, 1.7),
             "metadata": {"anodescope": {"phases": ["collector", "li", "electrolyte"], "axis": 0}}}
    [out] = write_labels(str(tmp_path / "edited.zarr"), lab, attrs)
    [(data, kw, kind)] = napari_get_reader(out)(out)
    assert kind == "labels"
    np.testing.assert_array_equal(np.asarray(data), lab)
    np.testing.assert_allclose(kw["scale"], (1.7, 1.7, 1.7))
    assert kw["metadata"]["anodescope"]["phases"] == ["collector", "li", "electrolyte"]


def test_into_volume_store_and_dask(tmp_path):
    import dask.array as da
    import zarr

    from recon._omezarr import create_store, multiscales

    store = tmp_path / "vol.zarr"
    g = create_store(store, (6, 20, 24), 3, {"multiscales": multiscales(1, 2.0, name="vol"), "voxel_size_um": 2.0})
    g["0"][...] = np.ones((6, 20, 24), np.float32)
    lab = _labels()
    [out] = write_labels(str(store), da.from_array(lab, chunks=(3, 10, 12)), {"name": "layers", "scale": (2.0,) * 3})
    assert out.endswith("labels/layers")
    assert zarr.open_group(str(store / "labels"), mode="r").attrs["labels"] == ["layers"]
    layers = {kw["name"]: d for d, kw, _ in napari_get_reader(str(store))(str(store))}
    np.testing.assert_array_equal(np.asarray(layers["vol layers"]), lab)


def test_writer_from_viewer(tmp_path, viewer):
    lab = _labels((12, 16))
    layer = viewer.add_labels(lab, name="brushed", scale=(0.5, 0.5))
    layer.data[3, 4] = 9  # an edit, as with the brush
    [out] = write_labels(str(tmp_path / "b.zarr"), layer.data, layer._get_state())
    [(data, kw, _)] = napari_get_reader(out)(out)
    assert np.asarray(data)[3, 4] == 9
    np.testing.assert_allclose(kw["scale"], (0.5, 0.5))


def test_rejects_float(tmp_path):
    with pytest.raises(InputError, match="integer labels"):
        write_labels(str(tmp_path / "x.zarr"), np.zeros((3, 3), np.float32), {"name": "x"})
    with pytest.raises(InputError, match=r"\.zarr"):
        write_labels(str(tmp_path / "x.tif"), np.zeros((3, 3), np.uint8), {"name": "x"})
