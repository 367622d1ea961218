"""Sample data: the demo cell and the XCS cube, checked against their physical truth."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from pipelines.napari import make_cell_sample, make_xcs_sample


def test_cell_sample(viewer):
    layers = make_cell_sample(shape=(40, 64, 64))
    for d, kw, kind in layers:
        getattr(viewer, f"add_{kind}")(d, **kw)
    vol = viewer.layers["cell attenuation"].data
    lab = viewer.layers["cell phases"].data
    t = viewer.layers["true Li thickness (µm)"].data
    assert viewer.layers["cell attenuation"].scale[0] == pytest.approx(1.7)
    # Li is the least attenuating solid: its mean is below the collector's and the electrolyte's
    mean = {k: float(vol[lab == k].mean()) for k in (1, 2, 3)}
    assert mean[2] < mean[1] and mean[2] < mean[3]
    # the true thickness equals the Li voxels per column times the voxel size (within one voxel)
    count = (lab == 2).sum(axis=0) * 1.7
    inside = np.isfinite(t)
    assert np.abs(count[inside] - t[inside]).max() <= 1.7 + 1e-6
    assert abs(np.nanmean(t) - 25.0) < 0.5  # requested mean plated thickness


def test_xcs_sample(viewer):
    from compton.simulate import reference_emf

    layers = make_xcs_sample(shape=(40, 40))
    for d, kw, kind in layers:
        getattr(viewer, f"add_{kind}")(d, **kw)
    counts = viewer.layers["xcs counts"].data
    regions = viewer.layers["xcs regions"].data
    cube = viewer.layers["xcs counts"].metadata["anodescope"]["cube"]
    np.testing.assert_array_equal(counts, np.moveaxis(cube.counts, -1, 0))
    assert set(np.unique(regions)) == {0, 1, 2, 3}
    # the summed spectrum of the Li band peaks at the Compton energy of 115 keV at 90 degrees (93.9 keV)
    e = 0.5 * (cube.bin_edges_kev[1:] + cube.bin_edges_kev[:-1])
    spec = cube.counts[regions == 1].sum(axis=0)
    assert abs(e[np.argmax(spec)] - 93.9) < 1.0
    assert reference_emf("Li metal") > reference_emf("PEO-LiTFSI")  # sanity of the ground truth used below
