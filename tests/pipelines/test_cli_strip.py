"""``anodescope strip``: inputs (MAPS.zarr, .npy, .tif), outputs and the user-error contract."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from pipelines.cli import EXIT_USER_ERROR, main
from segment import synthetic_thickness_map, virtual_stripping

PX = 4.0


def write_maps_zarr(path, thickness_um, pixel_size_um=PX, *, mask=None, attr_on="group", name="thickness_um"):
    """Create a MAPS.zarr group as the segmentation stage writes it (zarr-python 3)."""
    import zarr

    grp = zarr.open_group(str(path), mode="w")
    arr = grp.create_array(name, shape=thickness_um.shape, dtype="float32")
    arr[...] = thickness_um
    if attr_on == "group":
        grp.attrs["pixel_size_um"] = pixel_size_um
    elif attr_on == "array":
        arr.attrs["pixel_size_um"] = pixel_size_um
    if mask is not None:
        m = grp.create_array("mask", shape=mask.shape, dtype="bool")
        m[...] = mask
    return path


@pytest.fixture(scope="module")
def thickness():
    t = synthetic_thickness_map((120, 110), PX, correlation_um=40.0, seed=5).astype(np.float32)
    t[:6, :6] = np.nan
    return t


def test_zarr_input_writes_curves_json_and_figures(tmp_path, thickness, capsys):
    mask = np.ones(thickness.shape, bool)
    mask[-10:, :] = False
    store = write_maps_zarr(tmp_path / "MAPS.zarr", thickness, mask=mask, attr_on="array")
    assert main(["strip", str(store), "--fractions", "0.5,0.85", "--current-density", "0.5"]) == 0
    out = tmp_path / "MAPS_strip"
    for name in ("stripping_curve.csv", "stripping.json", "stripping_curves.png", "stripping_snapshots.png"):
        assert (out / name).stat().st_size > 0
    assert not (out / "current.json").exists()
    # the files agree with a direct count on the same map
    info = json.loads((out / "stripping.json").read_text())
    valid = np.isfinite(thickness) & mask
    tv = thickness[valid].astype(np.float64)
    for row in info["fractions"]:
        d = row["depth_um"]
        assert np.minimum(tv, d).sum() / tv.sum() == pytest.approx(row["stripped_fraction"], abs=1e-9)
        assert np.count_nonzero(tv > d) / tv.size == pytest.approx(row["active_fraction"], abs=1e-12)
    with open(out / "stripping_curve.csv") as fh:
        rows = list(csv.DictReader(fh))
    ref = virtual_stripping(thickness, PX, mask=mask)
    assert len(rows) == ref.depth_um.size
    assert [int(r["n_islands"]) for r in rows] == ref.n_islands.tolist()
    assert float(rows[-1]["time_h"]) == pytest.approx(ref.capacity_mah_cm2 / 0.5, rel=1e-6)
    assert "85% stripped" in capsys.readouterr().out


def test_npy_and_tif_with_pixel_size_and_current_maps(tmp_path, thickness, capsys):
    import tifffile

    np.save(tmp_path / "t.npy", thickness)
    tifffile.imwrite(tmp_path / "t.tif", thickness)
    out_npy, out_tif = tmp_path / "a", tmp_path / "b"
    args = ["--pixel-size-um", str(PX), "--fractions", "0.6", "--electrolyte-thickness", "50",
            "--current-density", "1", "--critical-current-density", "3"]
    assert main(["strip", str(tmp_path / "t.npy"), "-o", str(out_npy), *args]) == 0
    assert main(["strip", str(tmp_path / "t.tif"), "-o", str(out_tif), *args]) == 0
    a = json.loads((out_npy / "current.json").read_text())
    b = json.loads((out_tif / "current.json").read_text())
    assert a["fractions"][0]["current_max_rel"] == pytest.approx(b["fractions"][0]["current_max_rel"])
    assert a["threshold_rel"] == pytest.approx(3.0)
    maps = np.load(out_npy / "current_maps.npz")
    rel = maps["stripped_60pct"]
    assert rel.shape == thickness.shape
    # relative current averages to 1 over the electrode (the applied current)
    assert np.nanmean(rel) == pytest.approx(1.0, rel=1e-5)
    assert (out_npy / "current_maps.png").stat().st_size > 0


def test_existing_results_need_overwrite(tmp_path, thickness, capsys):
    store = write_maps_zarr(tmp_path / "MAPS.zarr", thickness)
    out = tmp_path / "res"
    assert main(["strip", str(store), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["strip", str(store), "-o", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "--overwrite" in err and err.count("\n") == 1
    assert main(["strip", str(store), "-o", str(out), "--overwrite"]) == 0


def _err(capsys):
    err = capsys.readouterr().err
    assert err.startswith("anodescope strip: error:") and err.count("\n") == 1, err
    return err


def test_missing_file(tmp_path, capsys):
    assert main(["strip", str(tmp_path / "nope.zarr")]) == EXIT_USER_ERROR
    assert "nope.zarr" in _err(capsys)


def test_group_without_thickness(tmp_path, thickness, capsys):
    store = write_maps_zarr(tmp_path / "M.zarr", thickness, name="capacity_mah_cm2")
    assert main(["strip", str(store)]) == EXIT_USER_ERROR
    assert "thickness_um" in _err(capsys)


def test_no_pixel_size(tmp_path, thickness, capsys):
    store = write_maps_zarr(tmp_path / "M.zarr", thickness, attr_on=None)
    assert main(["strip", str(store)]) == EXIT_USER_ERROR
    assert "pixel_size_um" in _err(capsys)
    np.save(tmp_path / "t.npy", thickness)
    assert main(["strip", str(tmp_path / "t.npy")]) == EXIT_USER_ERROR
    assert "--pixel-size-um" in _err(capsys)


def test_negative_thickness(tmp_path, thickness, capsys):
    bad = thickness.copy()
    bad[50, 50] = -3.0
    store = write_maps_zarr(tmp_path / "M.zarr", bad)
    assert main(["strip", str(store)]) == EXIT_USER_ERROR
    assert "negative" in _err(capsys)


@pytest.mark.parametrize("fractions", ["0.5,1.2", "0", "abc", ","])
def test_bad_fractions(tmp_path, thickness, capsys, fractions):
    store = write_maps_zarr(tmp_path / "M.zarr", thickness)
    assert main(["strip", str(store), "--fractions", fractions]) == EXIT_USER_ERROR
    assert "--fractions" in _err(capsys)
    assert not (tmp_path / "M_strip").exists()


def test_critical_current_needs_applied_current(tmp_path, thickness, capsys):
    store = write_maps_zarr(tmp_path / "M.zarr", thickness)
    rc = main(["strip", str(store), "--electrolyte-thickness", "50", "--critical-current-density", "2"])
    assert rc == EXIT_USER_ERROR
    assert "--current-density" in _err(capsys)
