"""HEXITEC readers and cube files: round trips against independently written files."""

from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pytest

import compton
from compton._sim_frames import sparse_frames


def interleave(frames):
    """Pixel order -> .bin storage order, from the rule: value n of a row -> column (n%4)*20 + n//4."""
    out = np.empty_like(frames)
    for n in range(80):
        out[:, :, n] = frames[:, :, (n % 4) * 20 + n // 4]
    return out


@pytest.fixture(scope="module")
def frames():
    fr, _ = sparse_frames(50, occupancy=0.02, fraction_double=0.3, seed=9)
    return fr


@pytest.fixture()
def bin_file(tmp_path, frames):
    path = tmp_path / "run.bin"
    interleave(frames).astype("<u2").tofile(path)
    return path


def test_read_bin_deinterleaves(bin_file, frames):
    np.testing.assert_array_equal(compton.read_bin(bin_file), frames)
    np.testing.assert_array_equal(compton.read_bin(bin_file, start=10, count=5), frames[10:15])
    chunks = list(compton.iter_frames(bin_file, chunk_frames=16))
    assert [len(c) for c in chunks] == [16, 16, 16, 2]
    np.testing.assert_array_equal(np.concatenate(chunks), frames)


def test_process_bin_path_equals_in_memory(bin_file, frames):
    rng = np.random.default_rng(1)
    kw = dict(dark=rng.uniform(95, 105, (80, 80)), threshold=rng.uniform(15, 25, (80, 80)),
              gradients=rng.uniform(0.029, 0.031, (80, 80)), intercepts=rng.uniform(-1, 1, (80, 80)),
              next_frame=True, charge_sharing="add", device="cpu")
    a = compton.process_frames(bin_file, chunk_frames=7, **kw)
    b = compton.process_frames(frames, **kw)
    assert a.counts.sum() > 1000
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.rejected, b.rejected)


def test_truncated_bin_is_an_input_error(tmp_path, frames):
    path = tmp_path / "cut.bin"
    interleave(frames).tofile(path)
    with open(path, "ab") as fh:
        fh.write(b"\0" * 100)
    with pytest.raises(compton.InputError, match="truncated.*50 whole frames and 100 bytes"):
        compton.process_frames(path, device="cpu")
    with pytest.raises(compton.InputError, match="cut.bin"):
        compton.read_bin(path)


def test_hdf5_raw_frames(tmp_path, frames):
    path = tmp_path / "daq.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/raw_frames", data=frames)
    np.testing.assert_array_equal(np.concatenate(list(compton.iter_frames(path, chunk_frames=20))), frames)
    a = compton.process_frames(path, dark=100, threshold=20, device="cpu", bin_width_kev=8, e_max_kev=4000)
    b = compton.process_frames(frames, dark=100, threshold=20, device="cpu", bin_width_kev=8, e_max_kev=4000)
    np.testing.assert_array_equal(a.counts, b.counts)


