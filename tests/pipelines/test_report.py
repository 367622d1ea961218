"""HTML reports from stage folders in the issue-7 layout, built here with real content."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pipelines.report import write_scan_report, write_study_report


def _png(path: Path, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(seed).random((8, 8)))
    fig.savefig(path, dpi=40)
    plt.close(fig)


def _metric(value, unit, description=""):
    return {"value": value, "unit": unit, "description": description}


def _stage(scan_dir: Path, stage: str, scan: str, kind: str, metrics: dict, figures: list[str],
           inputs: dict | None = None, parameters: dict | None = None) -> dict:
    d = scan_dir / stage
    d.mkdir(parents=True)
    for i, name in enumerate(figures):
        _png(d / name, seed=i)
    rec = {"stage": stage, "scan": scan, "kind": kind, "hash": f"{stage}-{scan}-" + "ab" * 28,
           "inputs": inputs or {"volume": {"path": f"/data/{scan}.h5", "hash": "f00d" * 16}},
           "parameters": parameters or {"algorithm": "fourier", "median": 3},
           "versions": {"anodescope": "0.1.0", "numpy": np.__version__},
           "started": "2026-11-22T10:00:00+00:00", "finished": "2026-11-22T10:00:02+00:00", "seconds": 2.0,
           "metrics": metrics, "figures": figures, "outputs": ["maps.zarr"]}
    (d / "stage.json").write_text(json.dumps(rec))
    return rec


def _maps(scan_dir: Path, thickness: np.ndarray, px: float) -> None:
    import zarr

    g = zarr.open_group(str(scan_dir / "segment" / "maps.zarr"), mode="w", zarr_format=2)
    g.create_array("thickness_um", data=thickness.astype(np.float32), chunks=thickness.shape)
    g.attrs["pixel_size_um"] = px


class _Collect(HTMLParser):
    """Images, links, scripts and the visible text of a page."""

    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.scripts, self.text = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a":
            self.links.append(a.get("href"))
        elif tag in ("script", "link", "iframe"):
            self.scripts += 1

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Collect:
    p = _Collect()
    p.feed(path.read_text(encoding="utf-8"))
    return p


@pytest.fixture
def tomo_scan(tmp_path):
    scan = tmp_path / "results" / "plated"
    _stage(scan, "reconstruct", "plated", "tomo",
           {"center": _metric(79.5, "pixels", "rotation axis"), "voxel_size": _metric(1.7, "um", "voxel edge")},
           ["volume_slice.png", "volume_center.png"])
    _stage(scan, "segment", "plated", "tomo",
           {"thickness_mean": _metric(24.8, "um", "mean Li thickness"),
            "thickness_mae": _metric(1.0, "um", "mean absolute error against the truth map"),
            "capacity": _metric(5.1, "mAh cm^-2", "areal capacity"),
            "interface_top_Sq": _metric(3.2, "um", "RMS height")},
           ["thickness_map.png", "topology_maps.png", "thickness_histogram.png"])
    return scan


def test_scan_report_has_every_figure_unit_and_stage(tomo_scan):
    page = write_scan_report(tomo_scan)
    assert page == tomo_scan / "report" / "index.html"
    parsed = _parse(page)
    assert parsed.scripts == 0  # self-contained: no script, no external stylesheet
    figs = {"../reconstruct/volume_slice.png", "../reconstruct/volume_center.png", "../segment/thickness_map.png",
            "../segment/topology_maps.png", "../segment/thickness_histogram.png"}
    assert set(parsed.imgs) == figs
    # in the stage's display order
    seg = [s for s in parsed.imgs if s.startswith("../segment/")]
    assert seg == ["../segment/thickness_map.png", "../segment/topology_maps.png", "../segment/thickness_histogram.png"]
    for src in parsed.imgs:  # every link resolves to the PNG
        assert (page.parent / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = html.unescape(page.read_text())
    assert "µm" in text and "mAh cm^-2" in text and "pixels" in text
    # the strip stage of a tomo scan did not run: listed, not a crash
    assert re.search(r"strip</a></td><td><span class=\"notrun\">not run", page.read_text())
    assert "accuracy against ground truth" in text.lower()
    box = page.read_text().split('class="accuracy"')[1].split("</div>")[0]
    assert "thickness_mae" in box and "thickness_mean" not in box and "capacity" not in box
    # provenance: input hash and parameters
    assert "f00d" * 16 in text and "fourier" in text and np.__version__ in text


def test_scan_metrics_json_has_values_units_and_provenance(tomo_scan):
    write_scan_report(tomo_scan)
    doc = json.loads((tomo_scan / "report" / "metrics.json").read_text())
    assert doc["scan"] == "plated" and doc["kind"] == "tomo"
    m = doc["metrics"]["segment.thickness_mae"]
    assert m["value"] == 1.0 and m["unit"] == "um" and m["stage"] == "segment"
    assert doc["metrics"]["reconstruct.center"]["unit"] == "pixels"
    assert doc["stages"]["strip"]["status"] == "not run"
    seg = doc["stages"]["segment"]
    assert seg["status"] == "complete" and seg["inputs"]["volume"]["hash"] == "f00d" * 16
    assert seg["parameters"]["median"] == 3 and seg["versions"]["anodescope"] == "0.1.0"


def test_malicious_text_is_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    scan = tmp_path / "evil"
    _stage(scan, "compton", evil, "xcs",
           {"emf_median": _metric(1.2, "a.u.", '<img src=x onerror="alert(2)">'),
            evil: _metric("<marquee>", "<blink>", "x")},
           ["emf_maps.png"], parameters={"note": evil})
    page = write_scan_report(scan)
    raw = page.read_text()
    for bad in ("<script>", "<img src=x", "<marquee>", "<blink>"):
        assert bad not in raw
    assert html.escape(evil) in raw
    parsed = _parse(page)
    assert parsed.scripts == 0
    assert parsed.imgs == ["../compton/emf_maps.png"]
    assert evil in "".join(parsed.text)  # shown as text
    # the hexitec stage of this xcs scan did not run
    assert json.loads((scan / "report" / "metrics.json").read_text())["stages"]["hexitec"]["status"] == "not run"


def test_report_survives_missing_and_broken_stages(tmp_path):
    scan = tmp_path / "empty"
    scan.mkdir()
    page = write_scan_report(scan)
    text = page.read_text()
    assert text.count("not run") >= 5  # every stage, kind unknown
    broken = tmp_path / "broken"
    (broken / "segment").mkdir(parents=True)
    (broken / "segment" / "stage.json").write_text("{not json")
    rec = _stage(broken, "reconstruct", "broken", "tomo", {}, ["gone.png"])
    (broken / "reconstruct" / "gone.png").unlink()
    _png(broken / "outside.png")  # a real PNG, but outside the stage folder: not shown
    rec["figures"] += ["../outside.png", "/etc/passwd"]
    (broken / "reconstruct" / "stage.json").write_text(json.dumps(rec))
    page = write_scan_report(broken)
    raw = page.read_text()
    assert "unreadable" in raw and "listed but not found" in raw
    assert _parse(page).imgs == []
    with pytest.raises(ValueError, match="scan folder not found"):
        write_scan_report(tmp_path / "nope")


def _study(tmp_path) -> Path:
    """Two tomo scans (plated, stripped) with maps and truth, two xcs scans with region EMF, one not run."""
    out = tmp_path / "results"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:40]
    inside = (yy - 19.5) ** 2 + (xx - 19.5) ** 2 < 18**2
    plated = np.where(inside, 20 + 5 * np.sin(xx / 6.0), np.nan)
    stripped = np.where(inside, np.maximum(plated - 12, 0), np.nan)
    data = tmp_path / "data"
    data.mkdir()
    scans = []
    for sid, truth in (("plated", plated), ("stripped", stripped)):
        measured = truth + rng.normal(0, 0.5, truth.shape)
        _stage(out / sid, "reconstruct", sid, "tomo", {"center": _metric(19.5, "pixels")}, ["volume_slice.png"])
        mae = float(np.nanmean(np.abs(measured - truth)))
        _stage(out / sid, "segment", sid, "tomo",
               {"thickness_mean": _metric(float(np.nanmean(measured)), "um"),
                "thickness_mae": _metric(mae, "um", "mean absolute error against the truth map")},
               ["thickness_map.png"])
        _maps(out / sid, measured, 1.7)
        np.save(data / f"{sid}_thickness_um.npy", truth)
        scans.append({"id": sid, "kind": "tomo", "projections": str(data / f"{sid}.h5"),
                      "truth_thickness": str(data / f"{sid}_thickness_um.npy")})
    strip = _stage(out / "plated", "strip", "plated", "tomo",
                   {"active_fraction_64pct": _metric(0.8, "fraction")}, ["stripping_curves.png"])
    assert strip["figures"]
    s = np.linspace(0, 1, 20)
    (out / "plated" / "strip" / "stripping_curve.csv").write_text(
        "depth_um,stripped_fraction,active_fraction,current_multiplier\n"
        + "".join(f"{i},{v},{1 - v**2},{1 / max(1 - v**2, 0.01)}\n" for i, v in enumerate(s)))
    emf = {"xcs_soc000": (1.00, 2.20), "xcs_soc100": (0.96, 2.20)}
    for sid, (cathode, anode) in emf.items():
        _stage(out / sid, "compton", sid, "xcs",
               {"emf_region_1": _metric(anode, "a.u."), "sigma_emf_region_1": _metric(0.01, "a.u."),
                "emf_region_3": _metric(cathode, "a.u."), "sigma_emf_region_3": _metric(0.005, "a.u.")},
               ["emf_maps.png", "emf_profiles.png"])
        scans.append({"id": sid, "kind": "xcs", "cube": str(data / f"{sid}.zarr")})
    scans.append({"id": "hexitec", "kind": "xcs", "frames": str(data / "frames.h5")})  # never ran
    study = {"study": "test-study", "config": {"study": "test-study", "out": str(out), "scans": scans},
             "scans": {}}
    (out / "study.json").write_text(json.dumps(study))
    truth = {"tomography": {"true_center": {"value": 19.25, "unit": "px"},
                            "states": {"stripped": {"li_plus_gap": "data/plated_thickness_um.npy"}}},
             "xcs": {"regions": {"1": "anode", "2": "separator", "3": "cathode"},
                     "scans": {"xcs_soc000": {"state_of_charge": {"value": 0.0, "unit": "1"},
                                              "expected_emf": {"cathode": {"value": 1.0, "unit": "1"}}},
                               "xcs_soc100": {"state_of_charge": {"value": 1.0, "unit": "1"},
                                              "expected_emf": {"cathode": {"value": 0.96, "unit": "1"}}}}}}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    return out


def test_study_report_links_scans_and_draws_study_figures(tmp_path):
    out = _study(tmp_path)
    page = write_study_report(out)
    assert page == out / "report.html"
    parsed = _parse(page)
    assert parsed.scripts == 0
    for sid in ("plated", "stripped", "xcs_soc000", "xcs_soc100"):
        assert f"{sid}/report/index.html" in parsed.links
        assert (out / sid / "report" / "index.html").is_file()  # written on the way
    assert "hexitec/report/index.html" in parsed.links  # listed even though nothing ran
    assert set(parsed.imgs) == {"report_figures/thickness_states.png", "report_figures/emf_vs_soc.png",
                                "report_figures/stripping_overlay.png"}
    for src in parsed.imgs:
        assert (out / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = html.unescape(page.read_text())
    assert "µm" in text and "thickness MAE vs truth" in text
    # summary table: EMF with its uncertainty, hexitec scan 0 stages complete
    assert "0.96 ± 0.005" in text
    # accuracy box: thickness errors of both states and the EMF against the sample's expected values
    box = html.unescape(page.read_text().split('class="accuracy"')[1].split("</div>")[0])
    assert box.count("<code>thickness_mae</code>") == 2 and box.count("thickness_mae_li_plus_gap") == 1
    assert "emf_error_cathode" in box and "+0.0 σ" in box and "emf_error_anode" not in box
    assert box.count("center_error") == 2 and "found 19.500 − true 19.250" in box
    # the stripped map against lithium plus the gap it left (here: the plated truth)
    import zarr

    measured = np.asarray(zarr.open_group(str(out / "stripped" / "segment" / "maps.zarr"), mode="r")["thickness_um"])
    gap = np.load(tmp_path / "data" / "plated_thickness_um.npy")
    mae = np.nanmean(np.abs(measured - gap))
    doc = json.loads((out / "report_metrics.json").read_text())
    comp = {(c["stage"], c["name"]): c for c in doc["truth_comparisons"]}
    assert comp[("stripped / segment", "thickness_mae_li_plus_gap")]["value"] == pytest.approx(mae, rel=1e-5)
    assert ("plated / segment", "thickness_mae_li_plus_gap") not in comp
    # frames without a geometry: a detector acquisition, whose chain is the hexitec stage alone
    assert re.search(r">hexitec</a></td><td>xcs</td><td[^>]*>0/1<", page.read_text())
    doc = json.loads((out / "report_metrics.json").read_text())
    assert doc["scans"]["stripped"]["stages"]["segment"]["metrics"]["thickness_mae"]["unit"] == "um"
    assert doc["truth"] == str(tmp_path / "truth.json")


def test_study_thickness_figure_shows_states_truth_and_difference(tmp_path):
    from pipelines import _report_figures as rf

    a = np.full((20, 30), 20.0)
    b = np.full((20, 30), 8.0)
    png = rf.thickness_states({"plated": a, "stripped": b}, tmp_path / "t.png", pixel_size_um={"plated": 2.0},
                              truths={"plated": a + 1.0, "stripped": b})
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[1] > img.shape[0]  # rows of panels side by side
    with pytest.raises(ValueError):
        rf.thickness_states({}, tmp_path / "none.png")


def test_study_report_without_study_json_or_stages(tmp_path):
    out = tmp_path / "results"
    (out / "only").mkdir(parents=True)
    _stage(out / "only", "hexitec", "only", "xcs", {"events_accepted": _metric(10, "count")}, [])
    page = write_study_report(out, truth=None)
    text = page.read_text()
    assert "only/report/index.html" in text and "events accepted" in text
    assert not list((out / "report_figures").glob("*.png"))
    assert _parse(page).imgs == []
    with pytest.raises(ValueError, match="not found"):
        write_study_report(tmp_path / "missing")
    with pytest.raises(ValueError, match="truth"):
        write_study_report(out, truth=tmp_path / "no_truth.json")


def test_sample_study_runs_end_to_end_into_the_reports(tmp_path):
    """The test-size sample study through ``anodescope run``'s engine: every figure reported, truth printed."""
    from pipelines import stages
    from pipelines.samples import make_sample_study

    cfg = make_sample_study(tmp_path / "study", size="test", seed=0)
    stages.run_study(cfg, progress=False)
    out = tmp_path / "study" / "results"
    page = out / "report.html"
    text = html.unescape(page.read_text())
    n_figures = 0
    for scan in ("plated", "stripped", "xcs_soc000", "xcs_soc050", "xcs_soc100", "hexitec"):
        imgs = _parse(out / scan / "report" / "index.html").imgs
        for rec_path in (out / scan).glob("*/stage.json"):
            rec = json.loads(rec_path.read_text())
            for fig in rec["figures"]:
                assert f"../{rec_path.parent.name}/{fig}" in imgs
                n_figures += 1
        assert f"{scan}/report/index.html" in _parse(page).links
    assert n_figures >= 20
    # the thickness error against the sample's truth is printed; the plated map is right to ~a voxel (3.4 um)
    truth = np.load(tmp_path / "study" / "data" / "plated_thickness_um.npy")
    import zarr

    measured = np.asarray(zarr.open_group(str(out / "plated" / "segment" / "maps.zarr"), mode="r")["thickness_um"])
    both = np.isfinite(truth) & np.isfinite(measured)
    mae = float(np.abs(measured[both] - truth[both]).mean())
    assert mae < 1.5 * 3.4
    doc = json.loads((out / "plated" / "report" / "metrics.json").read_text())
    assert doc["metrics"]["segment.thickness_mae"]["value"] == pytest.approx(mae, rel=1e-4)
    assert f"{mae:.4g}" in text
    # region EMF of every state of charge within 5 sigma of the sample's expectation
    comps = json.loads((out / "report_metrics.json").read_text())["truth_comparisons"]
    emf = [c for c in comps if c["name"].startswith("emf_error_")]
    assert len(emf) == 9
    for c in emf:
        z = float(re.search(r"\(([-+][0-9.]+) σ\)", c["description"]).group(1))
        assert abs(z) < 5


