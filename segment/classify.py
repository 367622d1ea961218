"""Phase classification of a layered cell volume: automatic thresholds or a trained pixel classifier.

``segment_layers`` turns a reconstructed volume into phase labels numbered 1..n in the order
the user names the phases along the stacking axis (0 = unassigned: outside the cell, pores,
inclusions). Voxel classes come from multi-Otsu or k-means thresholds, or from a random-forest
classifier on multiscale features; the phase order then decides which class is which
(Li is the darkest solid) and every column is cut into ordered layers that best match the
classes, so noise specks cannot invert the stack.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._backend import array_module, resolve_device, to_device
from ._errors import InputError
from ._seg_features import feature_halo, feature_names, multiscale_features
from ._seg_chunked import ColumnSample, ExactSum, TileComponents, TileSource, sample_columns, strided_sample
from ._seg_layering import (bands_to_labels, first_crossing, inclusion_candidates, optimal_bands,
                            optimal_bands_levels)

__all__ = [
    "THRESHOLD_METHODS",
    "threshold_values",
    "apply_thresholds",
    "PixelClassifier",
    "train_classifier",
    "load_classifier",
    "segment_layers",
    "clean_labels",
]

THRESHOLD_METHODS = ("multiotsu", "kmeans")
LI_NAMES = ("li", "lithium")
VOID_NAMES = ("pore", "pores", "void", "air", "background")
MAX_SAMPLE = 1 << 23  # voxels used for the histogram (a regular sub-sample beyond that)
MAX_NOISE_DIFFS = 1 << 22  # neighbouring-voxel differences used for the lateral noise


def _sample_step(n_voxels: int) -> int:
    """Stride of the regular sub-sample along every axis (about MAX_SAMPLE voxels at most)."""
    return max(1, int(np.ceil((int(n_voxels) / MAX_SAMPLE) ** (1 / 3))))


def _subsample(volume, mask=None):
    """Regular strided sub-sample (same for in-memory and Dask inputs) as a host 1-D array."""
    step = _sample_step(int(np.prod(volume.shape)))
    sl = (slice(None, None, step),) * 3
    v = volume[sl]
    if hasattr(v, "compute"):
        v = v.compute()
    v = np.asarray(to_device(v, "cpu"), dtype=np.float64)
    if mask is not None:
        m = np.asarray(to_device(mask[sl] if not hasattr(mask, "compute") else mask[sl].compute(), "cpu"), bool)
        v = v[m]
    else:
        v = v.ravel()
    return v[np.isfinite(v)]


def _kmeans_1d(hist, centers, classes, n_iter=200):
    cdf = np.cumsum(hist) / hist.sum()
    means = np.interp((np.arange(classes) + 0.5) / classes, cdf, centers)
    for _ in range(n_iter):
        cuts = 0.5 * (means[1:] + means[:-1])
        idx = np.digitize(centers, cuts)
        new = np.array([
            np.average(centers[idx == k], weights=hist[idx == k]) if hist[idx == k].sum() > 0 else means[k]
            for k in range(classes)
        ])
        if np.allclose(new, means, rtol=0, atol=1e-12 * (abs(centers).max() + 1)):
            break
        means = new
    return 0.5 * (means[1:] + means[:-1])


def threshold_values(volume, *, method: str = "multiotsu", classes: int = 3, mask=None, nbins: int = 256):
    """Automatic intensity thresholds that split a volume into ``classes`` classes.

    Parameters
    ----------
    volume : ndarray or dask.array.Array, (z, y, x)
        Attenuation volume (any intensity unit).
    method : {"multiotsu", "kmeans"}
        Multi-Otsu (maximum between-class variance) or 1-D k-means (Lloyd) on the histogram.
    classes : int
        Number of classes (>= 2).
    mask : array of bool, optional
        Voxels to use (e.g. the cell footprint).
    nbins : int
        Histogram bins between the 0.05 and 99.95 percentiles.

    Returns
    -------
    ndarray, (classes - 1,)
        Increasing thresholds in the volume's units.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.repeat([0.0, 1.0, 3.0], 1000).reshape(30, 10, 10)
    >>> t = threshold_values(v + np.random.default_rng(0).normal(0, .1, v.shape), classes=3)
    >>> bool(0 < t[0] < 1 < t[1] < 3)
    True
    """
    if method not in THRESHOLD_METHODS:
        raise InputError(f"threshold method must be one of {THRESHOLD_METHODS}, got {method!r}")
    if int(classes) < 2:
        raise InputError(f"classes must be >= 2, got {classes!r}")
    return _thresholds_from_sample(_subsample(volume, mask), method=method, classes=int(classes), nbins=nbins)


def _thresholds_from_sample(v, *, method, classes, nbins=256):
    """Thresholds from a 1-D host sample (float64, finite values)."""
    if v.size < 10 * classes:
        raise InputError(f"too few voxels ({v.size}) to find {classes} intensity classes")
    lo, hi = np.percentile(v, [0.05, 99.95])
    if not hi > lo:
        raise InputError("the volume has a single intensity value; no phases to separate")
    hist, edges = np.histogram(np.clip(v, lo, hi), bins=int(nbins), range=(lo, hi))
    centers = 0.5 * (edges[1:] + edges[:-1])
    if method == "multiotsu":
        from skimage.filters import threshold_multiotsu

        t = threshold_multiotsu(classes=int(classes), hist=(hist, centers))
    else:
        t = _kmeans_1d(hist.astype(np.float64), centers, int(classes))
    return np.asarray(t, dtype=np.float64)


def apply_thresholds(volume, thresholds):
    """Class index 0..len(thresholds) of every voxel (uint8; 0 = darkest), NumPy or CuPy.

    The class is the number of (increasing) thresholds at or below the voxel, i.e.
    ``searchsorted(thresholds, volume, side="right")``; NaN voxels get the top class as
    there. Computed as one uint8 comparison pass per threshold (memory-bound, no int64
    intermediate).

    Examples
    --------
    >>> apply_thresholds(np.array([0.0, 1.0, 2.5, 3.0]), [1.0, 3.0]).tolist()
    [0, 1, 1, 2]
    """
    xp = array_module(volume)
    v = xp.asarray(volume)
    t = np.sort(np.asarray(thresholds, dtype=np.float64).astype(v.dtype))
    out = xp.zeros(v.shape, dtype=xp.uint8)
    for value in t:
        out += v >= value
    if v.dtype.kind == "f" and t.size:
        nan = xp.isnan(v)
        if bool(nan.any()):
            out[nan] = t.size
    return out


# ---------------------------------------------------------------------------- classifier


@dataclass
class PixelClassifier:
    """A random-forest voxel classifier on multiscale features (trainable segmentation).

    Attributes
    ----------
    forest : sklearn.ensemble.RandomForestClassifier
        The trained forest.
    class_names : tuple of str
        Name of class 1, 2, ... (the annotation values).
    sigmas : tuple of float
        Feature scales in voxels.
    scale : float
        Intensity normalisation (volume units) applied before the features.
    """

    forest: object
    class_names: tuple
    sigmas: tuple
    scale: float = 1.0
    meta: dict = field(default_factory=dict)

    def predict(self, volume, *, chunks=None, device: str = "auto"):
        """Class number (1..n, order of ``class_names``) of every voxel, uint8 (z, y, x) on the host.

        Features are computed on ``device`` (GPU when asked), the forest runs on the host.
        With ``chunks`` (voxels) or a Dask input the volume is processed block by block
        with an overlap of four times the largest sigma.
        """
        import dask.array as da

        if getattr(volume, "ndim", None) != 3:
            raise InputError(f"volume must be 3-D (z, y, x), got shape {getattr(volume, 'shape', None)}")
        dev = resolve_device(device, None if isinstance(volume, da.Array) else volume)

        def block_fn(b):
            f = multiscale_features(to_device(b, dev), self.sigmas, scale=self.scale)
            f = np.asarray(to_device(f, "cpu"))
            x = f.reshape(f.shape[0], -1).T
            out = self.forest.predict(x).astype(np.uint8)
            return out.reshape(b.shape)

        if not isinstance(volume, da.Array) and chunks is None:
            return block_fn(volume)
        darr = volume if isinstance(volume, da.Array) else da.from_array(to_device(volume, "cpu"), chunks=chunks)
        halo = feature_halo(self.sigmas)
        if min(min(c) for c in darr.chunks) < halo:
            darr = darr.rechunk(tuple(max(halo, max(c)) for c in darr.chunks))
        return da.map_overlap(block_fn, darr, depth=halo, boundary="none", dtype=np.uint8,
                              meta=np.empty((0, 0, 0), np.uint8)).compute()

    def save(self, path) -> Path:
        """Write the classifier to ``path`` (a pickle file, conventionally ``.pkl``)."""
        path = Path(path)
        with open(path, "wb") as fh:
            pickle.dump({"format": "anodescope-pixel-classifier", "version": 1, "forest": self.forest,
                         "class_names": tuple(self.class_names), "sigmas": tuple(self.sigmas),
                         "scale": float(self.scale), "meta": dict(self.meta)}, fh)
        return path


def load_classifier(path) -> PixelClassifier:
    """Read a classifier written by :meth:`PixelClassifier.save` (trusted files only: pickle)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh)
    except Exception as exc:
        raise InputError(f"{path}: not a readable classifier file ({type(exc).__name__})") from exc
    if not isinstance(d, dict) or d.get("format") != "anodescope-pixel-classifier":
        raise InputError(f"{path}: not an anodescope pixel-classifier file")
    return PixelClassifier(forest=d["forest"], class_names=tuple(d["class_names"]), sigmas=tuple(d["sigmas"]),
                           scale=d["scale"], meta=d.get("meta", {}))


