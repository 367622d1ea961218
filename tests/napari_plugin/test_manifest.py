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


@pytest.fixture
def registered():
    """The manifest registered with npe2 (as the entry point does once the package is installed)."""
    pm = npe2.PluginManager.instance()
    added = "anodescope" not in pm._manifests
    if added:
        pm.register(npe2.PluginManifest.from_file(MANIFEST))
    yield pm
    if added:
        pm.unregister("anodescope")


def test_napari_uses_the_contributions(registered, viewer, tmp_path):
    """napari's own open / open_sample / save go through the manifest's reader, sample and writer."""
    import numpy as np

    viewer.open_sample("anodescope", "anode_free_cell")
    assert {"cell attenuation", "cell phases"} <= {ly.name for ly in viewer.layers}
    phases = viewer.layers["cell phases"]
    out = tmp_path / "phases.zarr"
    written = npe2.write(str(out), [phases.as_layer_data_tuple()], plugin_name="anodescope")
    assert written == [str(out)]
    layers = viewer.open(str(out), plugin="anodescope")
    np.testing.assert_array_equal(np.asarray(layers[0].data), np.asarray(phases.data))
    assert layers[0].scale[0] == pytest.approx(1.7)
