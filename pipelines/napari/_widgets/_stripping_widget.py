"""Virtual stripping: scrub the stripped fraction, see the remaining lithium and the local current."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from ._common import LayerPicker, PlotPanel, WorkerMixin, meta, set_layer, voxel_size_um

REMAINING = "remaining Li"
CURRENT = "local current (× applied)"


def _is_thickness(layer) -> bool:
    return type(layer).__name__ == "Image" and layer.ndim == 2 and meta(layer).get("kind") == "map" \
        and meta(layer).get("map", "thickness_um") == "thickness_um"


class StrippingWidget(WorkerMixin, QWidget):
    """Strip a Li thickness map virtually and show what is left and where the current flows.

    "Strip" runs ``segment.virtual_stripping`` on the selected thickness map (um, NaN outside
    the electrode). The slider sets the stripped fraction of the capacity; the viewer then
    shows the remaining lithium (labels) and the primary current distribution on it
    (``segment.current_distribution``, relative to the applied current density), and the panel
    plots the active-area curve with the current point marked.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer or napari.components.ViewerModel
        The viewer.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._init_worker()
        self.result = None
        self.current = None
        self.fraction = None
        self.map_picker = LayerPicker(self.viewer, _is_thickness)
        self.electrolyte_spin = QDoubleSpinBox()
        self.electrolyte_spin.setRange(1.0, 10000.0)
        self.electrolyte_spin.setValue(50.0)
        self.electrolyte_spin.setSuffix(" µm")
        self.strip_button = QPushButton("Strip")
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 99)
        self.slider.setValue(64)
        self.value_label = QLabel("")
        self.plot = PlotPanel(n_axes=2, height_in=2.6)
        form = QFormLayout()
        form.addRow("thickness map", self.map_picker)
        form.addRow("electrolyte thickness", self.electrolyte_spin)
        form.addRow("stripped fraction (%)", self.slider)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        for w in (self.strip_button, self.value_label, self.plot, self.status):
            lay.addWidget(w)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(120)
        self._timer.timeout.connect(self.update_fraction)
        self.slider.valueChanged.connect(lambda *_: self._timer.start())
        self.strip_button.clicked.connect(self.strip)

    def strip(self) -> None:
        """Compute the stripping curves of the selected map (worker), then show the slider's fraction."""
        import segment

        layer = self.map_picker.layer()
        if layer is None:
            self.status.setText("no thickness map layer (2-D image with anodescope map metadata)")
            return
        t = np.asarray(layer.data, np.float64)
        px = voxel_size_um(layer)
        mask = np.isfinite(t)

        def work():
            return segment.virtual_stripping(np.where(mask, t, np.nan), px, mask=mask), layer.scale, mask

        def done(out):
            self.result, self._scale, self._mask = out
            self.update_fraction()

        self._start(work, on_done=done, desc="stripping")

    def update_fraction(self) -> None:
        """Remaining lithium and local current at the slider's stripped fraction (worker)."""
        import segment

        if self.result is None:
            return
        if self.busy:
            self._timer.start()
            return
        f = self.slider.value() / 100.0
        r = self.result
        el = self.electrolyte_spin.value()

        def work():
            remain = r.snapshot(f)
            cur = None
            if remain.any():
                cur = segment.current_distribution(remain, r.pixel_size_um, el, electrode_mask=self._mask, device="cpu")
            return f, remain, cur

        self._start(work, on_done=self._show, desc="local current")

    def _show(self, out) -> None:
        f, remain, cur = out
        self.fraction, self.current = f, cur
        scale = tuple(self._scale)
        set_layer(self.viewer, REMAINING, remain.astype(np.uint8), kind="labels", scale=scale)
        if cur is not None:
            c = np.asarray(cur.current_rel, np.float32)
            hi = float(np.nanpercentile(c[c > 0], 99.5)) if np.any(c > 0) else 1.0
            set_layer(self.viewer, CURRENT, c, scale=scale, colormap="turbo", contrast_limits=(0.0, max(hi, 1e-6)))
        r = self.result
        active = float(remain.sum() / r.n_valid) if r.n_valid else 0.0
        text = f"stripped {100 * f:.0f} %: active area {100 * active:.1f} %"
        if cur is not None:
            text += f", current ×{1 / active:.2f} mean, ×{cur.max_rel:.2f} peak"
        self.value_label.setText(text)
        self._draw(f, active, cur)

    def _draw(self, f, active, cur) -> None:
        r = self.result
        fig = self.plot.figure
        fig.clear()
        ax, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
        self.plot.axes = [ax, ax2]
        ax.plot(100 * r.stripped_fraction, 100 * r.active_fraction, color="tab:blue", label="active area")
        ax.plot([100 * f], [100 * active], "o", color="tab:red", label=f"{100 * f:.0f} % stripped")
        ax.set_xlabel("stripped capacity (%)")
        ax.set_ylabel("active area (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 105)
        ax.legend(loc="lower left", fontsize=8)
        if cur is not None:
            c = np.asarray(cur.current_rel, np.float64)
            ny, nx = c.shape
            px = r.pixel_size_um
            im = ax2.imshow(c, cmap="turbo", extent=(0, nx * px, ny * px, 0), vmin=0)
            fig.colorbar(im, ax=ax2, label="local / applied current")
            ax2.set_xlabel("x (µm)")
            ax2.set_ylabel("y (µm)")
        self.plot.draw()
