"""The npe2 manifest validates and every command it names resolves to a callable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

MANIFEST = Path(__file__).resolve().parents[2] / "pipelines" / "napari" / "napari.yaml"


def test_manifest_validates_and_imports():
    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "anodescope"
    pm.validate_imports()  # raises when a python_name does not import
    kinds = {c.id.split(".")[1] for c in pm.contributions.commands}
    assert {"get_reader", "write_labels", "make_cell_sample", "make_xcs_sample"} <= kinds
    assert len(pm.contributions.widgets) == 5
    assert len(pm.contributions.sample_data) == 2
    assert pm.contributions.writers[0].layer_types == ["labels"]


def test_npe2_validate_cli():
    exe = shutil.which("npe2") or str(Path(sys.executable).with_name("npe2"))
    if not Path(exe).exists():
        pytest.skip("npe2 command not installed")
    r = subprocess.run([exe, "validate", str(MANIFEST)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid" in (r.stdout + r.stderr).lower()
