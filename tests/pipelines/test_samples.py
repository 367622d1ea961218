"""Embedded sample data: deterministic, with the requested statistics and real attenuation."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.samples import MATERIALS, anode_free_cell, attenuation_per_cm


@pytest.mark.parametrize(
    ("material", "energy_kev", "nist_mass_att_cm2_g"),
    # NIST XCOM / X-ray mass attenuation coefficient tables (total with coherent)
    [("grafoil", 20.0, 0.4420), ("copper", 20.0, 33.79), ("copper", 30.0, 10.90)],
)
def test_attenuation_matches_nist_tables(material, energy_kev, nist_mass_att_cm2_g):
    density = MATERIALS[material][1]
    mass_att = attenuation_per_cm(material, energy_kev) / density
    assert mass_att == pytest.approx(nist_mass_att_cm2_g, rel=0.03)


def test_cell_is_deterministic_and_has_requested_statistics():
    a = anode_free_cell(shape=(48, 96, 96), seed=3)
    b = anode_free_cell(shape=(48, 96, 96), seed=3)
    c = anode_free_cell(shape=(48, 96, 96), seed=4)
    np.testing.assert_array_equal(a.mu_per_px, b.mu_per_px)
    assert not np.array_equal(a.thickness_um, c.thickness_um)
    t = a.thickness_um[~np.isnan(a.thickness_um)]
    assert t.mean() == pytest.approx(25.0, abs=0.05)
    assert t.min() >= 8.0 - 1e-6 and t.max() <= 50.0 + 1e-6
    assert set(np.unique(a.labels)) == {0, 1, 2, 3, 4}


def test_lithium_voxels_match_thickness_truth_to_a_voxel():
    cell = anode_free_cell(shape=(48, 96, 96), seed=1)
    inside = ~np.isnan(cell.thickness_um)
    counted = (cell.labels == 2).sum(axis=0) * cell.pixel_size_um
    err = np.abs(counted[inside] - cell.thickness_um[inside])
    assert err.max() <= cell.pixel_size_um
    # lithium is the weakest-absorbing solid phase, as in the real cells
    mu = cell.mu_per_cm
    assert mu["li"] < mu["collector"] < mu["electrolyte"]


def test_too_thin_volume_is_refused():
    with pytest.raises(ValueError, match="too small"):
        anode_free_cell(shape=(20, 64, 64))


# --------------------------------------------------------------------------- two cell states

import json  # noqa: E402

import xraylib  # noqa: E402

from pipelines.samples import anode_free_cell_states, hexitec_frames, make_sample_study, xcs_acquisition  # noqa: E402

SMALL = {"shape": (40, 72, 72), "pixel_size_um": 2.0, "n_particles": 15, "n_pores": 8}


@pytest.fixture(scope="module", params=["relaxed", "void"])
def states(request):
    return anode_free_cell_states(**SMALL, stripped_um=12.0, stack=request.param, seed=5)


def test_states_share_everything_but_the_lithium(states):
    plated, stripped = states["plated"], states["stripped"]
    changed = plated.labels != stripped.labels
    assert changed.any()
    # only voxels that held lithium change, into collector (stack relaxed) or air gap (void)
    assert np.all(plated.labels[changed] == 2)
    assert set(np.unique(stripped.labels[changed])) == {1 if stripped.info["stack"] == "relaxed" else 4}
    np.testing.assert_array_equal(plated.mu_per_px[~changed], stripped.mu_per_px[~changed])
    # electrolyte, particles, pores and the cell outline are untouched
    for lab in (0, 3):
        np.testing.assert_array_equal(plated.labels == lab, stripped.labels == lab)
    assert (stripped.labels == 2).sum() < (plated.labels == 2).sum()
    np.testing.assert_array_equal(np.isnan(plated.thickness_um), np.isnan(stripped.thickness_um))


def test_stripped_capacity_is_the_requested_one(states):
    plated, stripped = states["plated"], states["stripped"]
    inside = ~np.isnan(plated.thickness_um)
    t0, t1 = plated.thickness_um[inside].astype(float), stripped.thickness_um[inside].astype(float)
    assert np.all(t1 <= t0 + 1e-6) and np.all(t1 >= 0)
    assert (t0 - t1).mean() == pytest.approx(12.0, abs=1e-4)
    assert stripped.info["removed_mah_cm2"] == pytest.approx(12.0 / 4.86, rel=1e-6)
    # the lithium voxels tell the same story to within a voxel (column by column and on average)
    px = plated.pixel_size_um
    n0 = (plated.labels == 2).sum(axis=0)[inside] * px
    n1 = (stripped.labels == 2).sum(axis=0)[inside] * px
    assert np.abs(n1 - t1).max() <= px
    assert abs((n0 - n1).mean() - 12.0) <= px
    # SCIENCE.md section 4 in plain Python: uniform depth d removed where Li remains
    d = stripped.info["depth_um"]
    assert sum(min(t, d) for t in t0) / len(t0) == pytest.approx(12.0, abs=1e-4)
    np.testing.assert_allclose(t1, np.maximum(t0 - d, 0.0), atol=1e-4)
    assert stripped.info["active_fraction"] == pytest.approx(np.mean(t0 > d))
    assert 0 < stripped.info["active_fraction"] < 1  # islands: some columns ran empty


def test_nonuniform_stripping_keeps_the_requested_mean():
    cells = anode_free_cell_states(**SMALL, stripped_um=10.0, nonuniformity=0.6, seed=2)
    t0, t1 = cells["plated"].thickness_um, cells["stripped"].thickness_um
    removed = (t0 - t1)[~np.isnan(t0)]
    assert removed.mean() == pytest.approx(10.0, abs=1e-4)
    assert removed.std() > 1.0  # not a uniform depth
    assert np.all(removed >= -1e-6)


@pytest.mark.parametrize("formula_key", [("collector", "C", 1.1), ("li", "Li", 0.534),
                                         ("electrolyte", "Li6PS5Cl", 1.64), ("pore", "N0.78O0.21Ar0.01", 0.0012)])
def test_attenuation_values_are_xraylibs(states, formula_key):
    phase, formula, density = formula_key
    label = {"collector": 1, "li": 2, "electrolyte": 3, "pore": 4}[phase]
    for cell in states.values():
        expected = xraylib.CS_Total_CP(formula, cell.energy_kev) * density * cell.pixel_size_um * 1e-4
        values = cell.mu_per_px[cell.labels == label]
        assert values.size > 0
        if phase == "electrolyte":  # its particles are 10 % denser
            dense = np.isclose(values, 1.1 * expected, rtol=1e-6)
            assert 0 < dense.sum() < 0.5 * values.size
            values = values[~dense]
        np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_states_refuse_bad_requests():
    with pytest.raises(ValueError, match="stripped_um"):
        anode_free_cell_states(**SMALL, stripped_um=30.0)
    with pytest.raises(ValueError, match="stack"):
        anode_free_cell_states(**SMALL, stack="sponge")
    with pytest.raises(ValueError, match="nonuniformity"):
        anode_free_cell_states(**SMALL, nonuniformity=2.0)


# --------------------------------------------------------------------------- XCS and HEXITEC


@pytest.fixture(scope="module")
def xcs():
    return xcs_acquisition(states_of_charge=(0.0, 0.5, 1.0), shape=(24, 24), counts_per_pixel=2e4, seed=1)


def test_xcs_cathode_emf_follows_lithiation_like_the_reference(xcs):
    from compton.simulate import nmc622, reference_emf

    socs = sorted(xcs.cubes)
    assert [xcs.lithiation[s] for s in socs] == pytest.approx([1.0, 0.675, 0.35])
    ref = [reference_emf(nmc622(xcs.lithiation[s])) for s in socs]
    exp = [xcs.expected_emf[s][3] for s in socs]
    assert np.argsort(exp).tolist() == np.argsort(ref).tolist() == [2, 1, 0]
    for s in socs:
        assert xcs.reference_emf[s][3] == pytest.approx(reference_emf(nmc622(xcs.lithiation[s])))
        # anode and separator do not change; regions ordered as their reference profiles
        assert xcs.expected_emf[s][1] == pytest.approx(xcs.expected_emf[socs[0]][1])
        r = xcs.reference_emf[s]
        e = xcs.expected_emf[s]
        assert np.argsort([e[1], e[2], e[3]]).tolist() == np.argsort([r[1], r[2], r[3]]).tolist()


def test_xcs_noisy_cubes_give_the_expected_region_emf(xcs):
    import compton

    for soc, cube in xcs.cubes.items():
        assert cube.counts.dtype == np.uint32 and cube.counts.shape[:2] == (24, 24)
        assert set(np.unique(xcs.labels)) == {-1, 1, 2, 3}
        res = compton.emf_map(cube, geometry=xcs.geometry)
        for k in (1, 2, 3):
            m = (xcs.labels == k) & np.isfinite(res.e_low) & np.isfinite(res.e_high)
            el, eh = res.e_low[m].sum(), res.e_high[m].sum()
            var = ((res.sigma_low[m] ** 2).sum() / el**2 + (res.sigma_high[m] ** 2).sum() / eh**2
                   - 2 * res.cov[m].sum() / (el * eh))
            sigma = el / eh * np.sqrt(var)
            assert abs(el / eh - xcs.expected_emf[soc][k]) < 5 * sigma
    # the charged and discharged cathodes differ by far more than the noise
    assert xcs.expected_emf[0.0][3] - xcs.expected_emf[1.0][3] > 0.02


def test_hexitec_frames_calibrate_to_the_lines():
    hx = hexitec_frames(n_frames=400, seed=3)
    assert hx.frames.shape == (400, 80, 80) and hx.frames.dtype == np.uint16
    hit = hx.frames > 300
    energy = (hx.frames * hx.gradients[None] + hx.intercepts[None])[hit]
    counts, edges = np.histogram(energy, bins=np.arange(10.0, 120.0, 0.5))
    centres = 0.5 * (edges[:-1] + edges[1:])
    top = centres[np.argmax(counts)]
    assert top == pytest.approx(93.9, abs=0.5)
    window = (centres > 55) & (centres < 65)
    assert centres[window][np.argmax(counts[window])] == pytest.approx(59.54, abs=0.5)
    with pytest.raises(ValueError, match="80"):
        hexitec_frames(n_frames=10, shape=(64, 64))


# --------------------------------------------------------------------------- the sample study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return make_sample_study(out, size="test", seed=0)


def test_study_config_and_sheet_list_the_same_scans(study):
    import yaml

    out = study.parent
    config = yaml.safe_load(study.read_text())
    assert config["study"] and config["out"] == "results"
    ids = [s["id"] for s in config["scans"]]
    assert ids == ["plated", "stripped", "xcs_soc000", "xcs_soc050", "xcs_soc100", "hexitec"]
    lines = (out / "scans.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    rows = [dict(zip(head, line.split("\t"))) for line in lines[1:]]
    assert [r["id"] for r in rows] == ids
    for scan, row in zip(config["scans"], rows):
        assert {k: v for k, v in row.items() if v != ""} == {k: str(v) for k, v in scan.items()}
        for key in ("projections", "truth_thickness", "frames", "cube", "gradients", "intercepts", "geometry",
                    "regions"):
            if key in scan:
                assert (out / scan[key]).exists(), scan[key]
        assert scan["kind"] in ("tomo", "xcs")
        if scan["kind"] == "xcs":
            # cube scans carry their scattering geometry; the frames-only scan is a detector
            # acquisition (hexitec stage only)
            assert ("cube" in scan and "geometry" in scan) or ("frames" in scan and "geometry" not in scan)


def test_study_scans_read_back_with_the_right_metadata(study):
    import recon

    out = study.parent
    truth = json.loads((out / "truth.json").read_text())
    tomo = truth["tomography"]
    for state in ("plated", "stripped"):
        proj = recon.read_projections(out / "data" / f"{state}.h5")
        assert proj.meta["format"] == "dxchange"
        assert proj.shape == (180, 28, 64)
        np.testing.assert_allclose(proj.theta_rad, np.linspace(0, np.pi, 180, endpoint=False), atol=1e-9)
        assert proj.pixel_size_um == pytest.approx(tomo["pixel_size"]["value"]) == pytest.approx(3.4)
        assert proj.energy_kev == pytest.approx(25.5)
        # parallel beam: every projection of a slice integrates the same attenuation (its mass)
        data, flat, dark = (np.asarray(a, float) for a in (proj.data, proj.flats.mean(axis=0), proj.darks.mean(axis=0)))
        p = -np.log(np.clip(data - dark, 1, None) / (flat - dark))
        p[:, :, [64 // 3, 2 * 64 // 3 + 5]] = 0  # the simulated defective columns
        cells = anode_free_cell_states(shape=(28, 64, 64), pixel_size_um=3.4, n_particles=10, n_pores=6, seed=0)
        mu = cells[state].mu_per_px.astype(float)
        mu[:, :, [64 // 3, 2 * 64 // 3 + 5]] = 0
        # mass of each slice seen by the detector, against the volume's mass without the two columns' share
        mass = p.sum(axis=2).mean(axis=0)
        truth_mass = mu.sum(axis=(1, 2))
        heavy = truth_mass > 0.2 * truth_mass.max()
        np.testing.assert_allclose(mass[heavy], truth_mass[heavy], rtol=0.1)
        t = np.load(out / "data" / f"{state}_thickness_um.npy")
        assert np.nanmean(t) == pytest.approx(tomo["states"][state]["mean_thickness"]["value"], rel=1e-6)
    assert tomo["true_center"] == {"value": 31.5, "unit": "px", "description": "rotation axis, detector column"}
    assert tomo["states"]["stripped"]["stripped"]["value"] == pytest.approx(
        tomo["states"]["plated"]["mean_thickness"]["value"] - tomo["states"]["stripped"]["mean_thickness"]["value"],
        abs=1e-3)


def test_study_xcs_files_match_the_truth(study):
    import compton
    from compton.simulate import nmc622, reference_emf

    out = study.parent
    truth = json.loads((out / "truth.json").read_text())["xcs"]
    labels = np.load(out / truth["regions_file"])
    geo = compton.read_geometry(out / truth["geometry"], shape=labels.shape)
    assert geo.e0_kev == 115.0 and geo.theta_centre_rad == pytest.approx(np.pi / 2)
    cathode = []
    for sid, entry in truth["scans"].items():
        cube = compton.read_cube(out / entry["cube"])
        assert cube.counts.shape[:2] == labels.shape
        x = entry["cathode_lithiation"]["value"]
        assert entry["reference_emf"]["cathode"]["value"] == pytest.approx(reference_emf(nmc622(x)))
        assert entry["expected_emf"]["cathode"]["unit"] == "1"
        cathode.append((entry["state_of_charge"]["value"], entry["expected_emf"]["cathode"]["value"]))
    assert [s for s, _ in sorted(cathode, key=lambda r: -r[1])] == [0.0, 0.5, 1.0]


def test_study_is_deterministic_idempotent_and_atomic(study, tmp_path):
    import compton
    import h5py

    out = study.parent
    stamp = {p: p.stat().st_mtime_ns for p in (out / "data").iterdir()}
    again = make_sample_study(out, size="test", seed=0)  # everything complete: reused
    assert again == study
    assert {p: p.stat().st_mtime_ns for p in (out / "data").iterdir()} == stamp
    # an interrupted run leaves <name>.part behind: the next call replaces it
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "plated.h5.part").write_bytes(b"half a file")
    make_sample_study(tmp_path, size="test", seed=0)
    assert not list((tmp_path / "data").glob("*.part"))
    for name in ("plated.h5", "stripped.h5"):
        with h5py.File(out / "data" / name) as a, h5py.File(tmp_path / "data" / name) as b:
            for ds in ("exchange/data", "exchange/data_white", "exchange/data_dark", "exchange/theta"):
                assert a[ds][()].tobytes() == b[ds][()].tobytes()
    for name in ("plated_thickness_um.npy", "xcs_regions.npy", "hexitec_gradients.txt"):
        assert (out / "data" / name).read_bytes() == (tmp_path / "data" / name).read_bytes()
    for sid in ("xcs_soc000", "xcs_soc100"):
        a = compton.read_cube(out / "data" / f"{sid}.zarr")
        b = compton.read_cube(tmp_path / "data" / f"{sid}.zarr")
        assert a.counts.tobytes() == b.counts.tobytes()
    assert (out / "truth.json").read_bytes() == (tmp_path / "truth.json").read_bytes()
    with pytest.raises(ValueError, match="seed"):
        make_sample_study(out, size="test", seed=1)
    with pytest.raises(ValueError, match="size"):
        make_sample_study(tmp_path / "x", size="huge")
    # interrupted before truth.json: the marker written first still keeps other seeds out
    (tmp_path / "other" / "data").mkdir(parents=True)
    (tmp_path / "other" / "data" / "sample.json").write_text('{"size": "test", "seed": 5}')
    with pytest.raises(ValueError, match="seed 5"):
        make_sample_study(tmp_path / "other", size="test", seed=0)
