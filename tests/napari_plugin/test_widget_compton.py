"""Compton widget: EMF map against the API and the noiseless truth, uncertainty map against the
pixel-to-pixel scatter, and a clicked pixel's spectrum and profile."""

from __future__ import annotations

import types

import numpy as np
import pytest

pytest.importorskip("napari")

import compton
from pipelines.napari import ComptonWidget, make_xcs_sample
from pipelines.napari._sample_data import xcs_cube

from .conftest import assert_not_blank, grab_image, wait_idle

SHAPE = (40, 40)


def test_compton_widget(qtbot, viewer):
    for d, kw, kind in make_xcs_sample(shape=SHAPE):
        getattr(viewer, f"add_{kind}")(d, **kw)
    w = ComptonWidget(viewer)
    qtbot.addWidget(w)
    w.cube_picker.select("xcs counts")
    w.compute()
    wait_idle(qtbot, w, 60000)
    emf = np.asarray(viewer.layers["EMF"].data, np.float64)
    sig = np.asarray(viewer.layers["EMF uncertainty (1σ)"].data, np.float64)
    cube = viewer.layers["xcs counts"].metadata["anodescope"]["cube"]
    geo = viewer.layers["xcs counts"].metadata["anodescope"]["geometry"]
    direct = compton.emf_map(cube, geometry=geo, device="cpu")
    np.testing.assert_allclose(emf, direct.emf, rtol=1e-5, equal_nan=True)

    # truth: the EMF of the noiseless spectra, region by region; the uncertainty map matches the
    # scatter of the noisy EMF around it
    clean, regions, _, _ = xcs_cube(shape=SHAPE, noise=False)
    truth = compton.emf_map(clean, geometry=geo, device="cpu").emf
    for k in (1, 2, 3):
        m = regions == k
        dev = emf[m] - truth[m]
        assert abs(np.median(dev)) < 3 * np.median(sig[m]) / np.sqrt(m.sum()) + 1e-3
        assert np.std(dev / sig[m]) == pytest.approx(1.0, abs=0.2)
    li, cath = np.median(emf[regions == 1]), np.median(emf[regions == 3])
    assert li > cath  # metallic Li has the narrowest valence profile

    # click on a Li pixel of the EMF layer
    r, c = np.argwhere(regions == 1)[len(np.argwhere(regions == 1)) // 2]
    layer = viewer.layers["EMF"]
    assert w._on_click in layer.mouse_drag_callbacks
    w._on_click(layer, types.SimpleNamespace(position=layer.data_to_world((r, c))))
    assert w.pixel == (r, c)
    ax, ax2 = w.plot.axes
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), cube.counts[r, c])
    assert len(ax.patches) >= 3  # valence window and the two core windows shaded
    # EMF from the plotted profile with a plain trapezoid rule, as SCIENCE.md defines it
    pz, J = ax2.lines[0].get_xdata(), ax2.lines[0].get_ydata()
    grid = np.linspace(-5, 5, 4001)
    Jg = np.interp(grid, pz, J)
    e_l = np.trapezoid(np.where(np.abs(grid) <= 1, Jg, 0), grid)
    e_h = np.trapezoid(np.where(np.abs(grid) > 1, Jg, 0), grid)
    assert e_l / e_h == pytest.approx(emf[r, c], rel=0.03)
    assert f"{emf[r, c]:.3f}" in w.pixel_label.text()
    assert_not_blank(grab_image(w.plot))
