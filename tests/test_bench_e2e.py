"""The end-to-end benchmark's scan and scoring: the written counts invert to the analytic line
integrals, and the quick run reconstructs the known volume through the whole chain."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_e2e.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_e2e", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scan_counts_invert_to_line_integrals(tmp_path, bench):
    import h5py

    from recon.simulate import shepp_logan_sinogram

    n = 48
    path = bench.write_scan(tmp_path / "s.h5", n, groups=4)
    theta = np.linspace(0, np.pi, n, endpoint=False)
    line = shepp_logan_sinogram(n, theta) * (2.0 / n)
    with h5py.File(path, "r") as f:
        data = f["exchange/data"][:].astype(np.float64)
        assert data.shape == (n, n, n) and f["exchange/data"].dtype == np.uint16
        flat = f["exchange/data_white"][:].mean(0)
        dark = f["exchange/data_dark"][:].mean(0)
        assert np.allclose(f["exchange/theta"][:], np.rad2deg(theta))
    got = -np.log((data - dark) / (flat - dark))
    scale = bench.band_scale(n, 4)
    assert set(np.round(scale, 6)) == set(np.round(bench.row_scale(n)[[0, 12, 24, 36]], 6))
    # uint16 rounding of counts near 40000: about 1e-5 in the line integral
    np.testing.assert_allclose(got, line[:, None, :] * scale[None, :, None], atol=2e-4)


def test_quick_run_reconstructs_the_known_volume(monkeypatch, bench):
    monkeypatch.setenv("ANODESCOPE_BENCH_E2E_N", "64")
    rows = {r["tool"]: r for r in bench.run(quick=True)}
    ours = rows["anodescope reconstruct_to_zarr (CPU)"]
    peak = 2.0 / 64 * bench.row_scale(64).max()  # the phantom's largest value, attenuation per pixel
    assert ours["seconds"] > 0 and ours["throughput"] == pytest.approx(64**3 / ours["seconds"] / 1e6)
    assert ours["accuracy"] < 0.06 * peak
    peer = [r for t, r in rows.items() if "algotom" in t]
    assert len(peer) == 1
    if np.isfinite(peer[0]["seconds"]):  # algotom installed: the same volume within its accuracy
        assert peer[0]["accuracy"] < 0.2 * peak
        assert peer[0]["ratio"] == pytest.approx(peer[0]["seconds"] / ours["seconds"])


def test_float16_run_on_the_same_scan(bench):
    """The GPU case's second run stores float16: one row per value type, from one scan, with
    the float16 volume as close to the truth as the float32 one (rounding is ~5e-4 relative)."""
    rows = bench._case(48, "cpu", "1GB", lambda *a: [], dtypes=("float32", "float16"))
    assert [r["tool"] for r in rows] == ["anodescope reconstruct_to_zarr (CPU)",
                                         "anodescope reconstruct_to_zarr (CPU), float16 volume"]
    peak = 2.0 / 48 * bench.row_scale(48).max()
    a32, a16 = (r["accuracy"] for r in rows)
    assert a32 < 0.06 * peak
    assert abs(a16 - a32) < 1e-3 * peak
