"""The study runner: stage results against known truth, skip / rerun / resume, kill and resume.

A tiny study is simulated once per session: an anode-free cell (24 x 64 x 64 voxels of
1.7 um, known Li thickness map) scanned over 180 angles, HEXITEC frames with known
Am-241 / Compton lines and gains, and a simulated XCS cube of Li metal and NMC622 regions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines._errors import InputError
from pipelines.config import load_config
from pipelines.stages import content_hash, run_stage, run_study, stage_hash

REPO = Path(__file__).resolve().parents[2]
STAGES_TINY = {"reconstruct": {"rows_per_chunk": 2}}


# ----------------------------------------------------------------------------- tiny study

def make_tiny_study(folder: Path, *, n_frames: int = 2000, second_tomo: bool = False) -> dict:
    """Write the inputs of a tiny study into ``folder``; return ``{name: path}`` plus the cell.

    With ``second_tomo`` a second cell (another seed) is scanned into ``cell2.h5`` / ``truth2.npy``.
    """
    import h5py

    import compton
    import recon
    from compton._sim_frames import sparse_frames
    from compton.simulate import nmc622, simulate_cube
    from pipelines.samples import anode_free_cell

    folder.mkdir(parents=True, exist_ok=True)
    cell = anode_free_cell(shape=(24, 64, 64), seed=0, n_particles=6, n_pores=4, mean_thickness_um=10,
                           min_thickness_um=4, max_thickness_um=16, corr_um=20)
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    proj = recon.simulate_scan(cell.mu_per_px, theta, incident_counts=50000, n_flats=5, n_darks=5, seed=0,
                               pixel_size_um=cell.pixel_size_um, energy_kev=cell.energy_kev)
    recon.write_dxchange(folder / "cell.h5", proj, pixel_size_um=cell.pixel_size_um, energy_kev=cell.energy_kev)
    np.save(folder / "truth.npy", cell.thickness_um)
    if second_tomo:
        cell2 = anode_free_cell(shape=(24, 64, 64), seed=1, n_particles=6, n_pores=4, mean_thickness_um=10,
                                min_thickness_um=4, max_thickness_um=16, corr_um=20)
        proj2 = recon.simulate_scan(cell2.mu_per_px, theta, incident_counts=50000, n_flats=5, n_darks=5, seed=1,
                                    pixel_size_um=cell2.pixel_size_um, energy_kev=cell2.energy_kev)
        recon.write_dxchange(folder / "cell2.h5", proj2, pixel_size_um=cell2.pixel_size_um,
                             energy_kev=cell2.energy_kev)
        np.save(folder / "truth2.npy", cell2.thickness_um)

    rng = np.random.default_rng(0)
    gains = rng.uniform(0.027, 0.033, (80, 80))
    intercepts = rng.uniform(-2.0, -1.0, (80, 80))
    frames, _ = sparse_frames(n_frames, lines_kev=(59.54, 93.9, 26.1, 31.0), weights=(0.25, 0.6, 0.08, 0.07),
                              gain_kev_per_adu=gains, intercept_kev=intercepts, dark_adu=0.0, seed=0)
    with h5py.File(folder / "frames.h5", "w") as f:
        f.create_dataset("raw_frames", data=frames)
    compton.write_values(folder / "gradients.txt", gains)
    compton.write_values(folder / "intercepts.txt", intercepts)
    geometry = {"e0_kev": 115.0, "theta_centre_deg": 90.0, "pinhole_to_beam_mm": 160.0,
                "pinhole_to_detector_mm": 150.0, "pixel_pitch_um": 250.0}
    (folder / "geometry.yaml").write_text(yaml.safe_dump(geometry))
    n = 16
    labels = np.zeros((n, n), np.int64)
    labels[:, 1:7] = 1
    labels[:, 9:15] = 2
    np.save(folder / "regions.npy", np.where(labels > 0, labels, -1))
    geo = compton.read_geometry(folder / "geometry.yaml", shape=(n, n))
    edges = np.arange(0.0, 120.0 + 1e-9, 0.2)
    cube = simulate_cube([None, "Li metal", nmc622(0.5)], labels, edges, geometry=geo, counts_per_pixel=2e4, seed=0)
    compton.write_cube(cube, folder / "cube.zarr")
    return {"folder": folder, "cell": cell, "gains": gains}


def write_study(folder: Path, name: str, *, out: str, scans=("cell", "xf", "xc"), stages=None, run=None,
                extra_scan=None) -> Path:
    """A study YAML in ``folder`` over the tiny inputs."""
    all_scans = {
        "cell": {"id": "cell", "kind": "tomo", "projections": "cell.h5", "truth_thickness": "truth.npy",
                 "capacity_mah_cm2": 2.0},
        "xf": {"id": "xf", "kind": "xcs", "frames": "frames.h5", "gradients": "gradients.txt",
               "intercepts": "intercepts.txt", "geometry": "geometry.yaml"},
        "xc": {"id": "xc", "kind": "xcs", "cube": "cube.zarr", "geometry": "geometry.yaml",
               "regions": "regions.npy"},
        "cell2": {"id": "cell2", "kind": "tomo", "projections": "cell2.h5", "truth_thickness": "truth2.npy"},
    }
    doc = {"study": "tiny", "out": out, "scans": [dict(all_scans[s], **(extra_scan or {}).get(s, {})) for s in scans],
           "stages": stages if stages is not None else STAGES_TINY}
    if run is not None:
        doc["run"] = list(run)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def zarr_arrays(root: Path) -> dict:
    """Every array of every Zarr store under ``root`` (and .npz members), keyed by relative path."""
    import zarr

    out = {}
    arrays = [p.parent for p in root.rglob(".zarray")]
    arrays += [p.parent for p in root.rglob("zarr.json") if json.loads(p.read_text()).get("node_type") == "array"]
    for a in sorted(arrays):
        out[str(a.relative_to(root))] = np.asarray(zarr.open_array(str(a), mode="r")[...])
    for f in root.rglob("*.npz"):
        with np.load(f) as d:
            for k in d.files:
                out[f"{f.relative_to(root)}/{k}"] = d[k]
    for f in root.rglob("*.npy"):
        out[str(f.relative_to(root))] = np.load(f)
    return out


def stage_records(root: Path) -> dict:
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("stage.json"))}


def assert_same_results(a: Path, b: Path) -> int:
    """Identical arrays (bitwise, NaN = NaN), hashes, parameters and metrics; returns the array count."""
    A, B = zarr_arrays(a), zarr_arrays(b)
    assert sorted(A) == sorted(B)
    for k in A:
        assert A[k].shape == B[k].shape and A[k].dtype == B[k].dtype, k
        assert np.array_equal(A[k], B[k], equal_nan=A[k].dtype.kind == "f"), k
    ra, rb = stage_records(a), stage_records(b)
    assert sorted(ra) == sorted(rb)
    for k in ra:
        for key in ("hash", "parameters", "metrics", "figures", "outputs"):
            assert ra[k][key] == rb[k][key], (k, key)
    return len(A)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_study")
    info = make_tiny_study(folder)
    return info


@pytest.fixture(scope="module")
def reference(tiny):
    """An uninterrupted run of the whole tiny study (in-process, default scheduler)."""
    folder = tiny["folder"]
    yaml_path = write_study(folder, "ref.yaml", out="ref")
    study = run_study(yaml_path, progress=False)
    return {"yaml": yaml_path, "out": folder / "ref", "study": study}


# ----------------------------------------------------------------------------- results

def test_stage_results_against_truth(tiny, reference):
    out = reference["out"]
    cell = tiny["cell"]
    rec = json.loads((out / "cell" / "reconstruct" / "stage.json").read_text())
    assert rec["stage"] == "reconstruct" and rec["scan"] == "cell" and len(rec["hash"]) == 64
    assert abs(rec["metrics"]["center"]["value"] - 31.5) < 0.5  # centred axis on a 64-px detector
    assert set(rec["outputs"]) == {"volume.zarr"} and (out / "cell" / "reconstruct" / "volume.zarr").is_dir()
    # segment: Li thickness map against the simulated truth
    seg = json.loads((out / "cell" / "segment" / "stage.json").read_text())["metrics"]
    assert seg["thickness_mae"]["unit"] == "um"
    assert seg["thickness_mae"]["value"] < 2.0 * cell.pixel_size_um
    assert abs(seg["thickness_bias"]["value"]) < cell.pixel_size_um
    assert seg["thickness_coverage"]["value"] > 0.85
    assert abs(seg["thickness_mean"]["value"] - np.nanmean(cell.thickness_um)) < cell.pixel_size_um
    # capacity: 10 um of Li is 10 / 4.86 mAh cm^-2 (SCIENCE.md), configured coulometric 2.0
    assert abs(seg["capacity"]["value"] - np.nanmean(cell.thickness_um) / 4.86) < 0.4
    assert seg["capacity_coulometric"]["value"] == 2.0
    assert seg["interface_top_Sq"]["unit"] == "um" and seg["interface_top_Sq"]["value"] > 0
    import zarr

    maps = zarr.open_group(str(out / "cell" / "segment" / "maps.zarr"), mode="r")
    assert float(maps.attrs.get("pixel_size_um", maps["thickness_um"].attrs.get("pixel_size_um"))) == 1.7
    # strip: the map was cropped to the inscribed square (no NaN), metrics per fraction
    sq = np.load(out / "cell" / "strip" / "thickness_square_um.npy")
    assert np.isfinite(sq).all() and sq.shape[0] == sq.shape[1] >= 30
    st = json.loads((out / "cell" / "strip" / "stage.json").read_text())["metrics"]
    for pct in (64, 85, 95):
        af = st[f"active_fraction_{pct}pct"]["value"]
        assert 0 < af <= 1
        assert abs(st[f"current_multiplier_{pct}pct"]["value"] - 1 / af) < 1e-6
    # independent: strip a uniform depth d from every pixel; the active area is where sq > d
    depths = np.linspace(0, sq.max(), 2001)
    stripped = np.array([np.minimum(sq, d).sum() for d in depths]) / sq.sum()
    for pct in (64, 85):
        d = depths[np.searchsorted(stripped, pct / 100)]
        assert abs(st[f"active_fraction_{pct}pct"]["value"] - np.mean(sq > d)) < 0.03
    # hexitec: all frames, Compton line at 93.9 keV (115 keV at 90 degrees)
    hx = json.loads((out / "xf" / "hexitec" / "stage.json").read_text())["metrics"]
    assert hx["frames"]["value"] == 2000
    assert abs(hx["compton_peak"]["value"] - 93.9) < 1.0
    assert hx["events_accepted"]["value"] + hx["events_rejected"]["value"] <= 2000 * 80 * 80
    # compton on the simulated cube: Li metal (region 1) has a much larger EMF than NMC622 (region 2)
    cp = json.loads((out / "xc" / "compton" / "stage.json").read_text())["metrics"]
    assert cp["emf_region_1"]["value"] > cp["emf_region_2"]["value"] + 10 * cp["sigma_emf_region_2"]["value"]
    import compton

    cube = compton.read_cube(tiny["folder"] / "cube.zarr")
    geo = compton.read_geometry(tiny["folder"] / "geometry.yaml", shape=cube.counts.shape[:2])
    direct = compton.emf_map(cube, geometry=geo)
    assert cp["emf_median"]["value"] == pytest.approx(float(np.nanmedian(direct.emf)), rel=1e-9)
    # xf scan: compton reads the hexitec stage's cube
    cf = json.loads((out / "xf" / "compton" / "stage.json").read_text())
    assert cf["inputs"]["cube"]["path"].endswith("xf/hexitec/cube.zarr")
    assert cf["inputs"]["hexitec"]["hash"] == json.loads((out / "xf" / "hexitec" / "stage.json").read_text())["hash"]
    # figures exist; study.json has every complete stage
    for recp in out.rglob("stage.json"):
        r = json.loads(recp.read_text())
        for f in r["figures"] + r["outputs"]:
            assert (recp.parent / f).exists(), (recp, f)
        assert set(r) >= {"stage", "scan", "hash", "inputs", "parameters", "versions", "started", "finished",
                          "seconds", "metrics", "figures", "outputs"}
    study = json.loads((out / "study.json").read_text())
    assert set(study["scans"]) == {"cell", "xf", "xc"}
    assert set(study["scans"]["cell"]["stages"]) >= {"reconstruct", "segment", "strip"}
    assert not list(out.rglob("*.partial"))


def test_report_stage(reference):
    out = reference["out"]
    assert (out / "cell" / "report" / "index.html").exists()
    assert (out / "cell" / "report" / "stage.json").exists()
    assert (out / "report.html").exists()


def test_content_hash_is_content_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "x.bin").write_bytes(b"12345")
        (d / "y.txt").write_text("hello")
    assert content_hash(a) == content_hash(b)
    import hashlib

    assert content_hash(a / "y.txt") == hashlib.sha256(b"hello").hexdigest()
    os.utime(b / "y.txt", ns=(1, 1))  # the time does not matter ...
    assert content_hash(a) == content_hash(b)
    (b / "sub" / "x.bin").write_bytes(b"12346")  # ... the content does
    assert content_hash(a) != content_hash(b)


# ----------------------------------------------------------------------------- skip / rerun

def test_rerun_skips_every_stage(reference, capsys):
    before = {k: v["finished"] for k, v in stage_records(reference["out"]).items()}
    capsys.readouterr()
    run_study(reference["yaml"], progress=True)
    text = capsys.readouterr().out
    assert text.count("skipped (complete") == len(before)
    assert "running" not in text
    after = {k: v["finished"] for k, v in stage_records(reference["out"]).items()}
    assert after == before
    cache = json.loads((reference["out"] / ".anodescope" / "hashes.json").read_text())
    assert str((reference["yaml"].parent / "cell.h5").resolve()) in cache


def test_parameter_and_input_changes_rerun_only_downstream(tiny, reference, capsys):
    folder = tiny["folder"]
    shutil.copytree(reference["out"], folder / "changed")  # hashes hold no paths: a moved study is complete
    y = write_study(folder, "changed.yaml", out="changed",
                    stages={**STAGES_TINY, "strip": {"fractions": [0.5]}})
    capsys.readouterr()
    run_study(y, progress=True)
    text = capsys.readouterr().out
    assert "[cell] reconstruct: skipped" in text and "[cell] segment: skipped" in text
    assert "[cell] strip: running" in text and "[xf] hexitec: skipped" in text
    st = json.loads((folder / "changed" / "cell" / "strip" / "stage.json").read_text())
    assert "active_fraction_50pct" in st["metrics"] and "active_fraction_64pct" not in st["metrics"]
    # another truth map changes the segment stage (its raw input) and, through its hash, strip
    truth = np.load(folder / "truth.npy")
    np.save(folder / "truth_shifted.npy", truth + 1.0)
    y = write_study(folder, "changed.yaml", out="changed", stages={**STAGES_TINY, "strip": {"fractions": [0.5]}},
                    extra_scan={"cell": {"truth_thickness": "truth_shifted.npy"}})
    run_study(y, progress=True)
    text = capsys.readouterr().out
    assert "[cell] reconstruct: skipped" in text
    assert "[cell] segment: running" in text and "[cell] strip: running" in text
    old = json.loads((reference["out"] / "cell" / "segment" / "stage.json").read_text())["metrics"]
    new = json.loads((folder / "changed" / "cell" / "segment" / "stage.json").read_text())["metrics"]
    assert new["thickness_bias"]["value"] == pytest.approx(old["thickness_bias"]["value"] - 1.0, abs=1e-6)
    assert new["thickness_mean"] == old["thickness_mean"]  # same measured map


def test_stale_partial_is_removed_and_force_reruns(tiny, reference, capsys):
    folder = tiny["folder"]
    shutil.copytree(reference["out"], folder / "stale", ignore=shutil.ignore_patterns("strip"))
    partial = folder / "stale" / "cell" / "strip.partial"
    partial.mkdir()
    (partial / "junk.txt").write_text("from an older run")
    (partial / ".stage-hash").write_text(json.dumps({"hash": "0" * 64}))
    y = write_study(folder, "stale.yaml", out="stale", scans=("cell",))
    run_stage(y, "cell", "strip", progress=False)
    assert not partial.exists()
    final = folder / "stale" / "cell" / "strip"
    assert not (final / "junk.txt").exists() and (final / "stage.json").exists()
    first = json.loads((final / "stage.json").read_text())
    rec = run_stage(y, "cell", "strip", progress=False, force=True)
    assert rec["status"] == "done" and rec["hash"] == first["hash"] and rec["metrics"] == first["metrics"]
    # a second process on the same (scan, stage) is refused while the first holds the lock
    import fcntl

    with open(folder / "stale" / "cell" / ".strip.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        with pytest.raises(InputError, match=r"stage 'strip' of scan 'cell' is being run by another process"):
            run_stage(y, "cell", "strip", progress=False, force=True)
    assert run_stage(y, "cell", "strip", progress=False)["status"] == "skipped"
    # killed between stage.json and the rename: the complete partial folder is just renamed
    rec = json.loads((final / "stage.json").read_text())
    final.rename(partial)
    (partial / ".stage-hash").write_text(json.dumps({"hash": rec["hash"]}))
    again = run_stage(y, "cell", "strip", progress=False)
    assert again["status"] == "done" and again["started"] == rec["started"]
    assert not partial.exists() and json.loads((final / "stage.json").read_text()) == rec


def test_stage_selection_needs_complete_upstream(tiny, reference):
    folder = tiny["folder"]
    y = write_study(folder, "fresh.yaml", out="fresh")
    cfg = load_config(y)
    with pytest.raises(InputError, match=r"scan 'cell': stage 'segment' needs 'reconstruct', which has not run"):
        run_study(cfg, stages=["segment"], progress=False)
    assert not (folder / "fresh" / "cell").exists()  # nothing started
    with pytest.raises(InputError, match=r"no scan 'nope'"):
        run_study(cfg, scans=["nope"], progress=False)
    with pytest.raises(InputError, match=r"scan 'xc' \(xcs\) has no stage 'segment'"):
        run_stage(cfg, "xc", "segment", progress=False)
    # an upstream stage that is complete but out of date is refused too
    shutil.copytree(reference["out"] / "cell", folder / "fresh" / "cell")
    y2 = write_study(folder, "fresh.yaml", out="fresh", stages={**STAGES_TINY, "reconstruct": {
        "rows_per_chunk": 2, "ring_size": 5}})
    with pytest.raises(InputError, match=r"needs 'reconstruct', which is out of date"):
        run_study(y2, scans=["cell"], stages=["segment"], progress=False)
    # the hash is that of the stage's parameters and upstream: reconstruct changed -> every downstream hash
    cfg2 = load_config(y2)
    assert stage_hash(cfg2, "cell", "strip") != stage_hash(cfg, "cell", "strip")
    assert stage_hash(cfg2, "xf", "compton") == stage_hash(cfg, "xf", "compton")


# ----------------------------------------------------------------------------- kill and resume

def _start(yaml_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".venv" / "numba-cache"))
    return subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(yaml_path)], cwd=str(yaml_path.parent),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _kill_when(proc: subprocess.Popen, condition, timeout_s: float = 60.0) -> None:
    t0 = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the kill point:\n{proc.stdout.read()}")
        if time.monotonic() - t0 > timeout_s:
            proc.kill()
            raise AssertionError("kill point not reached")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def test_killed_run_resumes_to_identical_outputs(tiny, reference):
    folder = tiny["folder"]
    y = write_study(folder, "killed.yaml", out="killed")
    out = folder / "killed"
    markers = out / "cell" / "reconstruct.partial" / "volume.zarr" / ".anodescope"

    # 1. kill inside reconstruct, once some slabs are done
    proc = _start(y)
    _kill_when(proc, lambda: markers.is_dir() and any(markers.glob("chunk-*.json")))
    done = {p.name: p.stat().st_mtime_ns for p in markers.glob("chunk-*.json")}
    assert 0 < len(done) < 12  # 24 rows in slabs of 2
    assert not (out / "cell" / "reconstruct").exists()

    # 2. rerun, kill inside segment
    proc = _start(y)
    _kill_when(proc, lambda: (out / "cell" / "segment.partial").exists())
    assert (out / "cell" / "reconstruct" / "stage.json").exists()
    final_markers = out / "cell" / "reconstruct" / "volume.zarr" / ".anodescope"
    for name, mtime in done.items():  # slabs finished before the kill were not computed again
        assert (final_markers / name).stat().st_mtime_ns == mtime, name

    # 3. rerun, kill inside hexitec
    proc = _start(y)
    _kill_when(proc, lambda: (out / "xf" / "hexitec.partial").exists())

    # 4. rerun to the end
    res = subprocess.run([sys.executable, "-m", "pipelines", "run", str(y)], cwd=str(folder), capture_output=True,
                         text=True, env=dict(os.environ, NUMBA_CACHE_DIR=str(REPO / ".venv" / "numba-cache")),
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[cell] reconstruct: skipped" in res.stdout and "[xf] hexitec: running" in res.stdout
    assert not list(out.rglob("*.partial"))
    n = assert_same_results(reference["out"], out)
    assert n >= 20