def train_classifier(volume, annotations, *, class_names, sigmas=(1.0, 2.0, 4.0, 8.0), n_estimators: int = 60,
                     max_depth: int | None = 16, max_samples_per_class: int = 20000, seed: int = 0,
                     device: str = "auto", n_jobs: int | None = None) -> PixelClassifier:
    """Train a random-forest voxel classifier from a few annotated slices.

    Parameters
    ----------
    volume : ndarray, (z, y, x)
        Attenuation volume.
    annotations : ndarray, (z, y, x) integer
        0 = not annotated, k = class ``class_names[k-1]`` (e.g. a few fully labelled slices).
    class_names : sequence of str
        Names of the annotation classes, e.g. ("collector", "li", "electrolyte", "pore").
    sigmas : sequence of float
        Feature scales in voxels.
    n_estimators, max_depth : int
        Forest size.
    max_samples_per_class : int
        Annotated voxels drawn per class (balanced training set).
    seed : int
        Random seed (sampling and forest).
    device : {"auto", "cpu", "gpu"}
        Where the features are computed.

    Returns
    -------
    PixelClassifier
    """
    from sklearn.ensemble import RandomForestClassifier

    if getattr(volume, "ndim", None) != 3:
        raise InputError(f"volume must be 3-D (z, y, x), got shape {getattr(volume, 'shape', None)}")
    ann = np.asarray(to_device(annotations, "cpu"))
    if ann.shape != tuple(volume.shape):
        raise InputError(f"annotations shape {ann.shape} does not match the volume {tuple(volume.shape)}")
    class_names = tuple(str(c) for c in class_names)
    present = np.unique(ann[ann > 0])
    if present.size < 2:
        raise InputError(f"annotations hold {present.size} class(es); need at least 2 labelled classes")
    if present.max() > len(class_names):
        raise InputError(f"annotation value {int(present.max())} has no name in class_names {class_names}")
    dev = resolve_device(device, volume)
    host = np.asarray(to_device(volume, "cpu"), np.float64)
    scale = float(np.percentile(np.abs(host[ann > 0]), 99)) or 1.0
    feats = np.asarray(to_device(multiscale_features(to_device(volume, dev), tuple(sigmas), scale=scale), "cpu"))
    rng = np.random.default_rng(seed)
    idx = []
    for c in present:
        where = np.flatnonzero(ann.ravel() == c)
        if where.size > max_samples_per_class:
            where = rng.choice(where, max_samples_per_class, replace=False)
        idx.append(where)
    idx = np.concatenate(idx)
    x = feats.reshape(feats.shape[0], -1)[:, idx].T
    y = ann.ravel()[idx]
    forest = RandomForestClassifier(n_estimators=int(n_estimators), max_depth=max_depth, random_state=seed,
                                    n_jobs=n_jobs, class_weight="balanced")
    forest.fit(x, y)
    return PixelClassifier(forest=forest, class_names=class_names, sigmas=tuple(float(s) for s in sigmas),
                           scale=scale, meta={"features": feature_names(tuple(sigmas))})


