"""Virtual stripping: curves against direct counts, islands against scipy/scikit-image labelling."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.measure import label as sk_label

import segment
from segment import InputError, synthetic_thickness_map, virtual_stripping
from segment import _cpu_kernels as kern
from segment import stripping as stripping_mod

STRUCT = {4: ndi.generate_binary_structure(2, 1), 8: ndi.generate_binary_structure(2, 2)}


@pytest.fixture(scope="module")
def patchy_map():
    """A smooth map with NaN holes, bare (0 um) spots and a masked-out corner."""
    t = synthetic_thickness_map((150, 170), 2.0, correlation_um=12.0, seed=7)
    rng = np.random.default_rng(1)
    t[rng.random(t.shape) < 0.02] = np.nan
    t[40:44, 60:70] = 0.0
    mask = np.ones(t.shape, bool)
    mask[:30, :30] = False
    return t, mask


def _direct(t, valid, d):
    tv = t[valid]
    return np.minimum(tv, d).sum() / tv.sum(), np.count_nonzero(tv > d) / tv.size


def test_fractions_equal_direct_count(patchy_map):
    t, mask = patchy_map
    valid = np.isfinite(t) & mask
    r = virtual_stripping(t, 2.0, n_steps=300, mask=mask)
    assert r.depth_um.size == 301
    assert r.n_valid == valid.sum()
    for j in range(0, r.depth_um.size, 7):
        s, a = _direct(t, valid, r.depth_um[j])
        assert abs(r.stripped_fraction[j] - s) < 1e-9
        assert abs(r.active_fraction[j] - a) < 1e-9
        assert r.current_multiplier[j] == pytest.approx(1 / a if a else np.inf)
    assert r.stripped_fraction[0] == 0.0 and r.stripped_fraction[-1] == pytest.approx(1.0, abs=1e-12)
    assert r.active_fraction[-1] == 0.0


@pytest.mark.parametrize("connectivity", [4, 8])
def test_islands_equal_connected_component_count(patchy_map, connectivity):
    t, mask = patchy_map
    valid = np.isfinite(t) & mask
    r = virtual_stripping(t, 2.0, step_um=0.25, mask=mask, connectivity=connectivity)
    r2 = virtual_stripping(t, 2.0, step_um=0.25, mask=mask, connectivity=connectivity, largest_island=True)
    assert r.largest_island_um2 is None
    np.testing.assert_array_equal(r.n_islands, r2.n_islands)
    for j in range(0, r.depth_um.size, 3):
        with np.errstate(invalid="ignore"):
            present = valid & (t > r.depth_um[j])
        lab, n = ndi.label(present, structure=STRUCT[connectivity])
        assert r.n_islands[j] == n, (j, r.depth_um[j])
        if n:
            assert r.mean_island_um2[j] == pytest.approx(present.sum() * 4.0 / n)
            assert r2.largest_island_um2[j] == np.bincount(lab.ravel())[1:].max() * 4.0
    assert r.n_islands.max() > 5  # the test map really fragments


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("tile", [2, 3, 5, 16, 1000])
def test_tiled_union_find_matches_skimage(connectivity, tile):
    """The cache-friendly tiled kernel on small tiles (many seams) against scikit-image."""
    rng = np.random.default_rng(tile + connectivity)
    for case in range(3):
        ny, nx = rng.integers(9, 60, 2)
        if case == 0:
            t = rng.random((ny, nx))  # white noise: the hardest case for seams
        else:
            t = synthetic_thickness_map((ny, nx), 1.0, correlation_um=2.5, seed=case)
        if case == 2:
            t[rng.random(t.shape) < 0.15] = np.nan
        valid = np.isfinite(t)
        depths = np.linspace(0.0, np.nanmax(t), 40)
        k, counts, _ = kern.depth_bins(t.ravel(), valid.ravel(), depths)

        def edges(n):
            return np.linspace(0, n, max(1, n // tile) + 1).round().astype(np.int64)

        got = kern.superlevel_components_tiled(k, ny, nx, depths.size, connectivity, edges(ny), edges(nx))
        simple, largest = kern.superlevel_components(k, counts, ny, nx, connectivity)
        for j, d in enumerate(depths):
            with np.errstate(invalid="ignore"):
                lab = sk_label(valid & (t > d), connectivity=1 if connectivity == 4 else 2)
            assert got[j] == lab.max()
            assert simple[j] == lab.max()
            assert largest[j] == (np.bincount(lab.ravel())[1:].max() if lab.max() else 0)


def test_depth_at_and_snapshot_are_exact(patchy_map):
    t, mask = patchy_map
    valid = np.isfinite(t) & mask
    r = virtual_stripping(t, 2.0, n_steps=37, mask=mask)  # coarse grid: look-ups still exact
    for f in (0.01, 0.3, 0.64, 0.85, 0.95, 0.999):
        d = r.depth_at(f)
        s, a = _direct(t, valid, d)
        assert s == pytest.approx(f, abs=1e-12)
        snap = r.snapshot(f)
        with np.errstate(invalid="ignore"):
            assert np.array_equal(snap, valid & (t > d))
        labels, areas = r.islands(f)
        assert areas.sum() == pytest.approx(snap.sum() * 4.0)
        assert labels.max() == ndi.label(snap, structure=STRUCT[8])[1]
    assert r.depth_at(0.0) == 0.0
    assert r.depth_at(1.0) == pytest.approx(np.nanmax(t[valid]))


def test_summary_rows_match_snapshots(patchy_map):
    t, mask = patchy_map
    r = virtual_stripping(t, 2.0, mask=mask, current_density_ma_cm2=0.5)
    rows = r.summary([0.64, 0.85])
    for row in rows:
        snap = r.snapshot(row["stripped_fraction"])
        assert row["active_fraction"] == pytest.approx(snap.sum() / r.n_valid)
        assert row["current_multiplier"] == pytest.approx(r.n_valid / snap.sum())
        assert row["local_current_density_ma_cm2"] == pytest.approx(0.5 * row["current_multiplier"])


def test_time_axis_from_the_lithium_equivalent():
    """48.6 um of Li is 10 mAh cm^-2 (SCIENCE.md: 4.86 um per mAh cm^-2): 20 h at 0.5 mA cm^-2."""
    t = np.full((20, 30), 48.6)
    t[:, :10] = 0.5 * 48.6  # two levels: mean 40.5 um
    r = virtual_stripping(t, 1.0, current_density_ma_cm2=0.5, n_steps=100)
    mean_um = t.mean()
    assert r.capacity_mah_cm2 == pytest.approx(mean_um / 4.86, rel=1e-3)
    assert r.time_h[-1] == pytest.approx(mean_um / 4.86 / 0.5, rel=1e-3)
    # at half the thin level everything is still active, time = depth / rate exactly
    j = np.searchsorted(r.depth_um, 10.0)
    assert r.time_h[j] == pytest.approx(r.depth_um[j] / 4.86 / 0.5, rel=1e-3)
    assert r.active_fraction[j] == 1.0


def test_synthetic_map_has_the_published_statistics_and_curve_shape():
    """SCIENCE.md 1 and 4: 800 x 800 um, mean ~25 um, < 10 to ~50 um; >= 85 % active at 64 %."""
    px = 1.7
    t = synthetic_thickness_map((470, 470), px, seed=0)
    assert t.mean() == pytest.approx(25.0, abs=0.5)
    assert t.min() < 10.0 and 40.0 < t.max() < 55.0
    # thick regions hundreds of um wide: the largest component above the mean spans > 200 um
    lab, n = ndi.label(t > 30.0)
    sl = ndi.find_objects(lab)
    widest = max((s[1].stop - s[1].start) * px for s in sl)
    assert widest > 200.0
    r = virtual_stripping(t, px)
    rows = {round(row["stripped_fraction"], 2): row for row in r.summary([0.3, 0.64, 0.85])}
    assert rows[0.64]["active_fraction"] >= 0.85
    # steep fall towards 85 % stripped: the slope is several times the early one
    early = (1 - rows[0.64]["active_fraction"]) / 0.64
    late = (rows[0.64]["active_fraction"] - rows[0.85]["active_fraction"]) / 0.21
    assert rows[0.85]["active_fraction"] < 0.7
    assert late > 5 * early
    # seeds reproduce
    assert np.array_equal(t, synthetic_thickness_map((470, 470), px, seed=0))


def test_list_input_and_integer_steps():
    r = virtual_stripping([[1.0, 2.0], [3.0, 4.0]], 1.0, step_um=1.0)
    assert r.depth_um.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert r.active_fraction.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"thickness_um": np.ones((3, 3, 3))}, "2-D"),
        ({"thickness_um": -np.ones((3, 3))}, "negative"),
        ({"thickness_um": np.full((3, 3), np.nan)}, "no valid pixel"),
        ({"thickness_um": np.zeros((3, 3))}, "no lithium"),
        ({"pixel_size_um": 0.0}, "pixel_size_um"),
        ({"connectivity": 6}, "connectivity"),
        ({"step_um": -1.0}, "step_um"),
        ({"mask": np.ones((2, 2), bool)}, "mask shape"),
        ({"current_density_ma_cm2": -1.0}, "current_density"),
    ],
)
def test_bad_input_raises_input_error(kwargs, match):
    args = {"thickness_um": np.ones((3, 3)), "pixel_size_um": 1.0}
    args.update(kwargs)
    t = args.pop("thickness_um")
    px = args.pop("pixel_size_um")
    with pytest.raises(InputError, match=match):
        virtual_stripping(t, px, **args)


@pytest.mark.parametrize("f", [-0.1, 1.5, "abc"])
def test_bad_fraction(f):
    r = virtual_stripping(np.ones((3, 3)), 1.0)
    with pytest.raises(InputError, match="fraction"):
        r.snapshot(f)


def test_docstring_examples():
    for mod in (stripping_mod, kern):
        failed, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert failed == 0


def test_public_api():
    assert segment.virtual_stripping is virtual_stripping
    assert segment.StrippingResult is stripping_mod.StrippingResult


@pytest.mark.gpu
def test_cupy_input_gives_the_same_curves():
    import cupy as cp

    t = synthetic_thickness_map((64, 80), 2.0, correlation_um=8.0, seed=3)
    a = virtual_stripping(t, 2.0)
    b = virtual_stripping(cp.asarray(t), 2.0)
    np.testing.assert_array_equal(a.n_islands, b.n_islands)
    np.testing.assert_allclose(a.stripped_fraction, b.stripped_fraction, atol=1e-12)
