"""Readers: DXchange, NXtomo (with external links) and TIFF stacks; laziness; every error.

Truths used: the arrays written (by the writers or by hand with h5py/tifffile), direct h5py
reads of the real tooth.h5, and hand-written metadata in known units.
"""

from __future__ import annotations

import json
import pickle
import shutil

import dask
import h5py
import numpy as np
import pytest
import tifffile

import recon
from recon import InputError

THETA = np.linspace(0.0, np.pi, 16, endpoint=False)


@pytest.fixture(scope="module")
def scan():
    vol = 0.03 * np.stack([recon.shepp_logan(32), 0.5 * recon.shepp_logan(32), np.zeros((32, 32), np.float32)])
    return recon.simulate_scan(vol, THETA, n_flats=4, n_darks=3, pixel_size_um=1.7, energy_kev=25.5, seed=3)


def assert_same_scan(got, want, *, dtype=True):
    np.testing.assert_array_equal(got.data.compute(), want.data.compute())
    np.testing.assert_array_equal(got.flats.compute(), want.flats.compute())
    np.testing.assert_array_equal(got.darks.compute(), want.darks.compute())
    np.testing.assert_allclose(got.theta_rad, want.theta_rad, rtol=0, atol=1e-12)
    assert got.theta_rad.dtype == np.float64
    if dtype:
        assert got.data.dtype == want.data.dtype


def make_dx(path, data, *, flats=None, darks=None, theta=None, theta_units="degrees"):
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = data
        if flats is not None:
            f["/exchange/data_white"] = flats
        if darks is not None:
            f["/exchange/data_dark"] = darks
        if theta is not None:
            f["/exchange/theta"] = theta
            if theta_units:
                f["/exchange/theta"].attrs["units"] = theta_units
    return path


# ---------------------------------------------------------------------------- real data


def test_tooth_real_file(tooth_path):
    proj = recon.read_projections(tooth_path)
    assert proj.meta["format"] == "dxchange" and proj.dataset == "/exchange/data"
    assert proj.shape == (181, 2, 640) and (proj.n_angles, proj.n_rows, proj.n_cols) == (181, 2, 640)
    assert proj.flats.shape == (10, 2, 640) and proj.darks.shape == (10, 2, 640)
    assert proj.data.dtype == np.float32
    with h5py.File(tooth_path, "r") as f:
        np.testing.assert_array_equal(proj.data.compute(), f["/exchange/data"][()])
        np.testing.assert_array_equal(proj.flats.compute(), f["/exchange/data_white"][()])
        np.testing.assert_array_equal(proj.darks.compute(), f["/exchange/data_dark"][()])
    # 181 angles over 180 deg, endpoint excluded: last angle 180 * 180 / 181 deg
    assert proj.theta_rad[0] == 0.0
    assert proj.theta_rad[-1] == pytest.approx(np.deg2rad(180.0 * 180 / 181), abs=1e-6)
    assert np.all(np.diff(proj.theta_rad) > 0)
    assert proj.meta.get("sample_name") == "Tooth"
    assert proj.flats.mean().compute() > proj.darks.mean().compute()


def test_tooth_lazy_chunks_by_rows(tooth_path):
    proj = recon.read_dxchange(tooth_path, rows_chunk=1)
    assert proj.data.chunks == ((181,), (1, 1), (640,))
    assert proj.flats.chunks == ((10,), (1, 1), (640,))
    np.testing.assert_array_equal(proj.data[:, 1].compute(), proj.data.compute()[:, 1])


# ---------------------------------------------------------------------------- DXchange


def test_dxchange_roundtrip(tmp_path, scan):
    path = recon.write_dxchange(tmp_path / "scan.h5", scan)
    for reader in (recon.read_dxchange, recon.read_projections):
        proj = reader(path)
        assert_same_scan(proj, scan)
        assert proj.pixel_size_um == pytest.approx(1.7) and proj.energy_kev == pytest.approx(25.5)
        assert proj.source == str(path) and proj.meta["format"] == "dxchange"


