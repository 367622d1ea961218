"""Phase classification: thresholds, the ordered layering, segment_layers rules and the classifier."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segment import (InputError, PixelClassifier, apply_thresholds, load_classifier, segment_layers,
                     threshold_values, train_classifier)
from segment._seg_layering import bands_to_labels, optimal_bands, optimal_bands_levels

LEVELS = {"collector": 3.0, "li": 1.0, "electrolyte": 8.0}


def layered_volume(shape=(40, 48, 48), noise=0.4, seed=0, collector_px=6):
    """Collector | Li (thickness from a smooth field) | electrolyte, with the truth cut positions."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    top = collector_px + 10 + 6 * np.sin(2 * np.pi * xx / nx) * np.cos(2 * np.pi * yy / ny)
    top = np.round(top).astype(int)
    z = np.arange(nz)[:, None, None]
    v = np.where(z < collector_px, LEVELS["collector"], np.where(z < top[None], LEVELS["li"], LEVELS["electrolyte"]))
    return (v + rng.normal(0, noise, shape)).astype(np.float32), top


def test_multiotsu_matches_scikit_image_on_a_three_phase_image():
    from skimage.filters import threshold_multiotsu

    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(m, 0.2, 4000) for m in (0.0, 2.0, 5.0)]).reshape(30, 20, 20)
    ours = threshold_values(v, method="multiotsu", classes=3)
    ref = threshold_multiotsu(v, classes=3)
    width = (np.percentile(v, 99.95) - np.percentile(v, 0.05)) / 256
    np.testing.assert_allclose(ours, ref, atol=2 * width)


def test_kmeans_threshold_is_midway_between_cluster_means():
    rng = np.random.default_rng(2)
    v = np.concatenate([rng.normal(m, 0.1, 6000) for m in (1.0, 3.0, 4.0)]).reshape(18, 20, 50)
    t = threshold_values(v, method="kmeans", classes=3)
    np.testing.assert_allclose(t, [2.0, 3.5], atol=0.05)
    cls = apply_thresholds(v, t)
    assert cls.dtype == np.uint8 and set(np.unique(cls)) == {0, 1, 2}


def _brute_force_cuts(col_classes, band_class):
    nz, n = col_classes.size, len(band_class)
    best, arg = -1, None
    for cuts in itertools.combinations_with_replacement(range(nz + 1), n - 1):
        edges = (0,) + cuts + (nz,)
        score = sum(int((col_classes[a:b] == band_class[k]).sum())
                    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])))
        if score > best:
            best, arg = score, cuts
    return best, arg


def test_optimal_bands_matches_brute_force():
    rng = np.random.default_rng(5)
    classes = rng.integers(0, 3, size=(9, 5, 4))
    band_class = [1, 0, 2]
    cuts = optimal_bands(classes, band_class)
    for y, x in itertools.product(range(5), range(4)):
        col = classes[:, y, x]
        best, _ = _brute_force_cuts(col, band_class)
        edges = (0, *cuts[:, y, x], 9)
        score = sum(int((col[a:b] == band_class[k]).sum()) for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])))
        assert score == best
    lab = bands_to_labels(cuts, 9)
    assert lab.min() >= 1 and lab.max() <= 3
    assert (np.diff(lab.astype(int), axis=0) >= 0).all()  # monotone layering


def test_optimal_bands_levels_is_least_squares_change_point():
    rng = np.random.default_rng(6)
    col = np.concatenate([np.full(4, 3.0), np.full(7, 1.0), np.full(9, 8.0)]) + rng.normal(0, 0.3, 20)
    cuts = optimal_bands_levels(col[:, None, None], [3.0, 1.0, 8.0])
    best = min(((a, b) for a in range(21) for b in range(a, 21)),
               key=lambda ab: ((col[:ab[0]] - 3) ** 2).sum() + ((col[ab[0]:ab[1]] - 1) ** 2).sum()
               + ((col[ab[1]:] - 8) ** 2).sum())
    assert tuple(cuts[:, 0, 0]) == best == (4, 11)


