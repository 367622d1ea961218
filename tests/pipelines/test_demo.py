"""``anodescope demo`` end to end on the test-size sample study, checked against its truth."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from pipelines.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, size="test", seed=1, quiet=True)


def test_demo_recovers_the_truth(demo):
    out, res = demo
    s = res["summary"]
    truth = json.loads((out / "truth.json").read_text())
    plated = s["tomography"]["plated"]
    true_li = np.load(out / "data" / "plated_thickness_um.npy")
    assert plated["thickness_true_mean_um"] == pytest.approx(np.nanmean(true_li), rel=0.05)
    # within about a voxel on the coarse (3.4 um) test sample
    assert plated["thickness_mae_um"] <= 1.3 * plated["voxel_um"]
    assert abs(plated["thickness_mean_um"] - np.nanmean(true_li)) < plated["voxel_um"]
    assert abs(plated["center_px"] - truth["tomography"]["true_center"]["value"]) < 0.5
    active = [r["active_fraction"] for r in plated["stripping"]]
    assert len(active) == 3 and active == sorted(active, reverse=True)
    # EMF of each region within 5 sigma of the noiseless expectation (the study report's comparisons)
    emf_checks = [c for c in s["truth_comparisons"] if c["name"].startswith("emf_error")]
    assert len(emf_checks) == 9
    for c in emf_checks:
        sigma = float(re.search(r"([+-]?\d+(\.\d+)?) σ", c["description"]).group(1))
        assert abs(sigma) < 5, c
    hx = s["hexitec"]["hexitec"]
    assert hx["compton_peak_kev"] == pytest.approx(hx["expected_peak_kev"], abs=0.3)


def test_demo_report_has_every_figure_and_prints_the_thickness_error(demo):
    out, res = demo
    page = html.unescape(res["report"].read_text())
    assert "plated" in page and "stripped" in page
    scan_page = html.unescape((out / "results" / "plated" / "report" / "index.html").read_text())
    mae = res["summary"]["tomography"]["plated"]["thickness_mae_um"]
    assert "thickness_mae" in scan_page and f"{mae:.3g}"[:3] in scan_page
    n = 0
    for rec_path in (out / "results").glob("*/*/stage.json"):
        rec = json.loads(rec_path.read_text())
        for fig in rec["figures"]:
            png = rec_path.parent / fig
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            n += 1
    assert n >= 20
    metrics = json.loads((out / "results" / "report_metrics.json").read_text())
    assert metrics["scans"]["plated"]["stages"]["segment"]["metrics"]["thickness_mae"]["unit"] == "um"


def test_demo_rerun_reuses_completed_stages(demo):
    out, first = demo
    stamps = {p: p.stat().st_mtime_ns for p in (out / "results").glob("*/*/stage.json")}
    stamps[out / "data" / "plated.h5"] = (out / "data" / "plated.h5").stat().st_mtime_ns
    again = run_demo(out, size="test", seed=1, quiet=True)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["summary"]["tomography"] == first["summary"]["tomography"]


def test_demo_cli_reports_a_bad_size_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pipelines", "demo", "--out", str(tmp_path), "--size", "huge"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "huge" in res.stderr