def test_hdf5_frames_not_multiple_of_80(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw_frames", data=np.zeros((2, 80, 100), np.uint16))
    with pytest.raises(compton.InputError, match="odd.h5.*not a multiple of 80"):
        compton.process_frames(path, device="cpu")


def test_read_processed_hexitec_h5(tmp_path):
    rng = np.random.default_rng(0)
    spectra = rng.poisson(3, (80, 80, 50)).astype(np.float64)
    bins = 10.0 + 0.5 * np.arange(50)
    path = tmp_path / "proc.h5"
    with h5py.File(path, "w") as f:
        f["spectra_bins"] = bins
        f["summed_spectra"] = spectra.sum(axis=(0, 1))
        f["pixel_spectra"] = spectra
    cube = compton.read_hexitec_h5(path)
    np.testing.assert_array_equal(cube.counts, spectra)
    np.testing.assert_allclose(cube.bin_edges_kev, 10.0 + 0.5 * np.arange(51))
    np.testing.assert_array_equal(cube.accepted, spectra.sum(axis=2))
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        f["raw_frames"] = np.zeros((1, 80, 80), np.uint16)
    with pytest.raises(compton.InputError, match="raw_frames"):
        compton.read_hexitec_h5(tmp_path / "raw.h5")


def _write_hxt(path, spectra, labels, prefix=b"scan_"):
    rows, cols, nb = spectra.shape
    with open(path, "wb") as fh:
        fh.write(b"HEXITECH")
        fh.write(struct.pack("<Q", 3))
        fh.write(struct.pack("<9I", *range(9)))
        fh.write(struct.pack("<i", len(prefix)))
        fh.write(prefix.ljust(100, b"\0"))
        fh.write(b"20260101_120000\0")
        fh.write(struct.pack("<3I", rows, cols, nb))
        fh.write(np.asarray(labels, "<f8").tobytes())
        fh.write(np.asarray(spectra, "<f8").tobytes())  # row-major [rows, cols, bins]


def test_read_hxt(tmp_path):
    rng = np.random.default_rng(4)
    spectra = rng.poisson(2, (80, 80, 30)).astype(float)
    spectra[3, 70, 5] = 999  # a marked pixel: checks the row/col order
    labels = np.arange(30) * 0.25
    _write_hxt(tmp_path / "a.hxt", spectra, labels)
    cube = compton.read_hxt(tmp_path / "a.hxt")
    assert cube.counts[3, 70, 5] == 999
    np.testing.assert_array_equal(cube.counts, spectra)
    np.testing.assert_allclose(cube.bin_edges_kev[:-1], labels)
    assert cube.attrs["file_prefix"] == "scan_"
    with open(tmp_path / "b.hxt", "wb") as fh:
        fh.write((tmp_path / "a.hxt").read_bytes()[:-8])
    with pytest.raises(compton.InputError, match="b.hxt"):
        compton.read_hxt(tmp_path / "b.hxt")


@pytest.mark.parametrize("name", ["cube.zarr", "cube.h5"])
def test_cube_round_trip_with_energy_axis(tmp_path, frames, name):
    cube = compton.process_frames(frames, dark=100, threshold=20, gradients=0.03, intercepts=-0.2,
                                  charge_sharing="discriminate", bin_width_kev=0.5,
                                  e_min_kev=10.0, e_max_kev=110.0, device="cpu")
    path = compton.write_cube(cube, tmp_path / name)
    back = compton.read_cube(path)
    np.testing.assert_array_equal(back.counts, cube.counts)
    np.testing.assert_array_equal(back.bin_edges_kev, cube.bin_edges_kev)
    np.testing.assert_array_equal(back.accepted, cube.accepted)
    np.testing.assert_array_equal(back.rejected, cube.rejected)
    assert back.units == "keV" and back.n_frames == 50
    if name.endswith(".h5"):
        with h5py.File(path) as f:
            axes = json.loads(f.attrs["axes"])
            summed = f["summed_spectrum"][()]
    else:
        import zarr

        g = zarr.open_group(str(path), mode="r")
        axes = g.attrs["axes"]
        summed = g["summed_spectrum"][...]
    energy = axes[2]
    assert energy["name"] == "Energy" and energy["units"] == "keV" and energy["navigate"] is False
    assert energy["scale"] == pytest.approx(0.5) and energy["offset"] == pytest.approx(10.25)
    assert energy["size"] == 200 and axes[0]["navigate"] and axes[1]["navigate"]
    np.testing.assert_array_equal(summed, cube.counts.sum(axis=(0, 1)))
    with pytest.raises(FileExistsError):
        compton.write_cube(cube, path)
    compton.write_cube(cube, path, overwrite=True)


def test_values_files(tmp_path):
    arr = np.random.default_rng(3).normal(size=(80, 80))
    compton.write_values(tmp_path / "v.txt", arr)
    lines = (tmp_path / "v.txt").read_text().split()
    assert len(lines) == 6400 and float(lines[81]) == arr[1, 1]  # row-major, exact
    np.testing.assert_array_equal(compton.read_values(tmp_path / "v.txt"), arr)
    (tmp_path / "short.txt").write_text("\n".join(["1.0"] * 6399))
    with pytest.raises(compton.InputError, match=r"short.txt.*6399 values; expected 6400"):
        compton.read_values(tmp_path / "short.txt")
    with pytest.raises(compton.InputError, match="short.txt"):
        compton.process_frames(np.zeros((1, 80, 80), np.uint16), gradients=tmp_path / "short.txt",
                               intercepts=tmp_path / "v.txt", device="cpu")
    (tmp_path / "bad.txt").write_text("1.0\nabc\n")
    with pytest.raises(compton.InputError, match="line 2"):
        compton.read_values(tmp_path / "bad.txt")
