"""Reconstruction preview: one slice at a chosen rotation centre, ring removal and filter;
the chunked reconstruction of the whole scan to OME-Zarr in a worker thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLineEdit, QProgressBar,
                            QPushButton, QSpinBox, QVBoxLayout, QWidget)

from ._common import LayerPicker, PlotPanel, WorkerMixin, limits, meta, set_layer

RINGS = ("none", "sorting", "all", "fw")
PREVIEW = "recon preview"


def _remove_rings(sino, rings: str):
    import recon

    if rings == "sorting":
        return recon.remove_stripes_sorting(sino, size=min(21, max(3, sino.shape[-1] // 16) | 1))
    if rings == "all":
        return recon.remove_all_stripes(sino)
    if rings == "fw":
        return recon.remove_stripes_fw(sino)
    return sino


def sinogram(proj, row: int):
    """Minus-log sinogram (angle, col) of one detector row of a :class:`recon.Projections`."""
    import recon

    data = np.asarray(proj.data[:, row:row + 1, :], np.float32)
    flats = None if proj.flats is None else np.asarray(proj.flats[:, row:row + 1, :], np.float32)
    darks = None if proj.darks is None else np.asarray(proj.darks[:, row:row + 1, :], np.float32)
    if flats is None:
        flats = np.full(data.shape[1:], float(np.percentile(data, 99.9)), np.float32)
    return recon.minus_log(recon.normalize(data, flats, darks))[:, 0, :]


def preview_slice(proj, row: int, center: float, *, rings: str = "none", filter_name: str = "ramp",
                  algorithm: str = "fourier", sino=None, device: str = "auto"):
    """Reconstruct one detector row (the preview).

    Parameters
    ----------
    proj : recon.Projections
        The scan.
    row : int
        Detector row (pixels).
    center : float
        Rotation axis in detector columns (pixels).
    rings : {"none", "sorting", "all", "fw"}
        Stripe removal on the sinogram.
    filter_name, algorithm : str
        As in ``recon.reconstruct``.
    sino : ndarray, optional
        The row's minus-log sinogram (angle, col), when already computed.
    device : {"auto", "cpu", "gpu"}
        Where to reconstruct.

    Returns
    -------
    ndarray (W, W) float32
        Attenuation per pixel, on the host.
    """
    import recon

    s = sinogram(proj, row) if sino is None else sino
    s = _remove_rings(s, rings)
    img = recon.reconstruct(s, proj.theta_rad, center, algorithm=algorithm, filter_name=filter_name,
                            device=device)
    return img.get() if hasattr(img, "get") else np.asarray(img)


class ReconstructionWidget(WorkerMixin, QWidget):
    """Pick a slice, slide the rotation centre (pixels) and see the slice; reconstruct the scan.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer or napari.components.ViewerModel
        The viewer the layers go to.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._init_worker()
        self.projections = None
        self._sino_cache: dict = {}
        self.last_preview = None
        self.output_path: Path | None = None
        self.slabs_done = 0

        self.scan_picker = LayerPicker(self.viewer, lambda ly: meta(ly).get("kind") == "projections")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("scan file (DXchange / NXtomo HDF5) or pick a projections layer")
        self.load_button = QPushButton("Load scan")
        self.row_spin = QSpinBox()
        self.center_spin = QDoubleSpinBox()
        self.center_spin.setDecimals(2)
        self.center_spin.setSingleStep(0.25)
        self.rings_combo = QComboBox()
        self.rings_combo.addItems(RINGS)
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(("ramp", "shepp", "cosine", "hann", "parzen"))
        self.algorithm_combo = QComboBox()
        self.algorithm_combo.addItems(("fourier", "fbp"))
        self.center_button = QPushButton("Find centre")
        self.preview_button = QPushButton("Preview slice")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output .zarr")
        self.run_button = QPushButton("Reconstruct all (chunked)")
        self.progress = QProgressBar()
        self.plot = PlotPanel(height_in=3.0)

        form = QFormLayout()
        form.addRow("projections layer", self.scan_picker)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(self.load_button)
        form.addRow("scan file", row)
        form.addRow("slice (detector row)", self.row_spin)
        form.addRow("rotation centre (px)", self.center_spin)
        form.addRow("ring removal", self.rings_combo)
        form.addRow("filter", self.filter_combo)
        form.addRow("algorithm", self.algorithm_combo)
        form.addRow("output", self.out_edit)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        for w in (self.center_button, self.preview_button, self.run_button, self.progress, self.plot, self.status):
            lay.addWidget(w)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self.preview)
        self.load_button.clicked.connect(self.load)
        self.scan_picker.currentTextChanged.connect(self._from_layer)
        self.center_button.clicked.connect(self.find_center)
        self.preview_button.clicked.connect(self.preview)
        self.run_button.clicked.connect(self.run_all)
        for w in (self.center_spin, self.row_spin):
            w.valueChanged.connect(lambda *_: self._timer.start())
        for w in (self.rings_combo, self.filter_combo, self.algorithm_combo):
            w.currentTextChanged.connect(lambda *_: self._timer.start())
        self._from_layer()

    # ------------------------------------------------------------------ scan
    def _from_layer(self, *_):
        layer = self.scan_picker.layer()
        if layer is not None and meta(layer).get("projections") is not None:
            self.path_edit.setText(str(meta(layer).get("path", "")))
            self.set_projections(meta(layer)["projections"])

    def set_projections(self, proj) -> None:
        """Use a :class:`recon.Projections` (rows, centre range set from its shape)."""
        self.projections = proj
        self._sino_cache.clear()
        n_angles, n_rows, n_cols = proj.shape
        self.row_spin.blockSignals(True)
        self.center_spin.blockSignals(True)
        self.row_spin.setRange(0, n_rows - 1)
        self.row_spin.setValue(n_rows // 2)
        self.center_spin.setRange(0.0, n_cols - 1.0)
        self.center_spin.setValue((n_cols - 1) / 2)
        self.row_spin.blockSignals(False)
        self.center_spin.blockSignals(False)
        if not self.out_edit.text() and proj.source:
            self.out_edit.setText(str(Path(proj.source).with_suffix(".zarr")))
        self.status.setText(f"scan {n_angles} angles x {n_rows} rows x {n_cols} columns")

    def load(self) -> None:
        """Read the scan file named in the path box (worker thread)."""
        import recon

        path = self.path_edit.text().strip()
        self._start(recon.read_projections, path, on_done=self.set_projections, desc="reading scan")

    def _sino(self, row: int):
        if row not in self._sino_cache:
            self._sino_cache = {row: sinogram(self.projections, row)}
        return self._sino_cache[row]

    # ------------------------------------------------------------------ preview
    def find_center(self) -> None:
        """Find the rotation centre on the current row (worker) and show the slice there."""
        import recon

        if self.projections is None:
            return
        row = self.row_spin.value()

        def work():
            return recon.find_center(self._sino(row), self.projections.theta_rad)

        self._start(work, on_done=lambda c: self.center_spin.setValue(float(c)), desc="finding centre")

    def preview(self) -> None:
        """Reconstruct the chosen slice at the chosen centre (worker) into the 'recon preview' layer."""
        if self.projections is None or self.busy:
            if self.projections is not None:
                self._timer.start()  # try again when the running preview is done
            return
        row, center = self.row_spin.value(), self.center_spin.value()
        opts = dict(rings=self.rings_combo.currentText(), filter_name=self.filter_combo.currentText(),
                    algorithm=self.algorithm_combo.currentText())
        proj = self.projections

        def work():
            return preview_slice(proj, row, center, sino=self._sino(row), **opts), row, center

        self._start(work, on_done=self._show_preview, desc="preview")

    def _show_preview(self, result) -> None:
        img, row, center = result
        self.last_preview = {"image": img, "row": row, "center": center}
        px = self.projections.pixel_size_um or 1.0
        set_layer(self.viewer, PREVIEW, img, scale=(px, px), colormap="gray", contrast_limits=limits(img),
                  metadata={"anodescope": {"kind": "preview", "row": row, "center": center}})
        self._draw(img, row, center, px)

    def _draw(self, img, row, center, px) -> None:
        fig = self.plot.figure
        fig.clear()
        ax = fig.add_subplot(1, 1, 1)
        self.plot.axes = [ax]
        n = img.shape[-1]
        lo, hi = limits(img)
        im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=(0, n * px, n * px, 0))
        fig.colorbar(im, ax=ax, label="attenuation per pixel")
        ax.set_title(f"row {row}, centre {center:.2f} px", fontsize=9)
        ax.set_xlabel("x (µm)" if self.projections.pixel_size_um else "x (px)")
        self.plot.draw()

    # ------------------------------------------------------------------ whole scan
    def run_all(self) -> None:
        """Reconstruct the whole scan slab by slab into OME-Zarr (worker), then open it lazily."""
        import queue
        import threading

        import recon

        if self.projections is None:
            return
        out = Path(self.out_edit.text().strip() or "reconstruction.zarr")
        opts = dict(center=self.center_spin.value(), algorithm=self.algorithm_combo.currentText(),
                    filter_name=self.filter_combo.currentText(),
                    rings=None if self.rings_combo.currentText() == "none" else self.rings_combo.currentText(),
                    overwrite=True, progress=False)
        source = self.projections
        done: queue.Queue = queue.Queue()
        self.slabs_done = 0
        self.progress.setRange(0, 0)

        def work():
            box: dict = {}

            def target():
                try:
                    box["path"] = recon.reconstruct_to_zarr(source, out, on_slab_done=done.put, **opts)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the worker thread
                    box["error"] = exc

            t = threading.Thread(target=target, daemon=True)
            t.start()
            while t.is_alive() or not done.empty():
                try:
                    yield done.get(timeout=0.05)
                except queue.Empty:
                    continue
            t.join()
            if "error" in box:
                raise box["error"]
            return box["path"]

        def on_yield(_index):
            self.slabs_done += 1
            self.status.setText(f"reconstructing: {self.slabs_done} slab(s) written")

        self._start(work, on_done=self._opened, on_yield=on_yield, desc="reconstructing")

    def _opened(self, path) -> None:
        from .._reader import read_ome_zarr

        self.output_path = Path(path)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        for data, kwargs, kind in read_ome_zarr(path):
            name = kwargs.pop("name")
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            getattr(self.viewer, f"add_{kind}")(data, name=name, **kwargs)