@pytest.mark.parametrize("method", ["multiotsu", "kmeans"])
def test_segment_layers_recovers_known_layers(method):
    v, top = layered_volume()
    lab, info = segment_layers(v, method=method, mask=np.ones(v.shape[1:], bool), return_info=True)
    assert lab.dtype == np.uint8
    np.testing.assert_array_equal(info["cuts"][0], 6)
    assert np.mean(info["cuts"][1] == top) > 0.97
    li_thickness = (lab == 2).sum(axis=0)
    assert np.abs(li_thickness - (top - 6)).mean() < 0.1
    assert (lab[0] == 1).all() and (lab[-1] == 3).all()
    np.testing.assert_allclose(info["levels"], [3.0, 1.0, 8.0], atol=0.1)


def test_segment_layers_finds_the_cell_footprint_and_pores():
    v, top = layered_volume(noise=0.2)
    yy, xx = np.mgrid[0:48, 0:48]
    inside = (yy - 23.5) ** 2 + (xx - 23.5) ** 2 < 20**2
    v[:, ~inside] = 0.0  # air around the cell
    zz = np.arange(40)[:, None, None]
    pore = (zz - 32) ** 2 + (yy - 24) ** 2 + (xx - 24) ** 2 <= 9
    v[pore] = 0.0
    lab, info = segment_layers(v, return_info=True)
    fp = info["footprint"]
    assert not fp[~inside].any()  # nothing outside the cell
    assert fp[inside].mean() > 0.85  # most of the cell (minus an eroded rim)
    assert (lab[:, ~fp] == 0).all()
    assert (lab[pore] == 0).mean() > 0.9  # the pore is an inclusion, not electrolyte or Li


def test_axis_argument_transposes_consistently():
    v, _ = layered_volume(noise=0.2)
    mask = np.ones(v.shape[1:], bool)
    lab0 = segment_layers(v, mask=mask)
    lab2 = segment_layers(np.moveaxis(v, 0, 2).copy(), axis=2, mask=mask)
    np.testing.assert_array_equal(np.moveaxis(lab2, 2, 0), lab0)


def test_phase_string_and_tuple_are_the_same():
    v, _ = layered_volume(noise=0.2)
    mask = np.ones(v.shape[1:], bool)
    np.testing.assert_array_equal(segment_layers(v, "collector, li, electrolyte", mask=mask),
                                  segment_layers(v, ("collector", "li", "electrolyte"), mask=mask))


@pytest.mark.parametrize("phases", [("li", "collector", "electrolyte"), ("collector", "electrolyte", "li")])
def test_phase_order_that_does_not_match_is_an_error(phases):
    v, _ = layered_volume(noise=0.2)
    with pytest.raises(InputError, match="does not match the data|check the phase order"):
        segment_layers(v, phases, mask=np.ones(v.shape[1:], bool))


def test_no_lithium_is_an_error():
    rng = np.random.default_rng(0)
    v = np.full((30, 32, 32), 8.0, np.float32)
    v[:8] = 3.0
    v += rng.normal(0, 0.2, v.shape).astype(np.float32)
    with pytest.raises(InputError, match="no lithium found"):
        segment_layers(v, mask=np.ones(v.shape[1:], bool))


def test_bad_arguments():
    v, _ = layered_volume(shape=(20, 16, 16))
    with pytest.raises(InputError, match="at least two"):
        segment_layers(v, ("li",))
    with pytest.raises(InputError, match="method"):
        segment_layers(v, method="magic")
    with pytest.raises(InputError, match="axis"):
        segment_layers(v, axis=3)
    with pytest.raises(InputError, match="mask shape"):
        segment_layers(v, mask=np.ones((3, 3), bool))


@pytest.fixture(scope="module")
def trained():
    v, top = layered_volume(shape=(36, 40, 40), noise=0.5, seed=7)
    z = np.arange(36)[:, None, None]
    truth = np.where(z < 6, 1, np.where(z < top[None, :40, :40], 2, 3)).astype(np.uint8)
    ann = np.zeros_like(truth)
    for y in (5, 20, 35):  # three annotated slices
        ann[:, y] = truth[:, y]
    clf = train_classifier(v, ann, class_names=("collector", "li", "electrolyte"), sigmas=(1, 2, 4),
                           n_estimators=20, n_jobs=1)
    return v, truth, clf


def test_classifier_segments_layers_from_three_slices(trained):
    v, truth, clf = trained
    pred = clf.predict(v)
    assert np.mean(pred == truth) > 0.95
    lab = segment_layers(v, method=clf, mask=np.ones(v.shape[1:], bool))
    assert np.abs((lab == 2).sum(0) - (truth == 2).sum(0)).mean() < 0.5


