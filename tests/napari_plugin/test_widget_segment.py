"""Segmentation widget: threshold labels and classifier labels against the sample's true phases."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

import segment
from pipelines.napari import SegmentationWidget, make_cell_sample

from .conftest import assert_not_blank, grab_image, wait_idle


@pytest.fixture
def cell(viewer):
    for d, kw, kind in make_cell_sample(shape=(40, 64, 64), seed=1):
        getattr(viewer, f"add_{kind}")(d, **kw)
    truth = np.asarray(viewer.layers["cell phases"].data).copy()
    truth[truth == 4] = 0  # pores are not a layer
    return viewer.layers["cell attenuation"], truth


def _agreement(labels, truth):
    """Fraction of correct voxels away from the cell rim (the footprint is eroded there by design),
    checking too that nowhere is a voxel given a wrong phase (0 = unassigned is allowed at the rim)."""
    from scipy import ndimage

    cell = (truth > 0).any(axis=0)
    inner = ndimage.binary_erosion(cell, iterations=3)[None] & (truth > 0)
    wrong = (labels > 0) & (truth > 0) & (labels != truth)
    assert wrong.sum() <= 0.01 * (truth > 0).sum()
    return float(np.mean(labels[inner] == truth[inner]))


def test_threshold_segmentation(qtbot, viewer, cell):
    vol_layer, truth = cell
    w = SegmentationWidget(viewer)
    qtbot.addWidget(w)
    w.volume_picker.select("cell attenuation")
    w.segment()
    wait_idle(qtbot, w)
    lab = viewer.layers["layers"]
    assert lab.scale[0] == pytest.approx(1.7)
    assert _agreement(np.asarray(lab.data), truth) > 0.99
    direct = segment.segment_layers(np.asarray(vol_layer.data), ("collector", "li", "electrolyte"), axis=0)
    np.testing.assert_array_equal(lab.data, direct)
    assert lab.metadata["anodescope"]["phases"] == ["collector", "li", "electrolyte"]
    assert_not_blank(grab_image(w.plot))


def test_classifier_from_brushed_labels(qtbot, viewer, cell):
    _, truth = cell
    w = SegmentationWidget(viewer)
    qtbot.addWidget(w)
    w.volume_picker.select("cell attenuation")
    training = w.new_training_layer()
    # "brush" three y-slices with the true phases (what a user paints), nothing elsewhere
    ann = np.zeros_like(truth, dtype=np.uint8)
    for y in (12, 32, 52):
        ann[:, y, :] = truth[:, y, :]
    training.data = ann
    w.train_and_apply()
    wait_idle(qtbot, w, 60000)
    assert w.classifier is not None and tuple(w.classifier.class_names) == ("collector", "li", "electrolyte")
    assert _agreement(np.asarray(viewer.layers["layers"].data), truth) > 0.97
