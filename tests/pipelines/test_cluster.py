"""Dask execution: a two-worker LocalCluster gives the same results as the default scheduler;
recipes from docs/clusters.md (LocalCluster, SLURM job script) run as written."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
from pathlib import Path

import pytest

from pipelines._errors import InputError
from pipelines.cluster import connect, cuda_cluster, local_cluster, slurm_cluster

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "clusters.md"


def _helpers():
    """The tiny-study builders of test_stages.py (one implementation for both files)."""
    spec = importlib.util.spec_from_file_location("_anodescope_test_stages", Path(__file__).with_name("test_stages.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _snippet(tag: str) -> str:
    """The python block after ``<!-- tested: TAG -->`` in docs/clusters.md."""
    text = DOC.read_text()
    m = re.search(rf"<!-- tested: {re.escape(tag)} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"no tested snippet {tag!r} in {DOC}"
    return m.group(1)


@contextlib.contextmanager
def _chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def test_local_cluster_equals_default_scheduler(tmp_path):
    """Two tomography scans on LocalCluster(2 workers, processes, 1 thread) vs the default scheduler.

    The two scans are reconstructed at the same time on the cluster (this caught recon's slab
    tasks sharing keys across concurrent reconstructions)."""
    h = _helpers()
    h.make_tiny_study(tmp_path, n_frames=300, second_tomo=True)
    scans = ("cell", "cell2")
    ref_yaml = h.write_study(tmp_path, "default.yaml", out="default", scans=scans)
    from pipelines.stages import run_study

    run_study(ref_yaml, progress=False)
    # the documented recipe, run as written, on a study.yaml with another output folder
    h.write_study(tmp_path, "study.yaml", out="cluster", scans=scans)
    ns = {}
    with _chdir(tmp_path):
        exec(compile(_snippet("local-cluster"), str(DOC), "exec"), ns)
    study = ns["study"]
    assert set(study["scans"]) == set(scans)
    assert set(study["scans"]["cell2"]["stages"]) >= {"reconstruct", "segment", "strip"}
    n = h.assert_same_results(tmp_path / "default", tmp_path / "cluster")
    assert n >= 20
    # not trivially equal: two different cells, each matching its own truth map
    import json

    for scan in scans:
        seg = json.loads((tmp_path / "cluster" / scan / "segment" / "stage.json").read_text())["metrics"]
        assert seg["thickness_mae"]["value"] < 3.4 and seg["thickness_coverage"]["value"] > 0.85


def test_cli_scheduler_address_and_errors(tmp_path, capsys):
    """``anodescope run --scheduler ADDRESS`` on a live in-process cluster; a dead address is exit 2."""
    import numpy as np
    import yaml

    import compton
    from compton.simulate import simulate_cube

    h = _helpers()
    # a small xcs-only study keeps this test short

    (tmp_path / "geometry.yaml").write_text(yaml.safe_dump({"e0_kev": 115.0, "theta_centre_deg": 90.0,
                                                            "pinhole_to_beam_mm": 160.0,
                                                            "pinhole_to_detector_mm": 150.0,
                                                            "pixel_pitch_um": 250.0}))
    labels = np.ones((8, 8), np.int64)
    geo = compton.read_geometry(tmp_path / "geometry.yaml", shape=(8, 8))
    cube = simulate_cube([None, "Li metal"], labels, np.arange(0, 120.0 + 1e-9, 0.2), geometry=geo,
                         counts_per_pixel=1e4, seed=1)
    compton.write_cube(cube, tmp_path / "cube.zarr")
    np.save(tmp_path / "regions.npy", labels)
    y = h.write_study(tmp_path, "x.yaml", out="out", scans=("xc",))
    from pipelines.cli import main

    with local_cluster(n_workers=1, threads_per_worker=2, processes=False) as cluster:
        assert main(["run", str(y), "--scheduler", cluster.scheduler_address]) == 0
    text = capsys.readouterr().out
    assert f"dask.distributed scheduler {cluster.scheduler_address}" in text and "[xc] compton: done" in text
    assert (tmp_path / "out" / "xc" / "compton" / "stage.json").exists()
    code = main(["run", str(y), "--scheduler", "tcp://127.0.0.1:9", "--force"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("anodescope run: error: --scheduler tcp://127.0.0.1:9: no dask scheduler answered")
    assert len(err.strip().splitlines()) == 1


def test_connect_default_is_none():
    with connect(None) as client:
        assert client is None
    with pytest.raises(InputError, match="empty address"):
        with connect("  "):
            pass


def test_slurm_job_script_from_the_docs():
    pytest.importorskip("dask_jobqueue")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_snippet("slurm"), str(DOC), "exec"), {})
    script = out.getvalue()
    assert script.startswith("#!/usr/bin/env bash")
    assert "#SBATCH -p gpu" in script and "#SBATCH -A battery" in script
    assert "#SBATCH -t 04:00:00" in script and "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --cpus-per-task=16" in script
    assert "#SBATCH --mem=60G" in script  # 64 GB = 59.6 GiB, rounded up by dask-jobqueue
    assert "--memory-limit 29.80GiB" in script  # shared by the 2 worker processes
    assert "source /opt/anodescope/venv/bin/activate" in script
    assert "--nworkers 2" in script and "--nthreads 8" in script  # 16 cores over 2 worker processes
    with pytest.raises(InputError, match="cores must be a positive integer"):
        slurm_cluster(cores=0)


def test_local_cluster_checks():
    with pytest.raises(InputError, match="n_workers must be a positive integer"):
        local_cluster(0)
    with pytest.raises(InputError, match="threads_per_worker"):
        local_cluster(1, 1.5)


def _gpu_ok() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _has_dask_cuda() -> bool:
    return importlib.util.find_spec("dask_cuda") is not None


def test_cuda_cluster_without_dask_cuda_or_gpu():
    if _has_dask_cuda() and _gpu_ok():
        pytest.skip("dask-cuda and a GPU are here: covered by test_cuda_cluster_one_worker_per_gpu")
    want = "needs the 'dask-cuda' package" if not _has_dask_cuda() else "no CUDA GPU available"
    with pytest.raises(InputError, match=want):
        cuda_cluster()


@pytest.mark.gpu
def test_cuda_cluster_one_worker_per_gpu():
    if not _has_dask_cuda():
        pytest.skip("dask-cuda is not installed (it pins dask/distributed versions other than the CPU "
                    "environment's; install it in the GPU environment)")
    import cupy
    from distributed import Client

    n = cupy.cuda.runtime.getDeviceCount()

    def device_of_worker():
        import cupy

        return int(cupy.cuda.runtime.getDevice()), os.environ.get("CUDA_VISIBLE_DEVICES", "")

    with cuda_cluster() as cluster, Client(cluster) as client:
        info = client.run(device_of_worker)
    assert len(info) == n
    assert len({v[1].split(",")[0] for v in info.values()}) == n  # each worker pinned to its own GPU
