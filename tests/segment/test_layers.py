"""Layer geometry, and the acceptance test: thickness through simulated scan + reconstruction.

The acceptance cell is the simulated anode-free Grafoil | Li | Li6PS5Cl cell of
``pipelines.samples`` (Li thickness from a smooth random field, 8-50 um; attenuation from
xraylib at 25.5 keV), scanned with ``recon.simulate_scan`` (1500 projections over 180 deg,
2e4 open-beam counts, Poisson noise), normalised, -log and reconstructed with the Fourier
method. The thickness map must match the truth within one voxel (1.7 um) mean absolute error,
automatically and with a random-forest classifier trained on three labelled slices.
"""

from __future__ import annotations

import numpy as np
import pytest

from segment import (InputError, denoise, fit_plane, interfaces_from_labels, layer_maps, segment_layers,
                     stacking_axis, thickness_map, train_classifier)

PX = 1.7


def test_thickness_map_matches_plain_python_count():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, size=(12, 5, 6)).astype(np.uint8)
    lab[:, 0, 0] = 0  # an empty column -> NaN
    got = thickness_map(lab, 2, voxel_size_um=PX)
    for y in range(5):
        for x in range(6):
            col = [int(v) for v in lab[:, y, x]]
            if not any(col):
                assert np.isnan(got[y, x])
            else:
                assert got[y, x] == pytest.approx(col.count(2) * PX)
    np.testing.assert_allclose(thickness_map(np.moveaxis(lab, 0, 1), 2, axis=1, voxel_size_um=PX), got)


def test_thickness_map_needs_a_voxel_size():
    with pytest.raises(InputError, match="voxel_size_um"):
        thickness_map(np.ones((3, 3, 3), np.uint8), 1, voxel_size_um=None)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_stacking_axis_is_found(axis):
    rng = np.random.default_rng(axis)
    v = np.zeros((30, 32, 34))
    v[12:] = 1.0
    v = np.moveaxis(v, 0, axis) + rng.normal(0, 0.3, np.moveaxis(v, 0, axis).shape)
    assert stacking_axis(v) == axis


def test_fit_plane_recovers_slopes_and_tilt():
    yy, xx = np.mgrid[0:40, 0:50] * PX
    h = 12.0 + 0.05 * xx - 0.02 * yy + np.random.default_rng(1).normal(0, 0.01, xx.shape)
    p = fit_plane(h, pixel_size_um=PX)
    assert p["slope_x"] == pytest.approx(0.05, abs=1e-3)
    assert p["slope_y"] == pytest.approx(-0.02, abs=1e-3)
    assert p["tilt_rad"] == pytest.approx(np.arctan(np.hypot(0.05, 0.02)), abs=1e-3)
    assert p["offset"] == pytest.approx(h.mean(), abs=0.01)


def test_interfaces_from_labels():
    lab = np.ones((10, 2, 1), np.uint8)
    lab[3:7, 0] = 2
    lab[7:, :] = 3
    lo, hi = interfaces_from_labels(lab, 2)
    assert (lo[0, 0], hi[0, 0]) == (3, 7)
    assert np.isnan(lo[1, 0]) and np.isnan(hi[1, 0])


