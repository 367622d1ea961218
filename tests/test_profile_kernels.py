"""Tests of benchmarks/profile_kernels.py: the work models, the judgement, and a quick run end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_kernels.py"


@pytest.fixture(scope="module")
def pk():
    spec = importlib.util.spec_from_file_location("profile_kernels", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- work models by hand


def test_docstring_examples(pk):
    import doctest

    assert doctest.testmod(pk).failed == 0


def test_stream_bytes(pk):
    assert pk.stream_bytes("copy", 1000) == 2 * 1000 * 8
    assert pk.stream_bytes("triad", 10, itemsize=4) == 3 * 10 * 4
    with pytest.raises(ValueError, match="scale"):
        pk.stream_bytes("scale", 10)


def test_backprojection_work(pk):
    w = pk.backprojection_work(4, 3, 5)  # 4x4 slice, 3 angles, detector 5 px (+2 zero columns)
    assert w["updates"] == 4 * 4 * 3 == 48
    assert w["bytes"] == 4 * 3 * 7 + 4 * 16 == 148
    assert w["flops"] == 7 * 48


def test_gridding_work(pk):
    w = pk.gridding_work(2, 3, 2, 4)  # 6 samples, kernel 2x2, grid 4x4
    assert w["updates"] == 6 * 4 == 24
    assert w["bytes"] == 6 * 8 + 16 * 16 == 304
    assert w["flops"] == 4 * 24 + 6 * 2 * 6 == 168


def test_fft_median_classify_stripping_work(pk):
    f = pk.fft2_work(4)  # 16 points, log2 16 = 4
    assert (f["flops"], f["bytes"], f["updates"]) == (5 * 16 * 4, 16 * 16, 16)
    m = pk.median3_work((2, 3, 4))
    assert (m["updates"], m["bytes"], m["flops"]) == (24, 24 * 8, 24 * 390)
    # forgetful selection: 12 steps of 14..3 (minimum) and 13..2 (maximum) compare-exchanges, 3 more
    # at the end, each a min and a max: 2 * (102 + 90 + 3)
    assert pk.MEDIAN3_GPU_COMPARISONS_PER_VOXEL == 2 * (sum(range(3, 15)) + sum(range(2, 14)) + 3) == 390
    assert pk.median3_work((10,), comparisons_per_voxel=390)["flops"] == 3900
    c = pk.classify_work((10, 10, 10), 2)  # 3 classes: 2 comparisons per voxel
    assert (c["bytes"], c["flops"]) == (5000, 2000)
    s = pk.stripping_work((4, 4), 8)
    assert (s["updates"], s["bytes"], s["flops"]) == (128, 256, 128 + 64)


def test_hexitec_and_pcg_work(pk):
    h = pk.hexitec_work(10, 6400, 100, n_bins=1000)
    assert h["bytes"] == 10 * 6400 * 2 + 6400 * 1000 * 4
    assert (h["updates"], h["flops"]) == (100, 64000 + 400)
    p = pk.pcg_work((4, 4), 2)  # 16 pixels, 2 iterations + the initial residual
    assert p["updates"] == 48
    assert p["bytes"] == (2 * (8 + 8 + 8 + 4 + 8 + 8) + 3 * 24) * 16 * 3 == 7680
    assert p["flops"] == pytest.approx(3 * (4 * 2.5 * 16 * 4 + 16 * 16))


def test_fixed_cost_recovers_a_line(pk):
    # t = 0.02 + 3e-9 W at two amounts of work
    assert pk.fixed_cost(0.02 + 3e-9 * 1e6, 1e6, 0.02 + 3e-9 * 8e6, 8e6) == pytest.approx(0.02)
    assert pk.fixed_cost(1.0, 5.0, 2.0, 5.0) == 0.0  # no second amount of work: no estimate


def test_best_limits_keeps_the_larger_measurement(pk):
    a = {"bandwidth_gbs": 30.0, "bandwidth_source": "a", "compute_gflops": 400.0, "compute_source": "a",
         "stream_gbs": {"copy": 30.0, "triad": 20.0}, "simd_lanes_f32": 16, "scalar_gflops": 25.0}
    b = {"bandwidth_gbs": 35.0, "bandwidth_source": "b", "compute_gflops": 200.0, "compute_source": "b",
         "stream_gbs": {"copy": 25.0, "triad": 35.0}, "simd_lanes_f32": 16, "scalar_gflops": 12.5}
    best = pk.best_limits(a, b)
    assert (best["bandwidth_gbs"], best["bandwidth_source"]) == (35.0, "b")
    assert (best["compute_gflops"], best["compute_source"], best["scalar_gflops"]) == (400.0, "a", 25.0)
    assert best["stream_gbs"] == {"copy": 30.0, "triad": 35.0}


def test_assess_judgements(pk):
    limits = {"bandwidth_gbs": 20.0, "compute_gflops": 100.0}
    mem = pk.assess({"bytes": 12e9, "flops": 1e9, "updates": 1e9, "update_unit": "x"}, 1.0, limits)
    assert mem["achieved_gbs"] == pytest.approx(12.0)
    assert mem["fraction"] == pytest.approx(0.6) and mem["bound"] == "memory"
    assert mem["roofline_roof"] == "memory"  # intensity 1/12 flop/B x 20 GB/s < 100 Gflop/s
    assert mem["roofline_gflops"] == pytest.approx(20.0 / 12.0)
    comp = pk.assess({"bytes": 1e9, "flops": 80e9, "updates": 1e9, "update_unit": "x"}, 1.0, limits)
    assert comp["bound"] == "compute" and comp["fraction"] == pytest.approx(0.8)
    lat = pk.assess({"bytes": 1e9, "flops": 1e9, "updates": 1e9, "update_unit": "x"}, 1.0, limits,
                    limiter="random access")
    assert lat["bound"] == "latency" and "random access" in lat["why"]
    scalar = pk.assess({"bytes": 1e9, "flops": 4e9, "updates": 1e9, "update_unit": "x"}, 1.0,
                       {**limits, "scalar_gflops": 100.0 / 16})
    assert scalar["bound"] == "compute (scalar)" and scalar["scalar_fraction"] == pytest.approx(0.64)
    assert lat["scalar_fraction"] is None  # no scalar ceiling given
    over = pk.assess({"bytes": 12e9, "flops": 1e9, "updates": 1e9, "update_unit": "x"}, 1.0, limits,
                     fixed_seconds=0.5)
    assert over["bound"] == "Python overhead"


# ----------------------------------------------------------------------------- the quick run


@pytest.fixture(scope="module")
def quick_result(pk, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    assert pk.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    files = sorted(out.glob("profile-*-quick.json"))
    assert len(files) == 1 and files[0].with_suffix(".md").exists()
    return json.loads(files[0].read_text()), files[0].with_suffix(".md").read_text()


def test_quick_run_writes_every_kernel(pk, quick_result):
    result, md = quick_result
    assert result["device"] == "cpu"
    names = [r["kernel"] for r in result["kernels"]]
    assert names == list(pk.KERNELS)
    for r in result["kernels"]:
        assert r["seconds"] > 0, r["kernel"]
        assert 0 < r["fraction"] <= 1.5, (r["kernel"], r["fraction"])
        assert r["bound"] in ("memory", "compute", "compute (scalar)", "latency", "Python overhead")
        assert r["achieved_gbs"] == pytest.approx(r["work"]["bytes"] / r["seconds"] / 1e9)
        assert 0 < r["cores_used"] <= 1.25 * os.cpu_count(), (r["kernel"], r["cores_used"])
        assert r["kernel"] in md
    lim = result["limits"]
    assert lim["bandwidth_gbs"] == max(lim["stream_gbs"].values())
    assert lim["compute_gflops"] > 0


def test_quick_run_work_model_matches_an_independent_count(quick_result):
    """The HEXITEC events of the work model equal a plain count of the pixels above threshold."""
    from compton._sim_frames import sparse_frames

    result, _ = quick_result
    row = next(r for r in result["kernels"] if r["kernel"] == "hexitec")
    base, _ = sparse_frames(2048, occupancy=0.01, fraction_double=0.15, fraction_triple=0.05,
                            dark_adu=100.0, gain_kev_per_adu=0.03, seed=1)
    reps = 16384 // 2048
    above = int(np.count_nonzero(base.astype(np.float64) - 100.0 > 20.0)) * reps
    assert row["work"]["updates"] == above
    assert row["work"]["bytes"] == reps * 2048 * 6400 * 2 + 6400 * 1000 * 4


def test_stream_bandwidth_against_a_direct_timing(quick_result):
    """The measured limit is within a loose factor of a plain threaded np.copyto timed here
    (one slice per thread, as many threads as numba uses; NumPy releases the GIL in copies)."""
    from concurrent.futures import ThreadPoolExecutor

    import numba

    result, _ = quick_result
    n = 16 * 2**20  # 128 MiB per array, 4 x the 32 MiB L3 of the development VM
    a = np.empty(n)
    b = np.ones(n)
    k = numba.get_num_threads()
    parts = [slice(i * n // k, (i + 1) * n // k) for i in range(k)]
    best = math.inf
    with ThreadPoolExecutor(k) as pool:
        for _ in range(6):  # first run: page faults of ``a``
            t0 = time.perf_counter()
            list(pool.map(lambda sl: np.copyto(a[sl], b[sl]), parts))
            best = min(best, time.perf_counter() - t0)
    direct = 2 * 8 * n / best / 1e9
    assert direct / 3 < result["limits"]["bandwidth_gbs"] < direct * 3, (direct, result["limits"]["stream_gbs"])


def test_unknown_kernel_is_refused(pk, capsys):
    assert pk.main(["--device", "cpu", "--only", "nonesuch"]) == 2
    assert "nonesuch" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_quick_run(pk, tmp_path):
    assert pk.main(["--device", "gpu", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads(next(tmp_path.glob("profile-*-gpu-quick.json")).read_text())
    lim = result["limits"]
    assert 0 < lim["bandwidth_gbs"] and 0 < lim["compute_gflops"]
    if lim["theoretical_bandwidth_gbs"]:
        assert lim["bandwidth_gbs"] < 1.2 * lim["theoretical_bandwidth_gbs"]
    for r in result["kernels"]:
        if r["kernel"] == "stripping":
            assert r["seconds"] is None  # CPU only
            continue
        assert r["seconds"] > 0 and 0 < r["fraction"] <= 1.5, r["kernel"]
