"""``anodescope hexitec``: cube, figures, events/s line and one-line user errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

import compton
from compton._sim_frames import sparse_frames
from pipelines.cli import main


def _interleave(frames):
    out = np.empty_like(frames)
    for n in range(80):  # value n of a row holds column (n % 4) * 20 + n // 4
        out[:, :, n] = frames[:, :, (n % 4) * 20 + n // 4]
    return out


@pytest.fixture(scope="module")
def frames():
    return sparse_frames(300, occupancy=0.02, fraction_double=0.2, seed=4)[0]


@pytest.fixture()
def bin_file(tmp_path, frames):
    path = tmp_path / "run.bin"
    _interleave(frames).astype("<u2").tofile(path)
    return path


ARGS = ["--dark", "100", "--threshold", "20", "--charge-sharing", "add", "--bin-width", "4",
        "--e-max", "4000", "--quiet", "--device", "cpu"]


def test_cli_writes_cube_and_figures(tmp_path, bin_file, frames, capsys):
    out = tmp_path / "cube.zarr"
    assert main(["hexitec", str(bin_file), "-o", str(out), *ARGS]) == 0
    text = capsys.readouterr().out
    assert "300 frames" in text and "events/s" in text
    cube = compton.read_cube(out)
    ref = compton.process_frames(frames, dark=100, threshold=20, charge_sharing="add",
                                 bin_width_kev=4, e_max_kev=4000, device="cpu")
    np.testing.assert_array_equal(cube.counts, ref.counts)
    np.testing.assert_array_equal(cube.rejected, ref.rejected)
    assert cube.units == "ADU"
    for name in ("cube_spectrum.png", "cube_counts.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # an existing output is never replaced without --overwrite
    assert main(["hexitec", str(bin_file), "-o", str(out), *ARGS]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["hexitec", str(bin_file), "-o", str(out), "--overwrite", "--no-figures", *ARGS]) == 0


def test_cli_calibrated_hdf5_output(tmp_path, bin_file, frames):
    compton.write_values(tmp_path / "g.txt", np.full((80, 80), 0.03))
    compton.write_values(tmp_path / "c.txt", np.zeros((80, 80)))
    out = tmp_path / "cube.h5"
    code = main(["hexitec", str(bin_file), "-o", str(out), "--gradients", str(tmp_path / "g.txt"),
                 "--intercepts", str(tmp_path / "c.txt"), "--dark", "100", "--threshold", "20",
                 "--quiet", "--device", "cpu", "--no-figures"])
    assert code == 0
    cube = compton.read_cube(out)
    assert cube.units == "keV" and cube.counts.shape == (80, 80, 1000)
    # the simulator's 59.54 and 93.9 keV lines land in the right bins
    spec = cube.summed_spectrum
    for line in (59.54, 93.9):
        window = np.abs(cube.bin_centres_kev - line) < 3
        peak = cube.bin_centres_kev[window][np.argmax(spec[window])]
        assert abs(peak - line) < 0.5


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("anodescope hexitec: error:")
    assert match in err
    return err


def test_cli_user_errors(tmp_path, bin_file, frames, capsys):
    out = str(tmp_path / "o.zarr")
    cut = tmp_path / "cut.bin"
    cut.write_bytes(bin_file.read_bytes()[:-6])
    _one_line_error(capsys, ["hexitec", str(cut), "-o", out, "--quiet"], "truncated")
    _one_line_error(capsys, ["hexitec", str(tmp_path / "nope.bin"), "-o", out], "nope.bin")
    (tmp_path / "g.txt").write_text("0.03\n" * 100)
    compton.write_values(tmp_path / "c.txt", np.zeros((80, 80)))
    _one_line_error(capsys, ["hexitec", str(bin_file), "-o", out, "--gradients", str(tmp_path / "g.txt"),
                             "--intercepts", str(tmp_path / "c.txt"), "--quiet"], "100 values; expected 6400")
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f["raw_frames"] = np.zeros((3, 80, 120), np.uint16)
    _one_line_error(capsys, ["hexitec", str(odd), "-o", out, "--quiet"], "not a multiple of 80")
    assert not (tmp_path / "o.zarr").exists()


def test_cli_as_a_program(tmp_path, bin_file):
    cut = tmp_path / "cut.bin"
    cut.write_bytes(bin_file.read_bytes()[:-6])
    res = subprocess.run([sys.executable, "-m", "pipelines", "hexitec", str(cut), "-o", str(tmp_path / "x.zarr")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "truncated" in res.stderr and len(res.stderr.strip().splitlines()) == 1
