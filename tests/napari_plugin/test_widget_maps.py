"""Maps widget: thickness/capacity/topology layers and roughness numbers from true phase labels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

import segment
from pipelines.napari import MapsWidget, make_cell_sample

from .conftest import assert_not_blank, grab_image, wait_idle


def test_maps_widget(qtbot, viewer):
    for d, kw, kind in make_cell_sample(shape=(40, 64, 64), seed=2):
        getattr(viewer, f"add_{kind}")(d, **kw)
    truth_t = viewer.layers["true Li thickness (µm)"].data
    w = MapsWidget(viewer)
    qtbot.addWidget(w)
    w.labels_picker.select("cell phases")
    assert w.li_label() == 2  # from the layer's phase names
    w.compute()
    wait_idle(qtbot, w)
    t = viewer.layers["Li thickness (µm)"].data
    inside = np.isfinite(truth_t)
    # voxel-boundary thickness agrees with the true (continuous) thickness within one voxel
    assert np.nanmax(np.abs(t[inside] - truth_t[inside])) <= 1.7 + 1e-4
    # capacity is thickness / 4.86 um per mAh cm^-2 (SCIENCE.md)
    cap = viewer.layers["capacity (mAh/cm²)"].data
    np.testing.assert_allclose(cap[inside], t[inside] / 4.86, rtol=1e-5)
    assert viewer.layers["Li thickness (µm)"].scale[-1] == pytest.approx(1.7)
    # roughness numbers in the panel are those of the API, and Ra of the top interface is the
    # mean absolute deviation of the plane-levelled top surface (plain NumPy)
    direct = segment.layer_maps(viewer.layers["cell phases"].data, voxel_size_um=1.7, li_label=2)
    ra = direct.metrics["interface_top"]["roughness"]["Ra"]
    assert f"Ra {ra:.3f} µm" in w.numbers.text()
    topo = viewer.layers["topology top (µm)"].data
    assert np.nanmean(np.abs(topo)) == pytest.approx(ra, rel=0.02)
    for name in ("thickness_um", "capacity_mah_cm2", "topology_top_um"):
        w.map_combo.setCurrentText(name)
        assert_not_blank(grab_image(w.plot))
