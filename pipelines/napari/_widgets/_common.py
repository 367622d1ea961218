"""Shared pieces of the dock widgets: layer pickers, a matplotlib panel, thread workers."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget


def meta(layer) -> dict:
    """The ``metadata["anodescope"]`` dict of a layer (empty when absent)."""
    return dict(getattr(layer, "metadata", {}).get("anodescope", {}) or {})


def level0(layer):
    """Level-0 data of a (possibly multiscale) layer."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def voxel_size_um(layer) -> float:
    """Voxel size in um from the layer metadata, else its last scale value."""
    v = meta(layer).get("voxel_size_um") or meta(layer).get("pixel_size_um")
    return float(v) if v else float(layer.scale[-1])


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers that pass ``accept(layer)``, kept up to date."""

    def __init__(self, viewer, accept, parent=None):
        super().__init__(parent)
        self._viewer, self._accept = viewer, accept
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_):
        current = self.currentText()
        self.clear()
        names = [ly.name for ly in self._viewer.layers if self._accept(ly)]
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        elif names:
            self.setCurrentIndex(len(names) - 1)

    def layer(self):
        """The selected layer, or None."""
        name = self.currentText()
        return self._viewer.layers[name] if name and name in self._viewer.layers else None

    def select(self, name: str) -> None:
        """Select a layer by name."""
        self.refresh()
        self.setCurrentText(name)


class PlotPanel(QWidget):
    """A matplotlib figure in a Qt widget (the widget's own result view)."""

    def __init__(self, *, n_axes: int = 1, height_in: float = 3.0, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.5, height_in * n_axes), layout="constrained")
        self.axes = [self.figure.add_subplot(n_axes, 1, k + 1) for k in range(n_axes)]
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(int(160 * n_axes))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)

    def draw(self) -> None:
        self.canvas.draw()


def set_layer(viewer, name: str, data, *, kind: str = "image", **kwargs):
    """Add a layer, or replace the data (and given properties) of an existing one of that name."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        for key, value in kwargs.items():
            if key in ("scale", "translate", "contrast_limits", "colormap", "opacity", "visible"):
                setattr(layer, key, value)
            elif key == "metadata":
                layer.metadata.update(value)
        return layer
    add = getattr(viewer, f"add_{kind}")
    return add(data, name=name, **kwargs)


def limits(arr) -> tuple[float, float]:
    """Contrast limits from the finite values (1st to 99th percentile)."""
    a = np.asarray(arr, np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(a, [1, 99])
    return (float(lo), float(hi)) if hi > lo else (float(a.min()), float(a.min()) + 1.0)


class WorkerMixin:
    """Run callables in napari thread workers; remember the last error and the busy state."""

    def _init_worker(self) -> None:
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.worker = None
        self.error: Exception | None = None
        self._closed = False

    def closeEvent(self, event):  # noqa: N802 - Qt's name
        """Stop pending previews and let a running worker finish without touching the panel."""
        self._closed = True
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.stop()
        if self.worker is not None:
            self.worker.quit()
        super().closeEvent(event)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _start(self, func, *args, on_done, on_yield=None, desc: str = "", **kwargs):
        from napari.qt.threading import create_worker

        if self._closed:
            return None
        self.error = None
        self.status.setText(f"{desc}…")
        worker = create_worker(func, *args, _progress={"desc": desc} if desc else None, **kwargs)

        def finished():
            if self.worker is worker:
                self.worker = None

        def errored(exc):
            if self.worker is worker:
                self.worker = None
            self.error = exc
            self.status.setText(f"{desc} failed: {exc}")

        def returned(value):
            if self.worker is worker:
                self.worker = None  # free before on_done, which may start the next worker
            if self._closed:
                return  # the panel is gone: nothing to show the result in
            on_done(value)
            if self.error is None:
                self.status.setText(f"{desc}: done")

        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        if on_yield is not None:
            worker.yielded.connect(on_yield)
        self.worker = worker
        worker.start()
        return worker