def test_classifier_save_load_roundtrip(trained, tmp_path):
    v, _, clf = trained
    path = clf.save(tmp_path / "model.pkl")
    clf2 = load_classifier(path)
    assert isinstance(clf2, PixelClassifier) and clf2.class_names == clf.class_names
    np.testing.assert_array_equal(clf2.predict(v), clf.predict(v))


def test_classifier_chunked_prediction_matches(trained):
    v, _, clf = trained
    a = clf.predict(v)
    b = clf.predict(v, chunks=(18, 20, 20))
    assert np.mean(a == b) > 0.999


def test_classifier_file_errors(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="bad.pkl"):
        load_classifier(bad)
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "missing.pkl")


def test_classifier_without_the_phase_is_an_error(trained):
    v, _, clf = trained
    with pytest.raises(InputError, match="do not include"):
        segment_layers(v, ("collector", "lithium", "electrolyte"), method=clf)


@pytest.mark.gpu
def test_gpu_segmentation_matches_cpu():
    import cupy as cp

    v, _ = layered_volume(noise=0.3)
    mask = np.ones(v.shape[1:], bool)
    cpu = segment_layers(v, mask=mask, device="cpu")
    gpu = segment_layers(cp.asarray(v), mask=mask, device="gpu")
    assert isinstance(gpu, cp.ndarray)
    assert np.mean(cp.asnumpy(gpu) == cpu) > 0.999


def test_li_class_rank_for_a_lithium_layer_that_is_not_the_darkest():
    v, top = layered_volume(noise=0.1)
    v = np.where(v > 5, v - 7.5, v).astype(np.float32)  # electrolyte now darker (0.5) than Li (1.0)
    mask = np.ones(v.shape[1:], bool)
    with pytest.raises(InputError, match="does not match the data|no layer darker"):
        segment_layers(v, mask=mask)
    lab, info = segment_layers(v, mask=mask, li_class=1, return_info=True)
    np.testing.assert_array_equal(info["cuts"][0], 6)
    assert np.mean(info["cuts"][1] == top) > 0.95


def test_clean_labels_against_plain_component_counting():
    from scipy import ndimage

    from segment import clean_labels

    rng = np.random.default_rng(9)
    lab = np.ones((20, 24, 24), np.uint8)
    lab[6:14] = 2
    lab[9, 10:13, 10:13] = 0  # an enclosed hole in the Li body
    speck = rng.random(lab.shape) < 0.01
    lab[speck & (lab == 1)] = 3  # isolated specks of another phase
    lab[17:20, 0:2, 0:2] = 2  # a detached piece of "lithium"
    out = clean_labels(lab, min_size_px=5, keep_largest=(2,))
    assert (out[9, 10:13, 10:13] == 2).all()  # hole filled
    assert (out[17:20, 0:2, 0:2] == 0).all()  # detached piece dropped
    comps, n = ndimage.label(lab == 3)
    sizes = np.bincount(comps.ravel())
    small = np.isin(comps, np.flatnonzero(sizes < 5)) & (comps > 0)
    assert (out[small] == 0).all() and (out[(lab == 3) & ~small] == 3).all()
    with pytest.raises(InputError, match="3-D"):
        clean_labels(np.zeros((3, 3), np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int32])
@pytest.mark.parametrize("thresholds", [[10.0], [-20.5, 3.0, 50.0], [0.1, 0.1], [7.5, 200.25], []])
def test_apply_thresholds_equals_searchsorted(dtype, thresholds):
    """The comparison-pass classifier gives searchsorted's classes (thresholds in the volume's
    dtype, NaN in the top class, infinities at the ends)."""
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        v = (rng.normal(size=(20, 30, 40)) * 100).astype(dtype)
        v[0, 0, :5] = np.nan
        v[1, 1, 1], v[1, 1, 2] = np.inf, -np.inf
    else:
        v = rng.integers(0, 300, (20, 30, 40)).astype(dtype)
    t = np.sort(np.asarray(thresholds, dtype=np.float64).astype(dtype))  # (a negative one wraps in uint16)
    expected = np.searchsorted(t, v, side="right").astype(np.uint8)
    got = apply_thresholds(v, thresholds)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
