"""Compton: EMF map with uncertainty; a click on a pixel plots its spectrum and Compton profile."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from ._common import LayerPicker, PlotPanel, WorkerMixin, limits, meta, set_layer

EMF = "EMF"
SIGMA = "EMF uncertainty (1σ)"


class ComptonWidget(WorkerMixin, QWidget):
    """EMF and uncertainty maps of a spectral cube; spectrum and profile of a clicked pixel.

    "Compute EMF" runs ``compton.emf_map`` (per-pixel scattering angle from the geometry of
    the layer or of a YAML file, 115 keV and 90 degrees otherwise). Clicking a pixel of the
    EMF layer (or calling :meth:`show_pixel`) plots its spectrum (counts vs keV) and its
    profile J(p_z) from ``compton.compton_profile`` with the valence (|p_z| <= low) and core
    (low < |p_z| <= high) windows shaded.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer or napari.components.ViewerModel
        The viewer.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._init_worker()
        self.cube = None
        self.geometry = None
        self.result = None
        self.pixel = None
        self.profile = None
        self.cube_picker = LayerPicker(self.viewer, lambda ly: meta(ly).get("kind") == "cube" and ly.ndim == 3)
        self.geometry_edit = QLineEdit()
        self.geometry_edit.setPlaceholderText("geometry YAML (optional; the layer's geometry otherwise)")
        self.low_spin = QDoubleSpinBox()
        self.low_spin.setRange(0.1, 10.0)
        self.low_spin.setValue(1.0)
        self.high_spin = QDoubleSpinBox()
        self.high_spin.setRange(0.2, 20.0)
        self.high_spin.setValue(5.0)
        self.compute_button = QPushButton("Compute EMF")
        self.pixel_label = QLabel("click a pixel of the EMF map")
        self.plot = PlotPanel(n_axes=2, height_in=2.4)
        form = QFormLayout()
        form.addRow("spectral cube", self.cube_picker)
        form.addRow("geometry", self.geometry_edit)
        form.addRow("valence window |p_z| ≤ (a.u.)", self.low_spin)
        form.addRow("core window |p_z| ≤ (a.u.)", self.high_spin)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        for w in (self.compute_button, self.pixel_label, self.plot, self.status):
            lay.addWidget(w)
        self.compute_button.clicked.connect(self.compute)

    def _geometry(self, layer):
        import compton

        path = self.geometry_edit.text().strip()
        if path:
            return compton.read_geometry(path, shape=tuple(self.cube.counts.shape[:2]))
        return meta(layer).get("geometry")

    def compute(self) -> None:
        """EMF map of the selected cube (worker), added as "EMF" and "EMF uncertainty (1σ)"."""
        import compton

        layer = self.cube_picker.layer()
        if layer is None:
            self.status.setText("no spectral cube layer")
            return
        self.cube = meta(layer)["cube"]
        self.geometry = self._geometry(layer)
        low, high = self.low_spin.value(), self.high_spin.value()
        cube, geo = self.cube, self.geometry

        def work():
            return compton.emf_map(cube, geometry=geo, low=low, high=high, device="cpu")

        self._start(work, on_done=self._show, desc="EMF map")

    def _show(self, res) -> None:
        self.result = res
        emf = np.asarray(res.emf, np.float32)
        sig = np.asarray(res.sigma, np.float32)
        layer = set_layer(self.viewer, EMF, emf, colormap="viridis", contrast_limits=limits(emf),
                          metadata={"anodescope": {"kind": "emf"}})
        set_layer(self.viewer, SIGMA, sig, colormap="magma", contrast_limits=limits(sig), visible=False)
        if self._on_click not in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.append(self._on_click)

    def _on_click(self, layer, event):
        r, c = (int(round(v)) for v in layer.world_to_data(event.position)[-2:])
        if 0 <= r < layer.data.shape[0] and 0 <= c < layer.data.shape[1]:
            self.show_pixel(r, c)

    def angle_rad(self, row: int, col: int) -> tuple[float, float]:
        """(E0 in keV, scattering angle in radians) of a detector pixel."""
        if self.geometry is None:
            return 115.0, float(np.pi / 2)
        return float(self.geometry.e0_kev), float(np.asarray(self.geometry.scattering_angles())[row, col])

    def show_pixel(self, row: int, col: int) -> None:
        """Plot the spectrum and Compton profile of pixel (row, col) with the EMF windows shaded."""
        import compton

        if self.cube is None:
            return
        spec = np.asarray(self.cube.counts[row, col], np.float64)
        edges = np.asarray(self.cube.bin_edges_kev, np.float64)
        e = 0.5 * (edges[1:] + edges[:-1])
        e0, theta = self.angle_rad(row, col)
        low, high = self.low_spin.value(), self.high_spin.value()
        prof = compton.compton_profile(spec, edges, e0, theta, pz_max=high + 2)
        self.pixel, self.profile = (row, col), prof
        pz_e = np.asarray(compton.pz_from_energy(e, e0, theta))
        ax, ax2 = self.plot.axes
        ax.clear()
        ax.step(e, spec, where="mid", color="k", lw=0.8)
        for lo_, hi_, color, label in ((-low, low, "tab:orange", "valence"), (-high, -low, "tab:blue", "core"),
                                      (low, high, "tab:blue", None)):
            sel = (pz_e >= lo_) & (pz_e <= hi_)
            if sel.any():
                ax.axvspan(e[sel].min(), e[sel].max(), color=color, alpha=0.25, label=label)
        near = np.abs(pz_e) <= high + 2
        if near.any():
            ax.set_xlim(e[near].min() - 1.0, e[near].max() + 1.0)
        ax.set_xlabel("energy (keV)")
        ax.set_ylabel("counts")
        ax.legend(fontsize=8, loc="upper left")
        ax2.clear()
        ax2.plot(prof.pz, prof.J, color="k", lw=1)
        ax2.fill_between(prof.pz, prof.J - prof.sigma, prof.J + prof.sigma, color="0.7")
        ax2.axvspan(-low, low, color="tab:orange", alpha=0.25)
        ax2.axvspan(-high, -low, color="tab:blue", alpha=0.25)
        ax2.axvspan(low, high, color="tab:blue", alpha=0.25)
        ax2.set_xlabel("p_z (a.u.)")
        ax2.set_ylabel("J (a.u.⁻¹)")
        text = f"pixel ({row}, {col}), θ = {np.degrees(theta):.2f}°"
        if self.result is not None:
            text += f": EMF {float(self.result.emf[row, col]):.3f} ± {float(self.result.sigma[row, col]):.3f}"
        self.pixel_label.setText(text)
        ax2.set_title(text, fontsize=8)
        self.plot.draw()
