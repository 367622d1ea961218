"""The Snakemake workflow (pipelines/workflow) and the ``anodescope workflow`` verb.

Lint, dry-run plans (100 scans, stage subsets, GPU and SLURM resources, resume after a
removed stage) and a real two-scan run of the sample study with ``--cores 2``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

pytest.importorskip("snakemake")

from pipelines import _cli_workflow  # noqa: E402
from pipelines.cli import build_parser, main  # noqa: E402

TOMO_CHAIN = ("reconstruct", "segment", "strip", "report")


def anodescope(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the command line in a fresh interpreter (as a user would), output captured."""
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(Path(sys.prefix) / "numba-cache"))
    return subprocess.run([sys.executable, "-m", "pipelines", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict:
    """Rule -> planned job count, from Snakemake's 'Job stats' table."""
    if "Nothing to be done" in output:
        return {}
    m = re.search(r"Job stats:\njob\s+count\n[- ]+\n(.*?)\ntotal\s+(\d+)", output, re.S)
    assert m, output[-3000:]
    counts = {}
    for line in m.group(1).splitlines():
        name, n = line.split()
        counts[name] = int(n)
    assert sum(counts.values()) == int(m.group(2))
    return counts


def job_blocks(output: str) -> dict:
    """(rule, scan) -> the text Snakemake prints for that planned job (input, resources, ...)."""
    blocks = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        if not head:
            continue
        scan = re.search(r"wildcards: scan=([A-Za-z0-9_.-]+)", block)
        blocks[(head.group(1), scan.group(1) if scan else None)] = block
    return blocks


def resources(block: str) -> dict:
    line = re.search(r"resources: (.*)", block).group(1)
    return dict(item.split("=", 1) for item in line.split(", "))


def write_study(folder: Path, scans: list[dict], **extra) -> Path:
    """A study YAML with inline scans; every path named by a scan exists (empty files)."""
    for scan in scans:
        for key, value in scan.items():
            if key not in ("id", "kind", "capacity_mah_cm2"):
                p = folder / value
                p.parent.mkdir(parents=True, exist_ok=True)
                if value.endswith(".zarr"):
                    p.mkdir(exist_ok=True)
                else:
                    p.touch()
    doc = {"study": "test", "out": "results", "scans": scans, **extra}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


SMALL_SCANS = [
    {"id": "cell_a", "kind": "tomo", "projections": "data/a.h5", "truth_thickness": "data/a_truth.npy"},
    {"id": "frames_1", "kind": "xcs", "frames": "data/f1.h5", "gradients": "data/g.txt",
     "intercepts": "data/i.txt", "geometry": "data/geo.yaml"},
    {"id": "cube_1", "kind": "xcs", "cube": "data/c1.zarr", "geometry": "data/geo.yaml",
     "regions": "data/regions.npy"},
]


# ----------------------------------------------------------------------------- lint and verb

def test_lint_is_clean(tmp_path):
    study = write_study(tmp_path, SMALL_SCANS)
    res = anodescope("workflow", study, "--lint")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in out
    assert "Lints for" not in out


def test_lint_check_catches_a_rule_without_log(tmp_path):
    """The lint check above can fail: the same Snakemake call flags a rule with no log file."""
    (tmp_path / "Snakefile").write_text('rule a:\n    output:\n        "x.txt"\n    shell:\n        "touch {output}"\n')
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    assert "Lints for rule a" in res.stdout + res.stderr
    assert "No log directive defined" in res.stdout + res.stderr


def test_arguments_after_double_dash_go_to_snakemake(tmp_path):
    args = build_parser().parse_args(["workflow", "s.yaml", "--cores", "2", "--dry-run", "--",
                                      "--forcerun", "segment", "--cores", "9"])
    assert args.config == "s.yaml" and args.cores == "2" and args.dry_run and not args.lint
    assert args.snakemake_args == ["--forcerun", "segment", "--cores", "9"]
    args = build_parser().parse_args(["workflow", "s.yaml"])
    assert args.snakemake_args == [] and args.profile == "local" and args.cores is None

    cmd = _cli_workflow.snakemake_command(tmp_path / "s.yaml", cores=2, profile="slurm", dry_run=True,
                                          extra=["--forcerun", "segment"])
    assert cmd[:3] == [sys.executable, "-m", "snakemake"]
    assert cmd[cmd.index("--snakefile") + 1] == str(_cli_workflow.SNAKEFILE)
    assert cmd[cmd.index("--configfile") + 1] == str((tmp_path / "s.yaml").resolve())
    assert cmd[cmd.index("--directory") + 1] == str(tmp_path.resolve())
    assert Path(cmd[cmd.index("--profile") + 1]) == _cli_workflow.PROFILES["slurm"]
    assert cmd[cmd.index("--cores") + 1] == "2"
    assert cmd[-3:] == ["--dry-run", "--forcerun", "segment"]


def test_user_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    assert main(["workflow", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.yaml" in err and "not found" in err

    study = write_study(tmp_path, SMALL_SCANS)
    assert main(["workflow", str(study), "--profile", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text(study.read_text().replace("study: test", "study: test\nstages: {segment: {medain: 3}}"))
    assert main(["workflow", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "medain" in err

    (tmp_path / "data" / "a.h5").unlink()
    assert main(["workflow", str(study), "--dry-run"]) == 2
    assert "a.h5" in capsys.readouterr().err

    real_find_spec = _cli_workflow.importlib.util.find_spec
    monkeypatch.setattr(_cli_workflow.importlib.util, "find_spec",
                        lambda name, *a: None if name == "snakemake" else real_find_spec(name, *a))
    assert main(["workflow", str(study)]) == 2
    err = capsys.readouterr().err
    assert "snakemake is not installed" in err and "pip install" in err


# ----------------------------------------------------------------------------- dry runs

def test_dry_run_plans_100_scans_in_under_10_s(tmp_path):
    """A scan sheet of 100 scans (tiny stand-in files): the exact jobs per rule, in < 10 s."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "geometry.yaml").write_text("{}\n")
    (data / "cube.zarr").mkdir()
    rows = []
    for i in range(100):
        if i % 5 < 3:  # 60 tomography scans, 20 of them with a truth map
            row = {"id": f"tomo_{i:03d}", "kind": "tomo", "projections": f"data/t{i:03d}.h5"}
            if i % 3 == 0:
                row["truth_thickness"] = f"data/t{i:03d}_truth.h5"
        elif i % 5 == 3:  # 20 XCS scans from raw frames
            row = {"id": f"xcs_{i:03d}", "kind": "xcs", "frames": f"data/f{i:03d}.h5",
                   "geometry": "data/geometry.yaml"}
        else:  # 20 XCS scans from a binned cube
            row = {"id": f"xcs_{i:03d}", "kind": "xcs", "cube": "data/cube.zarr", "geometry": "data/geometry.yaml"}
        for key in ("projections", "truth_thickness", "frames"):
            if key in row:
                (tmp_path / row[key]).write_bytes(b"\0")
        rows.append(row)
    cols = ["id", "kind", "projections", "truth_thickness", "frames", "cube", "geometry"]
    lines = ["\t".join(cols)] + ["\t".join(r.get(c, "") for c in cols) for r in rows]
    (tmp_path / "scans.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "study.yaml").write_text("study: batch\nout: results\nscan_sheet: scans.tsv\n")

    t0 = time.perf_counter()
    res = anodescope("workflow", tmp_path / "study.yaml", "--dry-run", "--cores", "2")
    seconds = time.perf_counter() - t0
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert seconds < 10.0, f"dry-run of 100 scans took {seconds:.1f} s"

    tomo = [r for r in rows if r["kind"] == "tomo"]
    xcs = [r for r in rows if r["kind"] == "xcs"]
    expected = {"reconstruct": len(tomo), "segment": len(tomo), "strip": len(tomo),
                "hexitec": sum("frames" in r for r in xcs), "compton": len(xcs), "report": len(rows),
                "study_report": 1, "all": 1}
    assert expected == {"reconstruct": 60, "segment": 60, "strip": 60, "hexitec": 20, "compton": 40,
                        "report": 100, "study_report": 1, "all": 1}
    assert job_counts(out) == expected
    assert not (tmp_path / "results").exists()  # a dry run writes nothing

    blocks = job_blocks(out)
    # each rule reads the scan's own files and its upstream stage
    assert "input: data/t000.h5\n" in blocks[("reconstruct", "tomo_000")]
    seg = blocks[("segment", "tomo_000")]
    assert "results/tomo_000/reconstruct/stage.json" in seg and "data/t000_truth.h5" in seg
    assert "results/xcs_003/hexitec/stage.json" in blocks[("compton", "xcs_003")]
    assert "data/cube.zarr" in blocks[("compton", "xcs_004")]
    rep = re.search(r"input: (.*)", blocks[("report", "tomo_000")]).group(1).split(", ")
    assert sorted(rep) == sorted(f"results/tomo_000/{s}/stage.json" for s in TOMO_CHAIN[:-1])
    assert "benchmark: results/benchmarks/tomo_000.segment.tsv" in seg
    assert "log: results/logs/tomo_000.segment.log" in seg


def test_dry_run_stage_subset_gpu_and_slurm_resources(tmp_path):
    """`run:` subset (upstream stages still made), GPU only where asked, SLURM profile resources."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    study = write_study(tmp_path, SMALL_SCANS, run=["segment", "compton"],
                        stages={"reconstruct": {"device": "gpu", "memory_limit": "3GB"},
                                "segment": {"device": "cpu"}})
    res = anodescope("workflow", study, "--dry-run", "--profile", "slurm")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    # segment needs reconstruct, compton of the frames scan needs hexitec; no strip, no reports
    assert job_counts(out) == {"reconstruct": 1, "segment": 1, "hexitec": 1, "compton": 2, "all": 1}
    blocks = job_blocks(out)
    rec = resources(blocks[("reconstruct", "cell_a")])
    assert rec["gpu"] == "1" and rec["runtime"] == "120" and rec["slurm_partition"] == "batch"
    assert int(rec["mem_mb"]) == 2000 + 2 * 3000  # base + twice the slab memory limit
    seg = resources(blocks[("segment", "cell_a")])
    assert seg["gpu"] == "0" and seg["runtime"] == "60" and seg["slurm_partition"] == "batch"
    assert resources(blocks[("compton", "cube_1")])["gpu"] == "0"


def test_slurm_profile_keys_are_snakemake_and_plugin_options():
    """Every key of the SLURM profile is a Snakemake option; resources the plugin reads."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake.cli import get_argument_parser

    doc = yaml.safe_load((_cli_workflow.PROFILES["slurm"] / "config.yaml").read_text())
    parser = get_argument_parser()
    options = {o.lstrip("-") for a in parser._actions for o in a.option_strings}
    assert set(doc) <= options, set(doc) - options
    assert doc["executor"] == "slurm"
    assert {"slurm_partition", "runtime", "mem_mb"} <= set(doc["default-resources"])
    local = yaml.safe_load((_cli_workflow.PROFILES["local"] / "config.yaml").read_text())
    assert set(local) <= options, set(local) - options
    assert "gpu=1" in local["resources"]  # GPU jobs one at a time locally


# ----------------------------------------------------------------------------- a real run

def test_two_scan_sample_study_runs_with_2_cores_then_nothing_to_do(tmp_path):
    from pipelines import samples

    full = samples.make_sample_study(tmp_path / "sample", size="test")
    doc = yaml.safe_load(full.read_text())
    tomo = next(s for s in doc["scans"] if s["kind"] == "tomo" and "truth_thickness" in s)
    xcs = next(s for s in doc["scans"] if s["kind"] == "xcs" and "frames" in s)
    # the sample's frames scan is a detector acquisition (hexitec only); with a geometry the
    # workflow also runs compton on it, so that every rule of the workflow runs here
    geometry = yaml.safe_load((full.parent / "data" / "xcs_geometry.yaml").read_text())
    with h5py.File(full.parent / xcs["frames"], "r") as fh:
        geometry["shape"] = list(fh[next(iter(fh))].shape[1:])
    (full.parent / "data" / "frames_geometry.yaml").write_text(yaml.safe_dump(geometry))
    xcs = dict(xcs, geometry="data/frames_geometry.yaml")
    doc["scans"] = [tomo, xcs]
    study = full.with_name("two_scans.yaml")
    study.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = study.parent / doc["out"]

    res = anodescope("workflow", study, "--cores", "2", cwd=tmp_path)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    chains = {tomo["id"]: TOMO_CHAIN, xcs["id"]: ("hexitec", "compton", "report")}
    for scan, chain in chains.items():
        for stage in chain:
            rec = json.loads((out / scan / stage / "stage.json").read_text())
            assert rec["scan"] == scan and rec["stage"] == stage
            bench = (out / "benchmarks" / f"{scan}.{stage}.tsv").read_text().splitlines()
            assert bench[0].split("\t")[0] == "s" and float(bench[1].split("\t")[0]) > 0
            assert (out / "logs" / f"{scan}.{stage}.log").is_file()
        assert (out / scan / "report" / "index.html").stat().st_size > 0
    assert (out / "report.html").stat().st_size > 0
    assert not list(out.glob("*/*.partial"))

    # the measured mean Li thickness is the simulated one within two voxels
    seg = json.loads((out / tomo["id"] / "segment" / "stage.json").read_text())["metrics"]
    truth = np.load(study.parent / tomo["truth_thickness"])
    voxel_um = seg["voxel_size"]["value"]
    assert abs(seg["thickness_mean"]["value"] - np.nanmean(truth)) < 2 * voxel_um

    again = anodescope("workflow", study, "--cores", "2", cwd=tmp_path)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr

    # resume: a removed stage is made again with everything downstream of it, nothing else
    (out / tomo["id"] / "segment" / "stage.json").unlink()
    plan = anodescope("workflow", study, "--dry-run", cwd=tmp_path)
    assert plan.returncode == 0, (plan.stdout + plan.stderr)[-3000:]
    assert job_counts(plan.stdout + plan.stderr) == {"segment": 1, "strip": 1, "report": 1, "study_report": 1,
                                                     "all": 1}


@pytest.mark.gpu
def test_gpu_reconstruct_job_matches_cpu_job(tmp_path):
    """With `device: gpu` the reconstruct job asks for the GPU and gives the CPU job's volume."""
    from pipelines import samples

    import warnings

    import zarr

    full = samples.make_sample_study(tmp_path / "sample", size="test")
    doc = yaml.safe_load(full.read_text())
    tomo = next(s for s in doc["scans"] if s["kind"] == "tomo")
    volumes = {}
    for device in ("cpu", "gpu"):
        d = dict(doc, scans=[tomo], out=f"results_{device}", run=["reconstruct"])
        d["stages"] = dict(doc.get("stages") or {})
        d["stages"]["reconstruct"] = {**d["stages"].get("reconstruct", {}), "device": device}
        study = full.with_name(f"{device}.yaml")
        study.write_text(yaml.safe_dump(d, sort_keys=False))
        res = anodescope("workflow", study, "--cores", "2", cwd=tmp_path)
        log = res.stdout + res.stderr
        assert res.returncode == 0, log[-3000:]
        assert re.search(rf"gpu={1 if device == 'gpu' else 0}\b", log)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group = zarr.open_group(str(full.parent / d["out"] / tomo["id"] / "reconstruct" / "volume.zarr"), mode="r")
            volumes[device] = np.asarray(group["0"][...], dtype=np.float64)
    cpu, gpu = volumes["cpu"], volumes["gpu"]
    assert cpu.shape == gpu.shape
    assert np.sqrt(np.mean((gpu - cpu) ** 2)) < 1e-3 * np.sqrt(np.mean(cpu ** 2)) + 1e-12
