"""napari plugin tests: offscreen Qt, a viewer that works with or without OpenGL."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

_PROBE = """
import os
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import numpy as np, napari
v = napari.Viewer(show=False)
v.add_image(np.arange(64.0).reshape(8, 8))
assert v.screenshot(canvas_only=True).std() > 0
v.close()
"""


@pytest.fixture(scope="session")
def gl_works() -> bool:
    """Whether napari's vispy canvas can draw here (OpenGL offscreen), probed in a subprocess."""
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


@pytest.fixture
def viewer(qtbot, gl_works):
    """A napari Viewer (hidden) where OpenGL works, else a ViewerModel (same layer API, no canvas)."""
    if gl_works:
        import napari

        v = napari.Viewer(show=False)
        yield v
        v.close()
    else:
        from napari.components import ViewerModel

        yield ViewerModel()


def grab_image(widget) -> np.ndarray:
    """RGB pixels of a Qt widget rendered offscreen (no OpenGL needed)."""
    from qtpy.QtGui import QImage

    widget.resize(480, 720)
    img = widget.grab().toImage().convertToFormat(QImage.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    ptr = img.constBits()
    ptr.setsize(h * bpl)
    return np.frombuffer(ptr, np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


def assert_not_blank(rgb: np.ndarray, *, min_colours: int = 8) -> None:
    """A screenshot shows something: pixel variation and several distinct colours."""
    assert rgb.size > 0 and rgb.std() > 5.0
    colours = np.unique(rgb.reshape(-1, 3)[::7], axis=0)
    assert len(colours) >= min_colours, f"only {len(colours)} colours"


def wait_idle(qtbot, widget, timeout_ms: int = 30000) -> None:
    """Wait until the widget's worker is done (no sleeps) and fail on its error."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout_ms)
    if widget.error is not None:
        raise widget.error