def test_dxchange_units_attributes_are_honoured(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    path = make_dx(tmp_path / "u.h5", data, theta=[0.0, 0.5], theta_units="rad")
    with h5py.File(path, "a") as f:
        inst = f.create_group("/measurement/instrument")
        inst["detector/pixel_size_x"] = 6.5e-3
        inst["detector/pixel_size_x"].attrs["units"] = "mm"
        inst["detection_system/objective/magnification"] = 5.0
        inst["monochromator/energy"] = 25500.0
        inst["monochromator/energy"].attrs["units"] = "eV"
        inst["camera_motor_stack/setup/camera_distance"] = 0.25
        inst["camera_motor_stack/setup/camera_distance"].attrs["units"] = "m"
    proj = recon.read_dxchange(path)
    np.testing.assert_allclose(proj.theta_rad, [0.0, 0.5])
    assert proj.pixel_size_um == pytest.approx(6.5 / 5)  # camera pixel / magnification
    assert proj.energy_kev == pytest.approx(25.5)
    assert proj.meta["distance_mm"] == pytest.approx(250.0)
    assert proj.flats is None and proj.darks is None


def test_dxchange_resolution_preferred_and_2d_flat(tmp_path):
    data = np.ones((3, 2, 5), np.float32)
    path = make_dx(tmp_path / "r.h5", data, flats=2 * np.ones((2, 5), np.float32), theta=[0, 60, 120])
    with h5py.File(path, "a") as f:
        f["/measurement/instrument/detection_system/objective/resolution"] = 0.65  # um, no units
        f["/measurement/instrument/detector/pixel_size_x"] = 6.5
    proj = recon.read_dxchange(path)
    assert proj.pixel_size_um == pytest.approx(0.65)
    assert proj.flats.shape == (1, 2, 5)
    np.testing.assert_array_equal(proj.flats.compute(), 2.0)
    np.testing.assert_allclose(proj.theta_rad, np.deg2rad([0, 60, 120]))


def test_dxchange_empty_flats_read_as_none(tmp_path):
    path = make_dx(tmp_path / "e.h5", np.ones((3, 2, 5), np.float32), flats=np.zeros((0, 2, 5), np.float32),
                   darks=np.zeros((1, 2, 5), np.float32))
    proj = recon.read_dxchange(path)
    assert proj.flats is None and proj.darks.shape == (1, 2, 5) and "no_flats" in proj.meta


def test_meta_is_json_friendly(tmp_path, scan, tooth_path):
    nx = recon.write_nxtomo(tmp_path / "scan.nx", scan, distance_mm=20.0)
    tif = recon.write_tiff_stack(tmp_path / "stack", scan)
    for proj in (recon.read_projections(tooth_path), recon.read_projections(nx),
                 recon.read_projections(tif["proj"]), scan):
        assert json.loads(json.dumps(proj.meta))["format"] == proj.meta["format"]


def test_row_chunks_align_with_hdf5_chunks(tmp_path, monkeypatch):
    import recon._io_lazy as lazy

    data = np.arange(10 * 50 * 8, dtype=np.uint16).reshape(10, 50, 8)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/exchange/data", data=data, chunks=(1, 16, 8), compression="gzip")
    monkeypatch.setattr(lazy, "CHUNK_BYTES", 10 * 8 * 2 * 20)  # about 20 rows per dask chunk
    proj = recon.read_dxchange(path)
    assert proj.data.chunks[1] == (32, 18)  # rounded up to whole HDF5 chunks of 16 rows
    np.testing.assert_array_equal(proj.data.compute(), data)


def test_dxchange_without_theta_spreads_180(tmp_path):
    path = make_dx(tmp_path / "t.h5", np.zeros((12, 2, 3), np.float32))
    proj = recon.read_dxchange(path)
    np.testing.assert_allclose(proj.theta_rad, np.arange(12) * np.pi / 12)
    assert "theta_default" in proj.meta


def test_graph_is_picklable_and_keeps_no_file_open(tmp_path, scan):
    path = recon.write_dxchange(tmp_path / "scan.h5", scan)
    proj = recon.read_dxchange(path, rows_chunk=1)
    clone = pickle.loads(pickle.dumps(proj))
    np.testing.assert_array_equal(clone.data.compute(scheduler="threads"), scan.data.compute())
    # no handle is held between reads: the file can be opened for writing and even moved
    with h5py.File(path, "a") as f:
        f.attrs["touched"] = 1
    moved = tmp_path / "moved.h5"
    shutil.copy(path, moved)
    np.testing.assert_array_equal(proj.darks.compute(), scan.darks.compute())
    # many threads reading different chunks at once
    with dask.config.set(scheduler="threads", num_workers=4):
        total = (proj.data.astype(np.float64).sum() + proj.flats.astype(np.float64).sum()).compute()
    assert total == pytest.approx(scan.data.compute().sum(dtype=np.float64) + scan.flats.compute().sum(dtype=np.float64))


# ---------------------------------------------------------------------------- NXtomo


@pytest.mark.parametrize("external", [False, True])
def test_nxtomo_roundtrip(tmp_path, scan, external):
    path = recon.write_nxtomo(tmp_path / "scan.nx", scan, external_data=external, distance_mm=150.0)
    proj = recon.read_projections(path)
    assert proj.meta["format"] == "nxtomo" and proj.meta["entry"] == "/entry"
    assert proj.dataset == "/entry/instrument/detector/data"
    assert_same_scan(proj, scan)
    assert proj.pixel_size_um == pytest.approx(1.7) and proj.energy_kev == pytest.approx(25.5)
    assert proj.meta["distance_mm"] == pytest.approx(150.0)
    assert ("external_file" in proj.meta) == external
    # frames were split by image_key: compare with a direct h5py read
    with h5py.File(path, "r") as f:
        keys = f["/entry/instrument/detector/image_key"][()]
        frames = f["/entry/instrument/detector/data"][()]
    np.testing.assert_array_equal(proj.flats.compute(), frames[keys == 1])
    np.testing.assert_array_equal(proj.meta["projection_frames"], np.flatnonzero(keys == 0))
    clone = pickle.loads(pickle.dumps(proj.flats))
    np.testing.assert_array_equal(clone.compute(), frames[keys == 1])


def test_nxtomo_found_under_any_entry_with_data_links_and_radians(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 1000, (9, 2, 6)).astype(np.uint16)
    keys = np.array([2, 1, 0, 0, 3, 0, 0, 0, 1])  # 3 = invalid, skipped
    angles = np.linspace(0, 1, 9)
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f.create_group("notes")
        e = f.create_group("entry0002")
        e.attrs["NX_class"] = "NXentry"
        e["data/data"] = frames
        e["data/image_key"] = keys
        e["data/rotation_angle"] = angles
        e["data/rotation_angle"].attrs["units"] = "rad"
    proj = recon.read_projections(path)
    assert proj.meta["entry"] == "/entry0002" and proj.dataset == "/entry0002/data/data"
    np.testing.assert_array_equal(proj.data.compute(), frames[keys == 0])
    np.testing.assert_array_equal(proj.flats.compute(), frames[[1, 8]])
    np.testing.assert_array_equal(proj.darks.compute(), frames[[0]])
    np.testing.assert_allclose(proj.theta_rad, angles[keys == 0])
    assert proj.pixel_size_um is None and proj.energy_kev is None


def test_nxtomo_prefers_definition_and_entry_keyword(tmp_path):
    path = tmp_path / "two.nx"
    with h5py.File(path, "w") as f:
        for name, value, definition in (("entry0000", 1, "NXother"), ("entry0001", 2, "NXtomo")):
            e = f.create_group(name)
            e["definition"] = definition
            e["instrument/detector/data"] = np.full((2, 1, 3), value, np.uint16)
            e["instrument/detector/image_key"] = [0, 0]
    assert recon.read_nxtomo(path).data.compute().max() == 2
    assert recon.read_nxtomo(path, entry="entry0000").data.compute().max() == 1
    with pytest.raises(InputError, match="entry9"):
        recon.read_nxtomo(path, entry="entry9")


def test_nxtomo_missing_sibling_file(tmp_path, scan):
    path = recon.write_nxtomo(tmp_path / "scan.nx", scan, external_data=True)
    (tmp_path / "scan_data.h5").unlink()
    with pytest.raises(InputError) as err:
        recon.read_projections(path)
    msg = str(err.value)
    assert str(path) in msg and "/entry/instrument/detector/data" in msg and "scan_data.h5" in msg


def test_nxtomo_without_projection_frames(tmp_path):
    path = tmp_path / "noproj.nx"
    with h5py.File(path, "w") as f:
        f["entry/definition"] = "NXtomo"
        f["entry/instrument/detector/data"] = np.zeros((3, 2, 2), np.uint16)
        f["entry/instrument/detector/image_key"] = [1, 1, 2]
    with pytest.raises(InputError, match="no projection frames") as err:
        recon.read_nxtomo(path)
    assert str(path) in str(err.value)


def test_nxtomo_wrong_lengths(tmp_path):
    path = tmp_path / "len.nx"
    with h5py.File(path, "w") as f:
        f["entry/instrument/detector/data"] = np.zeros((4, 2, 2), np.uint16)
        f["entry/instrument/detector/image_key"] = [0, 0, 1]
    with pytest.raises(InputError, match="image_key") as err:
        recon.read_nxtomo(path)
    assert str(path) in str(err.value)
    with h5py.File(path, "a") as f:
        del f["entry/instrument/detector/image_key"]
        f["entry/instrument/detector/image_key"] = [0, 0, 1, 2]
        f["entry/sample/rotation_angle"] = [0.0, 1.0, 2.0]  # neither 4 frames nor 2 projections
    with pytest.raises(InputError, match="rotation_angle"):
        recon.read_nxtomo(path)


# ---------------------------------------------------------------------------- TIFF


def test_tiff_roundtrip_via_subfolders_and_explicit_dirs(tmp_path, scan):
    out = recon.write_tiff_stack(tmp_path / "stack", scan)
    theta_deg = np.loadtxt(out["theta_deg"])
    proj = recon.read_projections(tmp_path / "stack", theta_deg=theta_deg, pixel_size_um=3.0, energy_kev=40.0)
    assert proj.meta["format"] == "tiff" and proj.dataset == ""
    assert_same_scan(proj, scan)
    assert proj.pixel_size_um == 3.0 and proj.energy_kev == 40.0
    proj2 = recon.read_tiff_stack(out["proj"], flats_dir=out["flats"], darks_dir=out["darks"],
                                  theta_rad=scan.theta_rad, rows_chunk=1)
    assert proj2.data.chunks == ((16,), (1, 1, 1), (32,))
    assert_same_scan(proj2, scan)
    proj3 = recon.read_tiff_stack(out["proj"], angle_range_deg=360)
    np.testing.assert_allclose(proj3.theta_rad, np.arange(16) * 2 * np.pi / 16)
    assert proj3.flats is None and "theta_default" in proj3.meta
    assert pickle.loads(pickle.dumps(proj2.data)).compute().sum() == scan.data.compute().sum()


def test_tiff_natural_sort(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    for i in (1, 2, 10, 9, 100):  # lexical order would put 10 and 100 before 2
        tifffile.imwrite(folder / f"img_{i}.tiff", np.full((2, 3), i, np.uint16))
    (folder / "readme.txt").write_text("not an image")
    proj = recon.read_tiff_stack(folder)
    assert proj.data[:, 0, 0].compute().tolist() == [1, 2, 9, 10, 100]


def test_tiff_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no TIFF") as err:
        recon.read_projections(empty)
    assert str(empty) in str(err.value)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    tifffile.imwrite(mixed / "a_0.tif", np.zeros((4, 5), np.uint16))
    tifffile.imwrite(mixed / "a_1.tif", np.zeros((4, 6), np.uint16))
    with pytest.raises(InputError, match="a_1.tif"):
        recon.read_tiff_stack(mixed)
    good = tmp_path / "good"
    good.mkdir()
    for i in range(3):
        tifffile.imwrite(good / f"p{i}.tif", np.zeros((4, 5), np.uint16))
    flats = tmp_path / "flats"
    flats.mkdir()
    tifffile.imwrite(flats / "f0.tif", np.zeros((4, 6), np.uint16))
    with pytest.raises(InputError, match="flats") as err:
        recon.read_tiff_stack(good, flats_dir=flats)
    assert str(flats) in str(err.value)
    with pytest.raises(InputError, match="theta_deg has 2 angles"):
        recon.read_tiff_stack(good, theta_deg=[0, 1])
    with pytest.raises(InputError, match="not both"):
        recon.read_tiff_stack(good, theta_deg=[0, 1, 2], theta_rad=[0, 1, 2])
    with pytest.raises(FileNotFoundError):
        recon.read_tiff_stack(good, darks_dir=tmp_path / "nope")


# ---------------------------------------------------------------------------- HDF5 errors


@pytest.mark.parametrize("reader", [recon.read_projections, recon.read_dxchange, recon.read_nxtomo])
def test_missing_path(tmp_path, reader):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        reader(tmp_path / "missing.h5")


@pytest.mark.parametrize("reader", [recon.read_projections, recon.read_dxchange, recon.read_nxtomo])
def test_not_hdf5(tmp_path, reader):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n" * 50)
    with pytest.raises(InputError, match="not an HDF5 file") as err:
        reader(path)
    assert str(path) in str(err.value)


def test_truncated_file(tmp_path, scan):
    path = recon.write_dxchange(tmp_path / "scan.h5", scan)
    raw = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as err:
        recon.read_projections(cut)
    assert str(cut) in str(err.value) and "truncated" in str(err.value)


def test_missing_dataset(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["/exchange/other"] = np.zeros(3)
    with pytest.raises(InputError) as err:
        recon.read_dxchange(path)
    assert str(path) in str(err.value) and "/exchange/data" in str(err.value)
    with pytest.raises(InputError, match="neither DXchange"):
        recon.read_projections(path)
    with pytest.raises(InputError, match="no NXtomo entry"):
        recon.read_nxtomo(path)


def test_data_not_3d(tmp_path):
    path = make_dx(tmp_path / "2d.h5", np.zeros((4, 5), np.float32))
    with pytest.raises(InputError, match="expected 3-D") as err:
        recon.read_projections(path)
    assert str(path) in str(err.value) and "/exchange/data" in str(err.value)


@pytest.mark.parametrize("which,dataset", [("flats", "/exchange/data_white"), ("darks", "/exchange/data_dark")])
def test_flats_darks_shape_mismatch(tmp_path, which, dataset):
    bad = {which: np.zeros((2, 3, 7), np.float32)}
    path = make_dx(tmp_path / "mm.h5", np.zeros((5, 3, 6), np.float32), **bad)
    with pytest.raises(InputError) as err:
        recon.read_dxchange(path)
    msg = str(err.value)
    assert str(path) in msg and dataset in msg and "(3, 6)" in msg


def test_theta_length_mismatch(tmp_path):
    path = make_dx(tmp_path / "th.h5", np.zeros((5, 3, 6), np.float32), theta=np.arange(4.0))
    with pytest.raises(InputError) as err:
        recon.read_dxchange(path)
    msg = str(err.value)
    assert str(path) in msg and "/exchange/theta" in msg and "4 angles" in msg and "5 projections" in msg


def test_input_error_is_a_user_error():
    assert issubclass(InputError, ValueError) and InputError.user_error is True
