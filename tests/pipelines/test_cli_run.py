"""``anodescope run``: user errors exit 2 with one line before any work; --scan/--stage/--force/--quiet."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main


def _helpers():
    spec = importlib.util.spec_from_file_location("_anodescope_test_stages", Path(__file__).with_name("test_stages.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_run")
    h = _helpers()
    h.make_tiny_study(folder, n_frames=300)
    return folder, h


def _run(capsys, *argv):
    capsys.readouterr()
    code = main(["run", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _edit(path: Path, change) -> Path:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    new = path.with_name("edited.yaml")
    new.write_text(yaml.safe_dump(doc, sort_keys=False))
    return new


@pytest.mark.parametrize("change, message", [
    (lambda d: d["stages"]["reconstruct"].update(algoritm="fbp"),
     "edited.yaml: stages.reconstruct.algoritm: unknown key (allowed: algorithm, center, device, filter_name, "
     "flat_method, memory_limit, ring_size, rings, rows_per_chunk, zingers)"),
    (lambda d: d["stages"]["reconstruct"].update(algorithm="fbpx"),
     "edited.yaml: stages.reconstruct.algorithm: 'fbpx' is not one of ['fourier', 'fbp']"),
    (lambda d: d["scans"][0].update(projections="missing.h5"),
     "edited.yaml: scans[0].projections: file not found: {folder}/missing.h5"),
    (lambda d: d["scans"][0].update(frames="frames.h5"),
     "edited.yaml: scans[0].frames: not allowed for a scan of kind 'tomo'"),
    (lambda d: d["scans"][1].update(kind="tomo"),
     "edited.yaml: scans[1].projections: missing required key"),
])
def test_config_errors_exit_2_before_any_work(tiny, capsys, change, message):
    folder, h = tiny
    y = _edit(h.write_study(folder, "base.yaml", out="never"), change)
    code, out, err = _run(capsys, y)
    assert code == 2
    assert err == f"anodescope run: error: {message.format(folder=folder.resolve())}\n"
    assert not (folder / "never").exists()


def test_selection_errors_exit_2(tiny, capsys):
    folder, h = tiny
    y = h.write_study(folder, "sel.yaml", out="sel")
    code, _, err = _run(capsys, y, "--stage", "segmnt")
    assert code == 2 and "unknown stage 'segmnt'" in err
    code, _, err = _run(capsys, y, "--scan", "nope")
    assert code == 2 and "no scan 'nope' (scans: cell, xf, xc)" in err
    code, _, err = _run(capsys, y, "--stage", "segment")
    assert code == 2
    assert err.strip() == ("anodescope run: error: sel.yaml: scan 'cell': stage 'segment' needs 'reconstruct', "
                           "which has not run and is not selected; run it first (anodescope run CONFIG "
                           "--scan cell --stage reconstruct)")
    assert not (folder / "sel").exists()
    code, _, err = _run(capsys, y, "--scan", "xc", "--stage", "reconstruct")
    assert code == 2 and "no stage to run" in err
    code, _, err = _run(capsys, folder / "nothere.yaml")
    assert code == 2 and "nothere.yaml: config file not found" in err


def test_stage_by_stage_as_snakemake_calls_it(tiny, capsys):
    folder, h = tiny
    y = h.write_study(folder, "steps.yaml", out="steps", scans=("cell",), run=["reconstruct", "segment", "strip"])
    code, out, _ = _run(capsys, y, "--scan", "cell", "--stage", "reconstruct")
    assert code == 0
    assert "[cell] reconstruct: running" in out and "[cell] reconstruct: done in" in out
    assert (folder / "steps" / "cell" / "reconstruct" / "stage.json").exists()
    assert not (folder / "steps" / "cell" / "segment").exists()
    code, out, _ = _run(capsys, y, "--scan", "cell", "--stage", "segment")
    assert code == 0 and "[cell] segment: done" in out and "reconstruct" not in out
    assert not (folder / "steps" / "cell" / "strip").exists()
    # rerun: skipped, quiet prints nothing
    code, out, _ = _run(capsys, y, "--stage", "reconstruct,segment")
    assert code == 0 and out.count("skipped (complete") == 2
    code, out, err = _run(capsys, y, "--quiet")
    assert code == 0 and out == ""
    assert (folder / "steps" / "cell" / "strip" / "stage.json").exists()
    study = json.loads((folder / "steps" / "study.json").read_text())
    assert set(study["scans"]["cell"]["stages"]) == {"reconstruct", "segment", "strip"}
    before = json.loads((folder / "steps" / "cell" / "strip" / "stage.json").read_text())
    code, out, _ = _run(capsys, y, "--stage", "strip", "--force")
    assert code == 0 and "[cell] strip: running" in out
    after = json.loads((folder / "steps" / "cell" / "strip" / "stage.json").read_text())
    assert after["hash"] == before["hash"] and after["metrics"] == before["metrics"]
    assert after["started"] >= before["started"]


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for opt in ("--scan", "--stage", "--scheduler", "--force", "--quiet"):
        assert opt in text