def test_tilted_cell_interfaces_are_sub_voxel_and_tilt_is_measured():
    """A tilted collector | Li | electrolyte stack with partial-volume voxels at the interfaces."""
    ny = nx = 40
    nz = 40
    yy, xx = np.mgrid[0:ny, 0:nx]
    bottom = 6.3 + 0.05 * xx  # interface heights in voxels (continuous)
    top = 22.7 + 0.05 * xx + 2.0 * np.cos(2 * np.pi * (yy - (ny - 1) / 2) / ny)  # even: no tilt of its own
    z0 = np.arange(nz)[:, None, None]
    # exact partial-volume voxels: fraction of voxel [z, z+1) below each interface
    below_b = np.clip(bottom[None] - z0, 0, 1)
    below_t = np.clip(top[None] - z0, 0, 1)
    levels = (3.0, 1.0, 8.0)
    v = levels[0] * below_b + levels[1] * (below_t - below_b) + levels[2] * (1 - below_t)
    v = v + np.random.default_rng(2).normal(0, 0.05, v.shape)
    lab, info = segment_layers(v.astype(np.float32), mask=np.ones((ny, nx), bool), return_info=True)
    ip = info["interfaces_px"]
    assert np.abs(ip[0] - bottom).mean() < 0.1
    assert np.abs(ip[1] - top).mean() < 0.1
    m = layer_maps(lab, voxel_size_um=PX, interfaces_px=ip)
    assert np.abs(m.thickness_um - (top - bottom) * PX).mean() < 0.2
    assert m.metrics["interface_bottom"]["tilt_rad"] == pytest.approx(np.arctan(0.05), abs=2e-3)
    # topology relative to the fitted plane: the cosine of amplitude 2 voxels, Rq = A / sqrt(2)
    assert m.metrics["interface_top"]["roughness"]["Rq"] == pytest.approx(2.0 * PX / np.sqrt(2), rel=0.05)


# ------------------------------------------------------------------- acceptance


@pytest.fixture(scope="module")
def reconstructed_cell():
    recon = pytest.importorskip("recon")
    from pipelines.samples import anode_free_cell

    cell = anode_free_cell(seed=1)
    theta = np.linspace(0, np.pi, 1500, endpoint=False)
    scan = recon.simulate_scan(cell.mu_per_px, theta, incident_counts=2e4, seed=1)
    data = scan.data.compute() if hasattr(scan.data, "compute") else np.asarray(scan.data)
    sino = recon.minus_log(recon.normalize(data, scan.flats, scan.darks))
    vol = np.asarray(recon.reconstruct(sino, theta, center=(sino.shape[2] - 1) / 2, algorithm="fourier"))
    return cell, denoise(vol, median_size=3, device="cpu")


def _mae(cell, maps):
    ok = np.isfinite(cell.thickness_um) & maps.mask
    assert ok.sum() > 0.9 * np.isfinite(cell.thickness_um).sum()  # the maps cover the cell
    return float(np.abs(maps.thickness_um - cell.thickness_um)[ok].mean())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["multiotsu", "kmeans"])
def test_acceptance_automatic_thickness_within_one_voxel(reconstructed_cell, method):
    cell, vol = reconstructed_cell
    # the truth: Li between 8 and 50 um, contrast Li : collector : electrolyte realistic
    assert np.nanmin(cell.thickness_um) >= 8 and np.nanmax(cell.thickness_um) <= 50
    lab, info = segment_layers(vol, ("collector", "li", "electrolyte"), method=method, return_info=True)
    maps = layer_maps(lab, voxel_size_um=cell.pixel_size_um, interfaces_px=info["interfaces_px"],
                      mask=info["footprint"])
    assert _mae(cell, maps) <= cell.pixel_size_um


@pytest.mark.slow
def test_acceptance_trained_classifier_thickness_within_one_voxel(reconstructed_cell):
    cell, vol = reconstructed_cell
    truth = np.where(cell.labels == 0, 5, cell.labels).astype(np.uint8)  # 5 = outside the cell
    ann = np.zeros_like(truth)
    for y in (40, 80, 120):  # three labelled (x, z) slices
        ann[:, y, :] = truth[:, y, :]
    clf = train_classifier(vol, ann, class_names=("collector", "li", "electrolyte", "pore", "background"),
                           n_estimators=30, n_jobs=2)
    lab, info = segment_layers(vol, ("collector", "li", "electrolyte"), method=clf, return_info=True)
    maps = layer_maps(lab, voxel_size_um=cell.pixel_size_um, interfaces_px=info["interfaces_px"],
                      mask=info["footprint"])
    assert _mae(cell, maps) <= cell.pixel_size_um