def test_scan_report_lists_only_the_stages_of_the_scans_chain(tmp_path):
    """A cube-only XCS scan has no hexitec stage: neither the explicit chain nor study.json lists it."""
    out = tmp_path / "results"
    scan = out / "soc50"
    _stage(scan, "compton", "soc50", "xcs", {"emf_median": _metric(1.78, "a.u.")}, ["emf_maps.png"])
    write_scan_report(scan, stages=["compton"])
    listed = json.loads((scan / "report" / "metrics.json").read_text())["stages"]
    assert list(listed) == ["compton"]
    # without the argument the chain comes from the study's resolved config
    (out / "study.json").write_text(json.dumps({"study": "s", "config": {"scans": [
        {"id": "soc50", "kind": "xcs", "cube": "/data/soc50.zarr", "geometry": "/data/g.yaml"}]}}))
    write_scan_report(scan)
    assert list(json.loads((scan / "report" / "metrics.json").read_text())["stages"]) == ["compton"]
    # a frames scan with a geometry has both stages, the missing one reported as not run
    (out / "study.json").write_text(json.dumps({"study": "s", "config": {"scans": [
        {"id": "soc50", "kind": "xcs", "frames": "/data/f.h5", "geometry": "/data/g.yaml"}]}}))
    write_scan_report(scan)
    stages = json.loads((scan / "report" / "metrics.json").read_text())["stages"]
    assert list(stages) == ["hexitec", "compton"] and stages["hexitec"]["status"] == "not run"
    page = write_study_report(out, truth=None)
    assert re.search(r">soc50</a></td><td>xcs</td><td[^>]*>1/2<", page.read_text())
