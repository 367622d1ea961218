"""Segmentation: automatic thresholds or a classifier trained on brushed labels, shown as labels."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

from ._common import LayerPicker, PlotPanel, WorkerMixin, level0, meta, voxel_size_um

RESULT = "layers"
TRAINING = "training"


def _is_volume(layer) -> bool:
    return type(layer).__name__ == "Image" and layer.ndim == 3 and meta(layer).get("kind") not in ("cube", "projections")


class SegmentationWidget(WorkerMixin, QWidget):
    """Label the layers of a cell volume (z stacking axis) and train a classifier from brushed labels.

    Buttons: "Segment (thresholds)" runs ``segment.segment_layers`` with multi-Otsu or k-means;
    "New training labels" adds an empty labels layer to brush (value k = k-th phase name);
    "Train and apply" trains ``segment.train_classifier`` on it and segments with the forest.
    The result is the labels layer "layers" (1..n in the order of the phases).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer or napari.components.ViewerModel
        The viewer.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._init_worker()
        self.info: dict | None = None
        self.classifier = None
        self.volume_picker = LayerPicker(self.viewer, _is_volume)
        self.phases_edit = QLineEdit("collector,li,electrolyte")
        self.method_combo = QComboBox()
        self.method_combo.addItems(("multiotsu", "kmeans"))
        self.segment_button = QPushButton("Segment (thresholds)")
        self.training_button = QPushButton("New training labels")
        self.train_button = QPushButton("Train and apply")
        self.plot = PlotPanel(height_in=2.6)
        form = QFormLayout()
        form.addRow("volume", self.volume_picker)
        form.addRow("phases (bottom to top)", self.phases_edit)
        form.addRow("threshold method", self.method_combo)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        for w in (self.segment_button, self.training_button, self.train_button, self.plot, self.status):
            lay.addWidget(w)
        self.segment_button.clicked.connect(self.segment)
        self.training_button.clicked.connect(self.new_training_layer)
        self.train_button.clicked.connect(self.train_and_apply)

    def phases(self) -> tuple[str, ...]:
        """Phase names from the text box, bottom to top."""
        return tuple(p.strip().lower() for p in self.phases_edit.text().split(",") if p.strip())

    def _volume(self):
        layer = self.volume_picker.layer()
        if layer is None:
            self.status.setText("no 3-D image layer to segment")
            return None, None
        return layer, np.asarray(level0(layer), np.float32)

    def segment(self) -> None:
        """Segment with automatic thresholds (worker)."""
        import segment

        layer, vol = self._volume()
        if layer is None:
            return
        phases, method = self.phases(), self.method_combo.currentText()

        def work():
            return segment.segment_layers(vol, phases, axis=0, method=method, return_info=True)

        self._start(work, on_done=lambda r: self._show(layer, r, phases), desc="segmenting")

    def new_training_layer(self):
        """Add an empty labels layer "training" on the volume grid to brush annotations into."""
        layer, vol = self._volume()
        if layer is None:
            return None
        if TRAINING in self.viewer.layers:
            return self.viewer.layers[TRAINING]
        lab = self.viewer.add_labels(np.zeros(vol.shape, np.uint8), name=TRAINING, scale=layer.scale)
        self.status.setText(f"brush labels 1..{len(self.phases())} = {', '.join(self.phases())} (a few slices)")
        return lab

    def train_and_apply(self) -> None:
        """Train the random forest on the "training" layer and segment with it (worker)."""
        import segment

        layer, vol = self._volume()
        if layer is None:
            return
        if TRAINING not in self.viewer.layers:
            self.status.setText("add and brush the training labels first")
            return
        ann = np.asarray(self.viewer.layers[TRAINING].data)
        phases = self.phases()

        def work():
            clf = segment.train_classifier(vol, ann, class_names=phases, n_estimators=30)
            labels, info = segment.segment_layers(vol, phases, axis=0, method=clf, return_info=True)
            return clf, (labels, info)

        def done(result):
            self.classifier = result[0]
            self._show(layer, result[1], phases)

        self._start(work, on_done=done, desc="training and applying the classifier")

    def _show(self, layer, result, phases) -> None:
        labels, info = result
        self.info = info
        md = {"anodescope": {"kind": "labels", "phases": list(info.get("phases", phases)), "axis": 0,
                             "voxel_size_um": voxel_size_um(layer),
                             "interfaces_px": np.asarray(info.get("interfaces_px")),
                             "footprint": np.asarray(info.get("footprint"))}}
        if RESULT in self.viewer.layers:
            self.viewer.layers.remove(RESULT)
        self.viewer.add_labels(np.asarray(labels), name=RESULT, scale=layer.scale, metadata=md)
        self._draw(np.asarray(level0(layer)), np.asarray(labels), md["anodescope"]["phases"], voxel_size_um(layer))

    def _draw(self, vol, labels, phases, vs) -> None:
        """A vertical (z, x) section through the middle: volume in grey, phases in colour."""
        from matplotlib.colors import ListedColormap

        fig = self.plot.figure
        fig.clear()
        ax = fig.add_subplot(1, 1, 1)
        self.plot.axes = [ax]
        y = labels.shape[1] // 2
        nz, nx = labels.shape[0], labels.shape[2]
        ext = (0, nx * vs, 0, nz * vs)
        ax.imshow(vol[:, y, :], cmap="gray", origin="lower", extent=ext, aspect="auto")
        colours = ["#00000000", "#c87828", "#3ca0ff", "#78c85a", "#c850c8", "#e0e040"]
        cmap = ListedColormap(colours[: len(phases) + 1])
        ax.imshow(np.ma.masked_equal(labels[:, y, :], 0), cmap=cmap, vmin=0, vmax=len(phases), alpha=0.45,
                  origin="lower", extent=ext, aspect="auto", interpolation="nearest")
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("z (µm)")
        ax.set_title("section y = %d: %s" % (y, ", ".join(f"{k + 1} {p}" for k, p in enumerate(phases))), fontsize=8)
        self.plot.draw()
