"""The demo chain end to end on a small simulated cell, checked against its ground truth."""

from __future__ import annotations

import json

import pytest

from pipelines.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    metrics = run_demo(out, seed=2, quiet=True, shape=(44, 96, 96), n_angles=720, n_frames=4000)
    return out, metrics


def test_demo_recovers_the_truth(demo):
    out, m = demo
    assert m["reconstruction"]["center_error_px"] < 0.5
    mu = m["reconstruction"]["electrolyte_mu_per_cm"]
    assert mu["reconstructed_median"] == pytest.approx(mu["true"], rel=0.05)
    assert m["thickness"]["mae_um"] <= m["thickness"]["voxel_um"]
    assert m["thickness"]["coverage"] > 0.85
    assert m["hexitec"]["compton_peak_kev"] == pytest.approx(93.9, abs=0.3)
    fr = m["stripping"]["fractions"]
    assert [r["stripped_fraction"] for r in fr] == pytest.approx([0.64, 0.85, 0.95])
    active = [r["active_fraction"] for r in fr]
    assert active == sorted(active, reverse=True)
    for row in m["emf"]:  # region EMF against the noiseless spectrum at the same resolution
        assert abs(row["emf"] - row["expected_0p8kev"]) < 5 * row["sigma"] + 1e-3 * row["emf"]
    assert json.loads((out / "metrics.json").read_text())["thickness"] == m["thickness"]
    for fig in m["figures"]:
        with open(fig, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_demo_rerun_reuses_completed_stages(demo):
    out, first = demo
    stamp = {p: p.stat().st_mtime_ns for p in (out / "cell_scan.h5", out / "stripping" / "current.json")}
    again = run_demo(out, seed=2, quiet=True, shape=(44, 96, 96), n_angles=720, n_frames=4000)
    assert again["thickness"] == first["thickness"]
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