# ---------------------------------------------------------------------------- clean-up


def clean_labels(labels, *, min_size_px: int = 27, keep_largest=(), fill_holes: bool = True,
                 connectivity: int = 1):
    """Connected-component clean-up of phase labels.

    Parameters
    ----------
    labels : ndarray, integer (z, y, x)
        Phase labels (0 = unassigned).
    min_size_px : int
        Components (of any non-zero label) smaller than this many voxels become 0.
    keep_largest : sequence of int
        Labels of layers that form one body (e.g. the lithium layer): only their largest
        connected component is kept.
    fill_holes : bool
        Fill enclosed holes (0 or other labels fully surrounded) of the ``keep_largest``
        layers with their label.
    connectivity : int
        1 (faces), 2 (edges) or 3 (corners) neighbourhood.

    Returns
    -------
    ndarray
        Cleaned labels, same dtype.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((6, 6, 6), np.uint8); lab[1:5, 1:5, 1:5] = 2; lab[2, 2, 2] = 0; lab[0, 5, 5] = 2
    >>> out = clean_labels(lab, min_size_px=2, keep_largest=(2,))
    >>> int(out[2, 2, 2]), int(out[0, 5, 5])
    (2, 0)
    """
    from scipy import ndimage

    lab = np.array(to_device(labels, "cpu"), copy=True)
    if lab.ndim != 3:
        raise InputError(f"labels must be 3-D, got shape {lab.shape}")
    if connectivity not in (1, 2, 3):
        raise InputError(f"connectivity must be 1, 2 or 3, got {connectivity!r}")
    structure = ndimage.generate_binary_structure(3, connectivity)
    for value in np.unique(lab):
        if value == 0:
            continue
        mask = lab == value
        comp, ncomp = ndimage.label(mask, structure=structure)
        if ncomp == 0:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        if value in tuple(keep_largest):
            keep = comp == int(np.argmax(sizes))
            if fill_holes:
                keep = ndimage.binary_fill_holes(keep)
            lab[mask & ~keep] = 0
            lab[keep] = value
        else:
            small = sizes < int(min_size_px)
            small[0] = False
            lab[small[comp]] = 0
    return lab


# ---------------------------------------------------------------------------- layers


def _footprint(classes_host: np.ndarray, dark_class_set, min_fraction: float = 0.2, erode_px: int = 2) -> np.ndarray:
    """Columns that belong to the cell: enough voxels brighter than the darkest class."""
    solid = ~np.isin(classes_host, list(dark_class_set))
    return _footprint_from_fraction(solid.mean(axis=0), min_fraction, erode_px)


def _footprint_from_fraction(frac: np.ndarray, min_fraction: float = 0.2, erode_px: int = 2) -> np.ndarray:
    """Footprint from the per-column fraction of solid voxels (a 2-D map, fits in memory)."""
    from scipy import ndimage

    fp = frac >= min_fraction
    fp = ndimage.binary_opening(fp, iterations=2)
    fp = ndimage.binary_fill_holes(fp)
    fp = ndimage.binary_erosion(fp, iterations=erode_px)  # drop partial-volume edge columns
    lab, n = ndimage.label(fp)
    if n > 1:
        sizes = ndimage.sum(fp, lab, index=np.arange(1, n + 1))
        fp = lab == (1 + int(np.argmax(sizes)))
    return fp


def _normalise_phases(phases) -> tuple[str, ...]:
    if isinstance(phases, str):
        phases = [p for p in phases.split(",")]
    phases = tuple(str(p).strip().lower() for p in phases)
    if len(phases) < 2 or any(not p for p in phases):
        raise InputError(f"phases must name at least two layers along the stacking axis, got {phases!r}")
    if len(set(phases)) != len(phases):
        raise InputError(f"phases must be distinct, got {phases!r}")
    return phases


