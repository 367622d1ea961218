"""``anodescope compton``: EMF maps, regions, unmixing, calibration, figures, user errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import zarr

import compton
from pipelines.cli import main

EDGES = np.arange(60.0, 125.0, 0.2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("xcs")
    shape = (8, 20)
    labels = np.zeros(shape, int)
    labels[:, 10:] = 1                    # left: electrode; right: 40 % electrode + 60 % Li metal
    geo = compton.Geometry(shape=shape, pixel_pitch_um=1000.0)
    pure = [compton.simulate_cube([c], np.zeros(shape, int), EDGES, geometry=geo, counts_per_pixel=2e5,
                                  noise=False) for c in ("NMC622", "Li metal")]
    frac = np.where(labels[..., None] == 0, [1.0, 0.0], [0.4, 0.6])
    expect = frac[..., :1] * pure[0].counts + frac[..., 1:] * pure[1].counts
    cube = pure[0]
    cube.counts = np.random.default_rng(4).poisson(expect).astype(np.uint32)
    compton.write_cube(cube, d / "cube.zarr")
    (d / "geometry.yaml").write_text("e0_kev: 115\ntheta_centre_deg: 90\npixel_pitch_um: 1000\n"
                                     "pinhole_to_beam_mm: 160\npinhole_to_detector_mm: 150\n")
    np.save(d / "regions.npy", labels)
    (d / "fractions.csv").write_text("region,electrode,lithium\n0,1.0,0.0\n1,0.4,0.6\n")
    xs = [0.3, 0.6, 1.0]
    emfs = [float(compton.emf_from_spectra(compton.simulate_spectrum(compton.nmc622(x), EDGES, counts=3e6, seed=i),
                                           EDGES).emf) for i, x in enumerate(xs)]
    (d / "cal.csv").write_text("x,emf\n" + "".join(f"{x},{e}\n" for x, e in zip(xs, emfs)))
    return d, geo, labels


def test_cli_writes_maps_regions_components_and_figures(setup, capsys):
    d, geo, labels = setup
    out = d / "emf.zarr"
    code = main(["compton", str(d / "cube.zarr"), "-o", str(out), "--geometry", str(d / "geometry.yaml"),
                 "--regions", str(d / "regions.npy"), "--fractions", str(d / "fractions.csv"),
                 "--calibration", str(d / "cal.csv"), "--device", "cpu", "--overwrite"])
    assert code == 0
    assert "EMF maps 8x20" in capsys.readouterr().out
    g = zarr.open_group(str(out), mode="r")
    emf, sig = g["emf"][...], g["sigma_emf"][...]
    np.testing.assert_allclose(g["theta_rad"][...], geo.scattering_angles())
    ref = [compton.reference_emf("NMC622"), compton.reference_emf("Li")]
    # 0.8 keV resolution blurs the profile: compare with the simulator's own blurred truth
    truth = [float(compton.emf_from_spectra(compton.simulate_spectrum(c, EDGES, counts=1, noise=False), EDGES).emf)
             for c in ("NMC622", "Li metal")]
    m = labels == 0
    assert np.mean(emf[m]) == pytest.approx(truth[0], rel=0.01)
    assert np.std(emf[m]) == pytest.approx(np.mean(sig[m]), rel=0.4)
    assert truth[0] < ref[0] and truth[1] < ref[1]            # resolution lowers the EMF
    assert truth[0] < np.mean(emf[labels == 1]) < truth[1]    # the mixture lies between
    with open(d / "emf_regions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["n_pixels"]) for r in rows] == [80, 80]
    assert float(rows[0]["emf"]) == pytest.approx(truth[0], abs=4 * float(rows[0]["sigma"]) + 2e-3)
    with open(d / "emf_components.csv") as fh:
        comps = list(csv.DictReader(fh))
    assert [c["name"] for c in comps] == ["electrode", "lithium"]
    assert float(comps[0]["emf"]) == pytest.approx(truth[0], rel=0.01)
    assert float(comps[1]["emf"]) == pytest.approx(truth[1], rel=0.01)   # unmixed Li metal
    x = g["li_x"][...]
    assert np.mean(x[labels == 0]) == pytest.approx(1.0, abs=0.1)     # NMC622 is Li1.0
    assert g.attrs["calibration"]["r2"] > 0.98
    for name in ("emf_maps.png", "emf_profiles.png"):
        assert (d / name).stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["--background", "linear"], "needs at least one --sideband"),
    (["--fractions", "F.csv"], "--fractions needs --regions"),
    (["--geometry", "missing.yaml"], "geometry file not found"),
])
def test_cli_user_errors_exit_2(setup, argv, message, capsys):
    d, _, _ = setup
    out = d / f"bad{len(message)}.zarr"
    code = main(["compton", str(d / "cube.zarr"), "-o", str(out), "--no-figures", *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_missing_cube(tmp_path, capsys):
    assert main(["compton", str(tmp_path / "nope.zarr"), "-o", str(tmp_path / "o.zarr")]) == 2
    assert "nope.zarr" in capsys.readouterr().err
