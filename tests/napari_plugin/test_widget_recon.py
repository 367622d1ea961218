"""Reconstruction widget: preview against the phantom and the direct API, centre finding,
chunked reconstruction in a worker, screenshot of the preview panel."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

import recon
from pipelines.napari import ReconstructionWidget

from .conftest import assert_not_blank, grab_image, wait_idle

N = 64
TRUE_CENTER = 33.0


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    phantom = recon.shepp_logan(N).astype(np.float32) * 0.05
    vol = np.stack([phantom, phantom, phantom])
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    proj = recon.simulate_scan(vol, theta, incident_counts=5e4, seed=0, center=TRUE_CENTER, width=N + 4,
                               pixel_size_um=1.0)
    path = recon.write_dxchange(tmp_path_factory.mktemp("rw") / "phantom.h5", proj)
    return path, phantom, theta


def _rel_err(img, phantom):
    n = phantom.shape[0]
    c0 = (img.shape[0] - n) // 2
    crop = img[c0:c0 + n, c0:c0 + n]
    return float(np.linalg.norm(crop - phantom) / np.linalg.norm(phantom))


def test_recon_widget(qtbot, viewer, scan_file, tmp_path):
    path, phantom, theta = scan_file
    w = ReconstructionWidget(viewer)
    qtbot.addWidget(w)
    w.path_edit.setText(str(path))
    w.load()
    wait_idle(qtbot, w)
    assert w.projections.shape == (120, 3, N + 4)
    assert w.center_spin.value() == pytest.approx((N + 3) / 2)

    # preview at the true centre: close to the phantom, equal to the API called directly
    w.row_spin.setValue(1)
    w.center_spin.setValue(TRUE_CENTER)
    w.preview()
    wait_idle(qtbot, w)
    img = viewer.layers["recon preview"].data
    good = _rel_err(img, phantom)
    assert good < 0.35
    p = recon.read_projections(path)
    sino = recon.minus_log(recon.normalize(np.asarray(p.data[:, 1:2]), np.asarray(p.flats[:, 1:2]),
                                           np.asarray(p.darks[:, 1:2])))[:, 0]
    direct = recon.reconstruct(sino, p.theta_rad, TRUE_CENTER)
    np.testing.assert_allclose(img, direct, atol=1e-5)

    # a wrong centre is visibly worse: what the slider is for; moving it alone updates the slice
    w.center_spin.setValue(TRUE_CENTER + 4)
    qtbot.waitUntil(lambda: w.last_preview["center"] == TRUE_CENTER + 4, timeout=30000)
    wait_idle(qtbot, w)
    assert _rel_err(viewer.layers["recon preview"].data, phantom) > good + 0.2

    # ring removal and a filter change go through the same path
    w.rings_combo.setCurrentText("sorting")
    w.filter_combo.setCurrentText("hann")
    w.center_spin.setValue(TRUE_CENTER)
    w.preview()
    wait_idle(qtbot, w)
    assert _rel_err(viewer.layers["recon preview"].data, phantom) < 0.4
    assert_not_blank(grab_image(w.plot))

    # automatic centre
    w.find_center()
    wait_idle(qtbot, w)
    assert abs(w.center_spin.value() - TRUE_CENTER) < 0.5

    # whole scan, chunked, in the worker; the result is opened lazily
    w.rings_combo.setCurrentText("none")
    w.filter_combo.setCurrentText("ramp")
    w.center_spin.setValue(TRUE_CENTER)
    qtbot.waitUntil(lambda: not w.busy, timeout=30000)
    w.out_edit.setText(str(tmp_path / "phantom.zarr"))
    w.run_all()
    wait_idle(qtbot, w, 60000)
    assert w.slabs_done >= 1
    ref, _ = recon.open_volume(tmp_path / "phantom.zarr")
    layer = viewer.layers["phantom"]
    data = layer.data[0] if layer.multiscale else layer.data
    np.testing.assert_array_equal(np.asarray(data), np.asarray(ref))
    assert _rel_err(np.asarray(ref[1]), phantom) < 0.35

    # closing the panel while a preview runs: the result is dropped, nothing touches deleted Qt objects
    qtbot.waitUntil(lambda: not w.busy and not w._timer.isActive(), timeout=30000)
    assert w.last_preview["center"] == TRUE_CENTER  # the slider's last value was previewed
    w.center_spin.setValue(TRUE_CENTER + 1)
    w.preview()
    assert w.busy
    w.close()
    qtbot.waitUntil(lambda: not w.busy, timeout=30000)
    assert w.last_preview["center"] == TRUE_CENTER  # the late result was not shown


@pytest.mark.gpu
def test_preview_gpu_equals_cpu(scan_file):
    from pipelines.napari._widgets._recon_widget import preview_slice

    path, _, _ = scan_file
    p = recon.read_projections(path)
    cpu = preview_slice(p, 1, TRUE_CENTER, rings="sorting", device="cpu")
    gpu = preview_slice(p, 1, TRUE_CENTER, rings="sorting", device="gpu")
    np.testing.assert_allclose(gpu, cpu, atol=1e-4 * float(np.abs(cpu).max()))