def _initial_levels(profile, n, li_idx):
    """Start levels from the mean profile: end phases from the end slices, Li at the profile minimum."""
    nz = profile.size
    if nz < 2 * n:
        raise InputError(f"the stacking axis has {nz} voxels; too few for {n} layers")
    e = max(2, nz // 20)
    levels = np.interp(np.linspace(0, nz - 1, n), np.arange(nz), profile)
    levels[0] = np.median(profile[:e])
    levels[-1] = np.median(profile[-e:])
    if li_idx is not None:
        levels[li_idx] = profile.min()
    return levels


def _interface_sigmas(levels, noise, smooth_px, max_smooth_px):
    """Lateral smoothing (voxels) per interface, growing with (noise / contrast)^2.

    Returns the sigma each interface needs and the sigma actually applied (the base
    smoothing when within 0.05 voxel of it, else rounded to 0.1 voxel).
    """
    sigmas, used = [], []
    for j in range(len(levels) - 1):
        delta = levels[j + 1] - levels[j]
        need = (12.0 * noise / max(abs(delta), 1e-30)) ** 2 / (4 * np.pi)
        sig = float(np.clip(np.sqrt(need), smooth_px, max_smooth_px))
        sigmas.append(sig)
        used.append(float(smooth_px) if abs(sig - smooth_px) < 0.05 else round(sig, 1))
    return sigmas, used


def _refine_pass(src, cuts, levels, used, persist=3, start_levels=None):
    """Place each interface at the first crossing of the mid level, scanning up from the layer below.

    One pass over the lateral tiles of ``src`` (a :class:`TileSource`); interface j is found on
    the volume smoothed laterally with ``used[j]`` voxels. The crossing must hold for
    ``persist`` voxels in a row. With ``start_levels`` = (levels, sigma) the starting cuts of each tile are
    the ordered least-squares fit with those levels to the volume smoothed with sigma
    (``cuts`` is then filled with them).
    Returns integer cuts (first voxel of the upper layer) and sub-voxel interface positions
    (voxel units, voxel i spanning [i, i+1)).
    """
    n = len(levels)
    nz = src.shape[0]
    out = np.empty_like(cuts)
    sub = np.empty(cuts.shape, np.float64)
    keys = set(used) if start_levels is None else set(used) | {start_levels[1]}
    keys = sorted(keys)
    for bounds in src.tiles():
        y0, y1, x0, x1 = bounds
        smd = dict(zip(keys, src.read(bounds, keys)[1]))
        if start_levels is not None:
            cuts[:, y0:y1, x0:x1] = optimal_bands_levels(smd[start_levels[1]], start_levels[0])
        o = cuts[:, y0:y1, x0:x1].copy()  # C-contiguous, never a view of cuts
        ps = np.empty(o.shape, np.float64)
        for j in range(n - 1):
            delta = levels[j + 1] - levels[j]
            mid = 0.5 * (levels[j] + levels[j + 1])
            lo = np.ascontiguousarray(o[j - 1] if j > 0 else np.zeros_like(o[0]))
            hi = np.ascontiguousarray(o[j + 1] if j < n - 2 else np.full_like(o[0], nz))
            first = np.empty_like(o[0])
            pos = np.empty(o[0].shape, np.float64)
            first_crossing(np.ascontiguousarray(smd[used[j]]), float(mid), float(np.sign(delta)), lo, hi,
                           int(persist), first, pos)
            o[j] = first
            ps[j] = pos
        out[:, y0:y1, x0:x1] = o
        sub[:, y0:y1, x0:x1] = ps
    return out, sub


def _median_interfaces(cuts, sub, sigmas, fp, smooth_px, nz):
    """2-D median of each low-contrast interface map (window 2 sigma + 1), keeping the order.

    Interfaces that needed more lateral smoothing than ``smooth_px`` are noise-limited; a
    median of that width removes isolated outliers (e.g. from ring artefacts) without
    moving steps. Integer cuts follow: first voxel whose centre lies above the interface.
    """
    from scipy import ndimage

    sub = sub.copy()
    for j, sig in enumerate(sigmas):
        if sig <= smooth_px + 0.05 or not fp.any():
            continue
        w = 2 * int(round(sig)) + 1
        m = np.where(fp, sub[j], np.median(sub[j][fp]))  # neutral values outside the cell
        sub[j] = np.where(fp, ndimage.median_filter(m, size=w, mode="nearest"), sub[j])
    for j in range(1, sub.shape[0]):  # keep the layers in order
        sub[j] = np.maximum(sub[j], sub[j - 1])
    sub = np.clip(sub, 0, nz)
    out = np.clip(np.ceil(sub - 0.5), 0, nz).astype(np.int32)
    return np.where(fp[None], out, cuts), sub


def _core_values(v, c, k, n, margin):
    """Voxels of layer k's core in sampled columns ``v`` (nz, m) with cuts ``c`` (n-1, m)."""
    nz = v.shape[0]
    z = np.arange(nz)[:, None]
    lo = (c[k - 1] if k > 0 else np.zeros(v.shape[1], int)) + (margin if k > 0 else 0)
    hi = (c[k] if k < n - 1 else np.full(v.shape[1], nz)) - (margin if k < n - 1 else 0)
    return v[(z >= lo[None]) & (z < hi[None])]


def _noise_sigma(host_s, cuts_s, margin=2):
    """Per-voxel noise from the median absolute deviation inside the band cores (input units).

    ``host_s`` (nz, m) holds the raw voxels of the sampled columns, ``cuts_s`` (n-1, m) their cuts.
    """
    n = cuts_s.shape[0] + 1
    devs = []
    for k in range(n):
        x = _core_values(host_s, cuts_s, k, n, margin)
        if x.size > 10:
            devs.append(1.4826 * np.median(np.abs(x - np.median(x))))
    return float(np.median(devs)) if devs else 0.0


def _lateral_noise(volume) -> float:
    """Robust per-voxel noise sigma from differences of neighbouring voxels across the layers.

    Uses a regular sub-sample of (z, y) rows (about 4 M differences at most); with a
    :class:`TileSource` (stacking axis first) only those rows are read, tile by tile.
    """
    size = int(np.prod(volume.shape))
    step = max(1, int(np.ceil(np.sqrt(size / float(MAX_NOISE_DIFFS)))))
    if isinstance(volume, TileSource):
        v = strided_sample(volume, None, (step, step, 1))
    else:
        v = np.asarray(to_device(volume[::step, ::step], "cpu"))
    d = np.diff(v.astype(np.float32), axis=2).ravel()
    d = d[np.isfinite(d)]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def _check_bands(cuts, fp, phases, li_idx, axis):
    """Every named layer below the top one must be present somewhere; an absent Li layer is 'no lithium found'."""
    lower = np.zeros_like(cuts[0])
    for k in range(len(phases) - 1):
        frac = float(np.mean((cuts[k] - lower)[fp] > 0))
        lower = cuts[k]
        if frac < 0.01:
            if k == li_idx:
                raise InputError(f"no lithium found in its place in the phase order {','.join(phases)} along "
                                 f"axis {axis}: the '{phases[k]}' layer is empty in {100 * (1 - frac):.1f} % of "
                                 f"the cell's columns (check the phase order)")
            raise InputError(f"phase order {','.join(phases)} does not match the data along axis {axis}: "
                             f"no '{phases[k]}' layer found in its place")


def _band_core_spreads(host_s, cuts_s, n, margin=2):
    """Robust spread (MAD sigma) of each layer's core in the sampled columns, NaN for too few voxels."""
    out = []
    for k in range(n):
        x = _core_values(host_s, cuts_s, k, n, margin)
        out.append(1.4826 * float(np.median(np.abs(x - np.median(x)))) if x.size >= 100 else np.nan)
    return np.array(out)


def _band_core_medians(sm_s, cuts_s, n, margin=2):
    """Median of each layer's core in the sampled columns (NaN when empty)."""
    out = []
    for k in range(n):
        x = _core_values(sm_s, cuts_s, k, n, margin)
        out.append(float(np.median(x)) if x.size else np.nan)
    return np.array(out)


def segment_layers(volume, phases=("collector", "li", "electrolyte"), *, axis: int = 0, method="multiotsu",
                   li_class: int | None = None, mask=None, smooth_px: float = 1.0, max_smooth_px: float = 6.0,
                   n_iter: int = 5, refine: bool = True, min_contrast: float = 0.2,
                   max_spread_ratio: float = 2.5, interface_median: bool = True,
                   min_size_px: int = 27, device: str = "auto", chunks=None, tile_px: int | None = None,
                   out=None, return_info: bool = False):
    """Label the layers of a stacked cell, numbered 1..n in the order of ``phases`` (0 = unassigned).

    Automatic methods ("multiotsu", "kmeans"): the threshold classes of the volume smoothed
    across the layers (``smooth_px``) give the cell footprint (columns brighter than the
    surrounding air). The phase levels come from the mean profile along ``axis`` (end layers
    from the end slices, lithium at the profile minimum, as the darkest solid). Each column is
    then cut into bands in the order of ``phases`` by an ordered least-squares change-point fit,
    and every interface is re-placed at the first persistent crossing of the mid level between
    its two phases, with sub-voxel interpolation, on a copy smoothed across the layers just as
    much as its noise-to-contrast ratio needs (up to ``max_smooth_px``). Voxels far from their
    layer's level form inclusions (pores, particles) that become 0. With a
    :class:`PixelClassifier` the columns are cut into the ordered bands that agree with the most
    predicted voxels, then refined the same way with levels measured in those bands.

    The phase order is checked against the data: lithium must be the darkest layer (or the
    rank ``li_class``), every layer below the top one must exist, and no layer may mix phases
    (its intensity spread is compared with the most uniform layer's).

    Parameters
    ----------
    volume : ndarray or dask.array.Array, (z, y, x)
        Reconstructed (ideally denoised) attenuation volume (any unit).
    phases : sequence of str or str
        Phase names from the low to the high end of ``axis``, e.g. ("collector", "li",
        "electrolyte") or "collector,li,electrolyte"; "li" / "lithium" marks the lithium layer.
    axis : int
        Stacking axis of the layers (0, 1 or 2).
    method : {"multiotsu", "kmeans"} or PixelClassifier
        Automatic thresholds or a trained classifier whose ``class_names`` include the phase
        names (its other classes, e.g. "pore", become 0).
    li_class : int, optional
        Index (0 = darkest) of the lithium class among the automatic intensity classes, for
        cells where lithium is not the darkest layer; its mean starts the lithium level, which
        must keep that rank. The default rule is the darkest (0).
    mask : ndarray of bool, (y, x) or (z, y, x), optional
        Cell footprint (columns, in the plane of the layers); found automatically when omitted.
    smooth_px, max_smooth_px : float
        Gaussian sigma in voxels across the layers for the automatic fit (0 = none), and the
        most any low-contrast interface is smoothed (each interface gets the smoothing its
        noise-to-contrast ratio needs, between the two).
    n_iter : int
        Ordered k-means iterations.
    min_contrast : float
        The lithium layer must be darker than its neighbours by this many noise sigmas
        (per-voxel noise from neighbouring-voxel differences), else "no lithium found".
    max_spread_ratio : float
        A layer whose core intensity spread exceeds this multiple of the most uniform layer's
        mixes phases: the phase order does not match the data.
    interface_median : bool
        Median-filter each noise-limited interface map (those smoothed beyond ``smooth_px``)
        over a window of twice its smoothing sigma plus one, against isolated outliers.
    refine : bool
        With a classifier: re-place each interface with sub-voxel precision from the intensity
        profile, with phase levels measured in the classified layers.
    min_size_px : int
        Voxels whose class disagrees with their layer form inclusions (pores, particles) that
        become 0 when at least this many voxels are connected; smaller specks are noise.
    device : {"auto", "cpu", "gpu"}
        Where smoothing, thresholds and features run.
    chunks : tuple of int, optional
        Chunk shape for the classifier's block-wise prediction.
    tile_px : int, optional
        Lateral tile edge in voxels (automatic methods): the volume is processed in tiles of
        the full extent along ``axis`` and ``tile_px`` x ``tile_px`` columns (plus a halo of
        the lateral smoothing radius), so that memory is bounded by the tile, not the
        volume. Default: the whole volume at once for in-memory arrays, the largest lateral
        chunk for a Dask (e.g. zarr-backed) volume. The labels are identical for any tiling.
    out : array-like, optional
        Array (e.g. a zarr array) of the volume's shape that receives the labels tile by
        tile; returned instead of a new array. Use it for volumes larger than memory.
    return_info : bool
        Also return a dict: thresholds, phase levels, cut positions ``cuts`` (n-1, y, x) in
        voxels along ``axis`` (band k spans [cut_{k-1}, cut_k)), sub-voxel ``interfaces_px``
        (n-1, y, x; voxel i spans [i, i+1)), the ``footprint`` (y, x), the number of tiles
        ``n_tiles`` and, when processed in one piece, the smoothed volume ``smoothed``.

    Returns
    -------
    labels : ndarray, uint8, same shape as ``volume``
        1..n in the order of ``phases``, 0 outside the cell and in inclusions (a CuPy array
        for a CuPy input; the layering itself runs on the host); ``out`` when given.
    info : dict, only when ``return_info``

    Raises
    ------
    InputError
        When the phase order does not match the data (the lithium phase is not the darkest
        level) or no lithium is found.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.zeros((30, 24, 24), np.float32); v[:5] = 3; v[5:12] = 1; v[12:] = 8
    >>> lab = segment_layers(v, ("collector", "li", "electrolyte"), mask=np.ones((24, 24), bool))
    >>> [int((lab[:, 0, 0] == k).sum()) for k in (1, 2, 3)]
    [5, 7, 18]
    """
    import dask.array as da

    phases = _normalise_phases(phases)
    if getattr(volume, "ndim", None) != 3:
        raise InputError(f"volume must be a 3-D array, got shape {getattr(volume, 'shape', None)}")
    if axis not in (0, 1, 2):
        raise InputError(f"axis must be 0, 1 or 2, got {axis!r}")
    if tile_px is not None and (int(tile_px) != tile_px or int(tile_px) < 1):
        raise InputError(f"tile_px must be a positive number of voxels, got {tile_px!r}")
    if out is not None and tuple(getattr(out, "shape", ())) != tuple(volume.shape):
        raise InputError(f"out has shape {getattr(out, 'shape', None)}, expected the volume's {tuple(volume.shape)}")
    n = len(phases)
    info: dict = {"phases": phases, "axis": axis}
    vol = volume
    if axis != 0:
        vol = da.moveaxis(vol, axis, 0) if isinstance(vol, da.Array) else array_module(vol).moveaxis(vol, axis, 0)
    li_idx = next((i for i, p in enumerate(phases) if p in LI_NAMES), None)
    fp = None
    if mask is not None:
        m = np.asarray(to_device(mask, "cpu"), bool)
        if m.ndim == 3:
            if m.shape != tuple(volume.shape):
                raise InputError(f"mask shape {m.shape} does not match the volume {tuple(volume.shape)}")
            m = np.moveaxis(m, axis, 0).any(axis=0)
        if m.shape != tuple(vol.shape[1:]):
            raise InputError(f"mask shape {np.shape(mask)} does not match the volume's plane {tuple(vol.shape[1:])}")
        fp = m
    if tile_px is None and isinstance(vol, da.Array) and not isinstance(method, PixelClassifier):
        tile_px = max(max(c) for c in vol.chunks[1:])
    if isinstance(method, PixelClassifier):
        src, cuts, fp, classified = _classifier_cuts(vol, method, phases, li_idx, fp, refine=refine,
                                                 smooth_px=smooth_px, max_smooth_px=max_smooth_px,
                                                 interface_median=interface_median, chunks=chunks,
                                                 device=device, info=info)
        check_odd = ("classes", classified)
    else:
        if method not in THRESHOLD_METHODS:
            raise InputError(f"method must be one of {THRESHOLD_METHODS} or a PixelClassifier, got {method!r}")
        src = TileSource(vol, tile_px, device)
        cuts, fp, levels, margin = _threshold_cuts(
            src, method, phases, li_idx, fp, li_class=li_class, smooth_px=smooth_px, max_smooth_px=max_smooth_px,
            n_iter=n_iter, min_contrast=min_contrast, max_spread_ratio=max_spread_ratio,
            interface_median=interface_median, axis=axis, info=info)
        check_odd = ("levels", np.asarray(levels, np.float64), float(margin))
    info["n_tiles"] = src.n_tiles
    if src.single and "smoothed" not in info and check_odd[0] == "levels":
        info["smoothed"] = src.full_smoothed(smooth_px)
    labels, li_any = _write_labels_tiled(src, cuts, fp, check_odd, n, li_idx, min_size_px, axis, volume, out)
    info["footprint"] = fp
    info["cuts"] = cuts
    if li_idx is not None:
        li_cols = (cuts[li_idx] - (cuts[li_idx - 1] if li_idx > 0 else 0))[fp] > 0 if li_idx < n - 1 else \
            li_any[fp]
        info["li_column_fraction"] = float(np.mean(li_cols))
        if np.mean(li_cols) < 0.01:
            raise InputError(f"no lithium found: the '{phases[li_idx]}' layer is empty in "
                             f"{100 * (1 - np.mean(li_cols)):.1f} % of the cell's columns")
    if out is None and array_module(volume) is not np and not isinstance(volume, da.Array):
        labels = to_device(labels, "gpu")  # CuPy in, CuPy out
    return (labels, info) if return_info else labels


def _classifier_cuts(vol, clf, phases, li_idx, fp, *, refine, smooth_px, max_smooth_px, interface_median, chunks,
                     device, info):
    """Ordered bands agreeing with the classifier's voxel classes (in memory), refined on the intensity."""
    import dask.array as da

    n = len(phases)
    names = tuple(c.lower() for c in clf.class_names)
    missing = [p for p in phases if p not in names]
    if missing:
        raise InputError(f"classifier classes {names} do not include the phase(s) {missing}")
    classes = clf.predict(vol, chunks=chunks, device=device)  # 1..m
    band_class = [names.index(p) + 1 for p in phases]
    if fp is None:
        dark = {k + 1 for k, c in enumerate(names) if c in VOID_NAMES} | {0}
        if li_idx is not None:
            dark.add(band_class[li_idx])
        fp = _footprint(classes, dark)
    if fp.sum() == 0:
        raise InputError("no cell found: every column is dark (is the volume empty or the mask wrong?)")
    cuts = optimal_bands(classes, band_class)
    src = TileSource(vol.compute() if isinstance(vol, da.Array) else vol, None, device)
    levels = None
    if refine:
        # sub-voxel interfaces from the intensity profile, with levels from the classified layers
        nz = src.shape[0]
        cols = sample_columns(fp, nz)
        host_s, sm_s = _gather(src, cols, smooth_px)
        levels = _band_core_medians(sm_s, cuts.reshape(n - 1, -1)[:, cols], n)
        if np.all(np.isfinite(levels)):
            sig, used = _interface_sigmas(levels, _noise_sigma(host_s, cuts.reshape(n - 1, -1)[:, cols]),
                                          smooth_px, max_smooth_px)
            cuts, sub = _refine_pass(src, cuts, levels, used)
            if interface_median:
                cuts, sub = _median_interfaces(cuts, sub, sig, fp, smooth_px, nz)
            info.update(levels=levels.tolist(), interface_smooth_px=sig, interfaces_px=sub)
    info.setdefault("interfaces_px", cuts.astype(np.float64))
    info.update(method="classifier", band_class=band_class)
    return src, cuts, fp, (classes, np.asarray(band_class, np.uint8))


def _gather(src, cols, smooth_px):
    """Raw and smoothed values (nz, len(cols)) at the sample columns, in one pass over the tiles."""
    raw_s, sm_s = ColumnSample(cols, src.shape), ColumnSample(cols, src.shape)
    for bounds in src.tiles():
        raw, (sm,) = src.read(bounds, (smooth_px,), raw=True)
        raw_s.put(bounds, raw)
        sm_s.put(bounds, sm)
    return raw_s.values, sm_s.values


def _threshold_cuts(src, method, phases, li_idx, fp, *, li_class, smooth_px, max_smooth_px, n_iter, min_contrast,
                    max_spread_ratio, interface_median, axis, info):
    """Automatic layering in streaming passes over the lateral tiles of ``src``.

    Returns the cuts (n-1, y, x), the footprint, the phase levels and the inclusion margin.
    """
    n = len(phases)
    nz, ny, nx = src.shape
    step = _sample_step(nz * ny * nx)
    sample = strided_sample(src, smooth_px, (step,) * 3).astype(np.float64).ravel()
    t = _thresholds_from_sample(sample[np.isfinite(sample)], method=method, classes=n)
    del sample
    t32 = t.astype(np.float32)
    if fp is None:  # pass: fraction of solid voxels per column
        frac = np.empty((ny, nx))
        for bounds in src.tiles():
            y0, y1, x0, x1 = bounds
            (sm,) = src.read(bounds, (smooth_px,))[1]
            frac[y0:y1, x0:x1] = (np.searchsorted(t32, sm, side="right") != 0).mean(axis=0)
        fp = _footprint_from_fraction(frac)
    if fp.sum() == 0:
        raise InputError("no cell found: every column is dark (is the volume empty or the mask wrong?)")
    if li_class is not None:
        if li_idx is None:
            raise InputError(f"li_class given but no 'li' phase in {phases}")
        if not 0 <= int(li_class) < n:
            raise InputError(f"li_class must be in 0..{n - 1}, got {li_class!r}")
    # pass: exact mean profile over the footprint, lithium-class mean, sample columns
    cols = sample_columns(fp, nz)
    raw_s, sm_s = ColumnSample(cols, src.shape), ColumnSample(cols, src.shape)
    prof = ExactSum(nz)
    li_sum, li_count = ExactSum(1), 0
    for bounds in src.tiles():
        y0, y1, x0, x1 = bounds
        raw, (sm,) = src.read(bounds, (smooth_px,), raw=True)
        f = fp[y0:y1, x0:x1]
        prof.add(sm, f[None])
        if li_class is not None:
            in_class = (np.searchsorted(t32, sm, side="right") == int(li_class)) & f[None]
            li_sum.add(sm.reshape(1, -1), in_class.reshape(1, -1))
            li_count += int(in_class.sum())
        raw_s.put(bounds, raw)
        sm_s.put(bounds, sm)
    host_s, sm_s = raw_s.values, sm_s.values
    profile = prof.means(int(fp.sum()))
    rule_rank = 0 if li_class is None else int(li_class)
    levels = _initial_levels(profile, n, li_idx if rule_rank == 0 else None)
    if li_class is not None:  # the user names the lithium intensity class: start from its mean
        if li_count == 0:
            raise InputError(f"intensity class {li_class} (0 = darkest of {n}) is empty inside the cell")
        levels[li_idx] = li_sum.total_mean(li_count)
    noise0 = None
    if li_idx is not None and rule_rank == 0:
        # the mean profile must dip below the neighbouring layers where lithium is
        noise0 = _lateral_noise(src)
        nb = [levels[k] for k in (li_idx - 1, li_idx + 1) if 0 <= k < n]
        if min(nb) - levels[li_idx] < min_contrast * noise0:
            raise InputError(
                f"no lithium found: the mean profile along axis {axis} shows no layer darker than "
                f"its neighbours (contrast {min(nb) - levels[li_idx]:.3g} < {min_contrast} x noise {noise0:.3g})")

    # ordered least-squares start, then re-placed interfaces until they settle (one pass each)
    cuts_s = optimal_bands_levels(sm_s, levels)
    cuts = np.zeros((n - 1, ny, nx), np.int32)
    for it in range(max(int(n_iter), 1)):
        sig, used = _interface_sigmas(levels, _noise_sigma(host_s, cuts_s), smooth_px, max_smooth_px)
        new_cuts, sub = _refine_pass(src, cuts, levels, used,
                                     start_levels=(levels, float(smooth_px)) if it == 0 else None)
        done = np.array_equal(new_cuts, cuts)
        cuts = new_cuts
        cuts_s = cuts.reshape(n - 1, -1)[:, cols]
        if done:
            break
    if interface_median:
        cuts, sub = _median_interfaces(cuts, sub, sig, fp, smooth_px, nz)
        cuts_s = cuts.reshape(n - 1, -1)[:, cols]
    _check_bands(cuts, fp, phases, li_idx, axis)
    final = _band_core_medians(sm_s, cuts_s, n)
    thin = _band_core_medians(sm_s, cuts_s, n, margin=0)  # for layers too thin to have a core
    final = np.where(np.isfinite(final), final, thin)
    if li_idx is not None and rule_rank == 0:
        noise = noise0
        nb = [final[k] for k in (li_idx - 1, li_idx + 1) if 0 <= k < n and np.isfinite(final[k])]
        contrast = min(nb) - final[li_idx] if nb else np.inf
        if abs(contrast) < min_contrast * noise:  # clearly brighter is a wrong order, below
            raise InputError(
                f"no lithium found: the '{phases[li_idx]}' layer is not darker than its neighbours "
                f"(contrast {contrast:.3g} < {min_contrast} x noise {noise:.3g})")
    if li_idx is not None:
        rank = int(np.argsort(np.argsort(final))[li_idx])
        if rank != rule_rank:
            darkest = int(np.argmin(final))
            raise InputError(
                f"phase order {','.join(phases)} does not match the data along axis {axis}: the darkest "
                f"layer is layer {darkest + 1} of {n} ('{phases[darkest]}'), but lithium "
                f"('{phases[li_idx]}') must have intensity rank {rule_rank} (0 = darkest)")
    spread = _band_core_spreads(host_s, cuts_s, n)
    ok = np.isfinite(spread)
    if ok.sum() >= 2 and spread[ok].min() > 0:
        ratio = spread / spread[ok].min()
        worst = int(np.nanargmax(ratio))
        if ratio[worst] > max_spread_ratio:
            raise InputError(
                f"phase order {','.join(phases)} does not match the data along axis {axis}: the "
                f"'{phases[worst]}' layer mixes phases (intensity spread {ratio[worst]:.1f} times that of "
                f"the most uniform layer)")
    info["layer_spread_ratio"] = (spread / np.nanmin(spread)).tolist() if ok.any() else None
    info["interface_smooth_px"] = sig
    info["interfaces_px"] = sub
    # inclusions: voxels of the (unsmoothed) volume closer to another level than to their
    # layer's by a clear margin, away from the interfaces (partial volume)
    lv = np.asarray(levels, np.float64)
    gaps = np.diff(np.sort(lv))
    half_gap = 0.5 * float(gaps.min()) if gaps.size else 0.0
    margin = max(half_gap, 3.0 * _noise_sigma(host_s, cuts_s))
    info.update(method=method, thresholds=t.tolist(), levels=levels.tolist())
    return cuts, fp, levels, margin


def _write_labels_tiled(src, cuts, fp, check_odd, n, li_idx, min_size_px, axis, volume, out):
    """Labels tile by tile: bands, minus inclusions of >= ``min_size_px`` connected voxels
    (components merged across tiles), 0 outside the footprint. Returns (labels, li-present map)."""
    nz, ny, nx = src.shape
    others = [a for a in (0, 1, 2) if a != axis]

    def tile_odd(bounds):
        """Bands of a tile and its inclusion candidates: voxels whose class (classifier) or
        value (levels, margin) disagrees with their layer, away from the interfaces."""
        y0, y1, x0, x1 = bounds
        c = np.ascontiguousarray(cuts[:, y0:y1, x0:x1])
        lab = bands_to_labels(c, nz)
        if check_odd[0] == "classes":
            classes, band_class = check_odd[1]
            return lab, classes[:, y0:y1, x0:x1] != band_class[lab - 1]
        odd = np.empty(lab.shape, bool)
        inclusion_candidates(src.read(bounds, raw=True)[0], lab, check_odd[1], check_odd[2], c, odd)
        return lab, odd

    comps = TileComponents(src.shape)
    for bounds in src.tiles():
        comps.add(bounds, tile_odd(bounds)[1])
    if out is None:
        out = np.zeros(tuple(volume.shape), np.uint8)
    li_any = np.zeros((ny, nx), bool)
    for bounds in src.tiles():
        y0, y1, x0, x1 = bounds
        lab, odd = tile_odd(bounds)
        loc, nloc = comps.label(odd)
        if nloc:
            lab[comps.large(bounds, nloc, max(int(min_size_px), 1))[loc]] = 0
        lab[:, ~fp[y0:y1, x0:x1]] = 0
        if li_idx is not None:
            li_any[y0:y1, x0:x1] = (lab == li_idx + 1).any(axis=0)
        idx = [slice(None)] * 3
        idx[others[0]], idx[others[1]] = slice(y0, y1), slice(x0, x1)
        out[tuple(idx)] = np.moveaxis(lab, 0, axis)
    return out, li_any
