"""Maps: Li thickness, capacity and interface topology from phase labels, with roughness numbers."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ._common import LayerPicker, PlotPanel, WorkerMixin, level0, limits, meta, set_layer, voxel_size_um

MAPS = {
    "thickness_um": ("Li thickness (µm)", "viridis", "µm"),
    "capacity_mah_cm2": ("capacity (mAh/cm²)", "magma", "mAh/cm²"),
    "topology_bottom_um": ("topology bottom (µm)", "twilight_shifted", "µm"),
    "topology_top_um": ("topology top (µm)", "twilight_shifted", "µm"),
}


def roughness_text(metrics: dict) -> str:
    """Roughness numbers of both interfaces as panel text (um)."""
    lines = []
    t = metrics.get("thickness_um", {})
    if t:
        lines.append(f"Li thickness: mean {t.get('mean', float('nan')):.2f} µm, "
                     f"min {t.get('min', float('nan')):.2f}, max {t.get('max', float('nan')):.2f}")
    if "capacity_mah_cm2_mean" in metrics:
        lines.append(f"capacity: {metrics['capacity_mah_cm2_mean']:.3f} mAh/cm²")
    for name in ("bottom", "top"):
        r = metrics.get(f"interface_{name}", {}).get("roughness", {})
        if r:
            lines.append(f"{name} interface: Ra {r['Ra']:.3f} µm, Rq {r['Rq']:.3f} µm, Sz {r['Sz']:.2f} µm")
    return "\n".join(lines)


class MapsWidget(WorkerMixin, QWidget):
    """Compute and show thickness, capacity and topology maps of a phase-labels layer.

    The maps are added as image layers scaled in um; the panel draws the selected map with a
    colour bar in its unit and lists the roughness (Ra, Rq, Sz in um) of both Li interfaces.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer or napari.components.ViewerModel
        The viewer.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._init_worker()
        self.maps = None
        self.labels_picker = LayerPicker(self.viewer, lambda ly: type(ly).__name__ == "Labels" and ly.ndim == 3)
        self.li_combo = QComboBox()
        self.map_combo = QComboBox()
        self.map_combo.addItems(list(MAPS))
        self.compute_button = QPushButton("Compute maps")
        self.numbers = QLabel("")
        self.numbers.setWordWrap(True)
        self.plot = PlotPanel(height_in=3.2)
        form = QFormLayout()
        form.addRow("phase labels", self.labels_picker)
        form.addRow("lithium label", self.li_combo)
        form.addRow("show", self.map_combo)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        for w in (self.compute_button, self.numbers, self.plot, self.status):
            lay.addWidget(w)
        self.labels_picker.currentTextChanged.connect(self._phases)
        self.compute_button.clicked.connect(self.compute)
        self.map_combo.currentTextChanged.connect(lambda *_: self._draw())
        self._phases()

    def _phases(self, *_):
        layer = self.labels_picker.layer()
        phases = meta(layer).get("phases") if layer is not None else None
        self.li_combo.clear()
        if phases:
            self.li_combo.addItems([f"{k + 1}: {p}" for k, p in enumerate(phases)])
            li = next((k for k, p in enumerate(phases) if p in ("li", "lithium")), 1)
            self.li_combo.setCurrentIndex(li)
        else:
            self.li_combo.addItems([f"{k}" for k in range(1, 6)])
            self.li_combo.setCurrentIndex(1)

    def li_label(self) -> int:
        """The selected lithium label value."""
        return int(self.li_combo.currentText().split(":")[0])

    def compute(self) -> None:
        """Run ``segment.layer_maps`` on the labels (worker) and show the maps."""
        import segment

        layer = self.labels_picker.layer()
        if layer is None:
            self.status.setText("no 3-D labels layer")
            return
        labels = level0(layer)
        md = meta(layer)
        vs = voxel_size_um(layer)
        li = self.li_label()
        interfaces = md.get("interfaces_px")
        footprint = md.get("footprint")

        def work():
            return segment.layer_maps(np.asarray(labels), voxel_size_um=vs, li_label=li, axis=int(md.get("axis", 0)),
                                      interfaces_px=interfaces, mask=footprint)

        self._start(work, on_done=self._show, desc="computing maps")

    def _show(self, maps) -> None:
        self.maps = maps
        px = maps.pixel_size_um
        for key, (title, cmap, _unit) in MAPS.items():
            arr = np.asarray(getattr(maps, key), np.float32)
            set_layer(self.viewer, title, arr, scale=(px, px), colormap=cmap, contrast_limits=limits(arr),
                      metadata={"anodescope": {"kind": "map", "map": key, "pixel_size_um": px,
                                               "mask": np.asarray(maps.mask)}})
        self.numbers.setText(roughness_text(maps.metrics))
        self._draw()

    def _draw(self) -> None:
        if self.maps is None:
            return
        key = self.map_combo.currentText()
        title, cmap, unit = MAPS[key]
        arr = np.asarray(getattr(self.maps, key))
        ny, nx = arr.shape
        px = self.maps.pixel_size_um
        self.plot.figure.clear()
        ax = self.plot.figure.add_subplot(1, 1, 1)
        self.plot.axes = [ax]
        lo, hi = limits(arr)
        im = ax.imshow(arr, cmap=cmap, vmin=lo, vmax=hi, extent=(0, nx * px, ny * px, 0))
        self.plot.figure.colorbar(im, ax=ax, label=f"{title.split(' (')[0]} ({unit})")
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
        ax.set_title(title)
        self.plot.draw()
