"""``anodescope segment`` / ``anodescope maps`` on a small simulated cell volume in OME-Zarr."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from pipelines.cli import main
from pipelines.samples import anode_free_cell

PX = 1.7


def _write_ngff(path, vol, voxel_size_um=PX):
    import zarr

    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    a = g.create_array("0", shape=vol.shape, dtype="float32", chunks=(16, 32, 32))
    a[...] = vol
    if voxel_size_um is not None:
        g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n, "type": "space", "unit": "micrometer"}
                                                             for n in "zyx"],
                                   "datasets": [{"path": "0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [voxel_size_um] * 3}]}]}]
        g.attrs["voxel_size_um"] = voxel_size_um
    return path


@pytest.fixture(scope="module")
def cell():
    c = anode_free_cell(shape=(40, 72, 72), seed=3, max_thickness_um=40.0)
    rng = np.random.default_rng(0)
    vol = ndimage.gaussian_filter(c.mu_per_px, 0.8) + rng.normal(0, 5e-5, c.mu_per_px.shape)
    return c, vol.astype(np.float32)


def test_segment_then_maps(cell, tmp_path, capsys):
    import zarr

    c, vol = cell
    store = _write_ngff(tmp_path / "cell.zarr", vol)
    rc = main(["segment", str(store), "--phases", "collector,li,electrolyte", "--capacity", "5.14",
               "--chunks", "16,32,32", "--quiet"])
    assert rc == 0
    root = zarr.open_group(str(store), mode="r")
    labels = root["labels"]["layers"]["0"][...]
    assert labels.shape == vol.shape and set(np.unique(labels)) <= {0, 1, 2, 3}
    assert root["labels"].attrs["labels"] == ["layers"]
    maps = root["maps"]
    assert maps.attrs["pixel_size_um"] == PX
    t = maps["thickness_um"][...]
    ok = np.isfinite(c.thickness_um) & maps["mask"][...]
    assert np.abs(t - c.thickness_um)[ok].mean() <= PX  # within one voxel of the truth
    out = tmp_path / "cell_maps"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["coulometric_mah_cm2"] == 5.14
    assert metrics["capacity_mah_cm2_mean"] == pytest.approx(np.nanmean(t[ok]) / 4.86, rel=0.05)
    for name in ("thickness_map.png", "topology_maps.png", "thickness_histogram.png"):
        assert (out / name).stat().st_size > 5000
    # maps again from the stored labels, other levelling and folder
    rc = main(["maps", str(store), "--level", "poly2", "--out", str(tmp_path / "again"), "--quiet"])
    assert rc == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["thickness_um"]["mean"] == pytest.approx(metrics["thickness_um"]["mean"], rel=1e-6)


def test_stripping_reader_layout(cell, tmp_path):
    """The maps group is what the stripping stage reads: 2-D thickness_um + pixel_size_um."""
    import segment

    c, vol = cell
    store = _write_ngff(tmp_path / "cell.zarr", vol)
    assert main(["segment", str(store), "--quiet"]) == 0
    maps = segment.read_maps(store / "maps")
    assert maps.thickness_um.ndim == 2 and maps.pixel_size_um == PX


def test_volume_without_voxel_size_is_a_user_error(cell, tmp_path, capsys):
    _, vol = cell
    store = _write_ngff(tmp_path / "novs.zarr", vol, voxel_size_um=None)
    assert main(["segment", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "novs.zarr" in err and "voxel size" in err and len(err.strip().splitlines()) == 1


def test_wrong_phase_order_is_a_user_error(cell, tmp_path, capsys):
    _, vol = cell
    store = _write_ngff(tmp_path / "cell.zarr", vol)
    assert main(["segment", str(store), "--phases", "collector,electrolyte,li", "--quiet"]) == 2
    assert "does not match the data" in capsys.readouterr().err


def test_volume_without_lithium_is_a_user_error(tmp_path, capsys):
    rng = np.random.default_rng(1)
    vol = np.full((30, 40, 40), 7.9e-4, np.float32)
    vol[:6] = 5.7e-5
    vol += rng.normal(0, 5e-5, vol.shape).astype(np.float32)
    store = _write_ngff(tmp_path / "noli.zarr", vol)
    assert main(["segment", str(store), "--quiet"]) == 2
    assert "no lithium found" in capsys.readouterr().err


def test_missing_inputs_are_user_errors(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "nothing.zarr"), "--quiet"]) == 2
    assert main(["maps", str(tmp_path / "nothing.zarr"), "--quiet"]) == 2
    _write_ngff(tmp_path / "raw.zarr", np.zeros((4, 4, 4), np.float32))
    assert main(["maps", str(tmp_path / "raw.zarr"), "--quiet"]) == 2
    assert "run 'anodescope segment' first" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "raw.zarr"), "--chunks", "1,2", "--quiet"]) == 2


def test_segment_with_a_trained_classifier_and_auto_axis(cell, tmp_path):
    import zarr

    import segment

    c, vol = cell
    den = segment.denoise(vol, median_size=3, device="cpu")
    truth = np.where(c.labels == 0, 5, c.labels).astype(np.uint8)
    ann = np.zeros_like(truth)
    for y in (20, 36, 52):
        ann[:, y] = truth[:, y]
    clf = segment.train_classifier(den, ann, class_names=("collector", "li", "electrolyte", "pore", "background"),
                                   n_estimators=20, n_jobs=1)
    model = clf.save(tmp_path / "model.pkl")
    store = _write_ngff(tmp_path / "cell.zarr", vol)
    assert main(["segment", str(store), "--classifier", str(model), "--axis", "auto", "--quiet"]) == 0
    root = zarr.open_group(str(store), mode="r")
    assert root["labels"]["layers"].attrs["axis"] == 0
    assert root["labels"]["layers"].attrs["segmentation"]["method"] == "classifier"
    t = root["maps"]["thickness_um"][...]
    ok = np.isfinite(c.thickness_um) & root["maps"]["mask"][...]
    assert np.abs(t - c.thickness_um)[ok].mean() <= PX


def test_maps_feed_the_strip_verb(cell, tmp_path):
    """Integration: ``anodescope strip VOLUME.zarr/maps`` reads what ``segment`` wrote."""
    pytest.importorskip("pipelines._cli_strip")
    _, vol = cell
    store = _write_ngff(tmp_path / "cell.zarr", vol)
    assert main(["segment", str(store), "--quiet"]) == 0
    out = tmp_path / "strip_out"
    assert main(["strip", str(store / "maps"), "--out", str(out)]) == 0
    assert (out / "stripping.json").exists()
    summary = json.loads((out / "stripping.json").read_text())
    assert summary["pixel_size_um"] == PX
