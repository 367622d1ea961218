"""napari readers: OME-Zarr volumes (with labels and maps), DXchange/NXtomo scans, spectral cubes.

Every reader returns napari ``LayerData`` tuples ``(data, kwargs, layer_type)``. Volumes are
read lazily (Dask arrays over the Zarr chunks, all pyramid levels as a multiscale layer), with
the physical scale in um from the NGFF metadata. Layer ``metadata["anodescope"]`` records what
the layer is (``kind``), where it came from (``path``) and the voxel size, for the widgets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._errors import InputError

__all__ = ["napari_get_reader", "read_ome_zarr", "read_projections_layers", "read_cube_layers"]

H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")
MAP_LAYERS = {
    "thickness_um": ("Li thickness (µm)", "viridis"),
    "capacity_mah_cm2": ("capacity (mAh/cm²)", "magma"),
    "topology_bottom_um": ("topology bottom (µm)", "twilight_shifted"),
    "topology_top_um": ("topology top (µm)", "twilight_shifted"),
}


# ----------------------------------------------------------------------------- sniffing
def _zarr_attrs(path: Path) -> dict | None:
    """Group attributes of a Zarr v2 (``.zattrs``) or v3 (``zarr.json``) directory, or None."""
    v2, v3 = path / ".zattrs", path / "zarr.json"
    try:
        if v3.exists():
            meta = json.loads(v3.read_text(encoding="utf-8"))
            attrs = dict(meta.get("attributes", {}))
            return {**attrs.get("ome", {}), **attrs}
        if v2.exists():
            return json.loads(v2.read_text(encoding="utf-8"))
        if (path / ".zgroup").exists():
            return {}
    except (OSError, ValueError):
        return None
    return None


def _zarr_kind(path: Path) -> str | None:
    attrs = _zarr_attrs(path)
    if attrs is None:
        return None
    if "multiscales" in attrs and "image-label" in attrs:
        return "labels"
    if "multiscales" in attrs:
        return "volume"
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    if {"counts", "bin_edges"} <= names:
        return "cube"
    if "thickness_um" in names:
        return "maps"
    return None


def _h5_kind(path: Path) -> str | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "exchange/data" in f:
                return "projections"
            if "counts" in f and "bin_edges" in f:
                return "cube"
            found: list[str] = []

            def visit(name, obj):
                base = name.rsplit("/", 1)[-1]
                if base in ("pixel_spectra", "image_key"):
                    found.append(base)
                    return True
                return None

            f.visititems(visit)
    except OSError:
        return None
    if "pixel_spectra" in found:
        return "hexitec"
    if "image_key" in found:
        return "projections"
    return None


def _kind(path) -> str | None:
    p = Path(path)
    if p.is_dir():
        return _zarr_kind(p)
    if p.suffix.lower() in H5_SUFFIXES and p.is_file():
        return _h5_kind(p)
    if p.suffix.lower() == ".hxt" and p.is_file():
        return "hxt"
    return None


def napari_get_reader(path):
    """npe2 reader hook: a reader function for ``path``, or None when it is not ours.

    Parameters
    ----------
    path : str or list of str
        A file or directory (the first of a list is used).

    Returns
    -------
    callable or None
        ``reader(path) -> list of LayerData``.

    Examples
    --------
    >>> napari_get_reader("not_a_scan.txt") is None
    True
    """
    if isinstance(path, (list, tuple)):
        if not path:
            return None
        path = path[0]
    kind = _kind(path)
    if kind is None:
        return None
    return _READERS[kind]


# ----------------------------------------------------------------------------- OME-Zarr
def _scale_translate(dataset: dict, ndim: int) -> tuple[list[float], list[float]]:
    scale, translate = [1.0] * ndim, [0.0] * ndim
    for ct in dataset.get("coordinateTransformations", []):
        if ct.get("type") == "scale":
            scale = [float(v) for v in ct["scale"]][-ndim:]
        elif ct.get("type") == "translation":
            translate = [float(v) for v in ct["translation"]][-ndim:]
    return scale, translate


def _robust_limits(arr) -> tuple[float, float]:
    a = np.asarray(arr, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(a, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
        if hi <= lo:
            hi = lo + 1.0
    return float(lo), float(hi)


def _multiscale_arrays(path: Path, attrs: dict, what: str):
    import dask.array as da
    import zarr

    try:
        ms = attrs["multiscales"][0]
        datasets = ms["datasets"]
    except (KeyError, IndexError, TypeError):
        raise InputError(f"{path}: no NGFF 'multiscales' attribute with datasets ({what})") from None
    grp = zarr.open_group(str(path), mode="r")
    arrays = []
    for ds in datasets:
        key = str(ds["path"])
        if key not in grp:
            raise InputError(f"{path}: dataset {key!r} listed in multiscales is missing ({what})")
        arrays.append(da.from_zarr(grp[key]))
    scale, translate = _scale_translate(datasets[0], arrays[0].ndim)
    unit = next((ax.get("unit") for ax in ms.get("axes", []) if isinstance(ax, dict)), None)
    return arrays, scale, translate, unit


def _labels_layer(path: Path, attrs: dict, name: str, volume_path: Path | None = None):
    arrays, scale, translate, _ = _multiscale_arrays(path, attrs, "labels")
    data = arrays if len(arrays) > 1 else arrays[0]
    meta = {"kind": "labels", "path": str(path), "phases": list(attrs.get("phases", [])),
            "axis": int(attrs.get("axis", 0)), "voxel_size_um": attrs.get("voxel_size_um", scale[-1]),
            "volume_path": str(volume_path) if volume_path else None}
    if "interfaces_px" in _child_names(path):
        meta["interfaces_px_path"] = str(path / "interfaces_px")
    kwargs = {"name": name, "scale": scale, "translate": translate, "multiscale": len(arrays) > 1,
              "metadata": {"anodescope": meta}}
    return data, kwargs, "labels"


def _child_names(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


def _maps_layers(path: Path, stem: str) -> list:
    import zarr

    grp = zarr.open_group(str(path), mode="r")
    px = grp.attrs.get("pixel_size_um")
    if px is None and "thickness_um" in grp:
        px = grp["thickness_um"].attrs.get("pixel_size_um")
    if px is None:
        raise InputError(f"{path}: maps group without attribute 'pixel_size_um' (um)")
    px = float(px)
    metrics = dict(grp.attrs.get("metrics", {}))
    layers = []
    for key, (title, cmap) in MAP_LAYERS.items():
        if key not in grp:
            continue
        arr = np.asarray(grp[key][...], np.float32)
        layers.append((arr, {"name": f"{stem} {title}", "scale": (px, px), "colormap": cmap,
                             "contrast_limits": _robust_limits(arr),
                             "metadata": {"anodescope": {"kind": "map", "map": key, "path": str(path),
                                                         "pixel_size_um": px, "metrics": metrics}}},
                       "image"))
    return layers


def read_ome_zarr(path) -> list:
    """Layers of an anodescope OME-Zarr store: volume, labels and maps, read lazily.

    The volume becomes a multiscale image (all pyramid levels, Dask arrays: nothing is read
    until napari shows a slice), scaled by the voxel size in um; every NGFF label image in
    ``labels/`` becomes a labels layer and the 2-D maps in ``maps/`` (thickness, capacity,
    topology in um) image layers. A standalone labels store or maps group also works.

    Parameters
    ----------
    path : str or Path
        The ``.zarr`` directory.

    Returns
    -------
    list of (data, kwargs, layer_type)

    Raises
    ------
    InputError
        When ``path`` is not a Zarr group with NGFF multiscales, labels or maps.

    Examples
    --------
    >>> layers = read_ome_zarr("scan.zarr")  # doctest: +SKIP
    >>> [kw["name"] for _, kw, _ in layers]  # doctest: +SKIP
    ['scan', 'scan layers', 'scan Li thickness (µm)', ...]
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a Zarr directory")
    kind = _zarr_kind(path)
    stem = path.name.removesuffix(".zarr")
    attrs = _zarr_attrs(path) or {}
    if kind == "labels":
        return [_labels_layer(path, attrs, stem)]
    if kind == "maps":
        return _maps_layers(path, stem)
    if kind != "volume":
        raise InputError(f"{path}: not an OME-Zarr volume, labels or maps group (no 'multiscales' "
                         "attribute and no 'thickness_um' array)")
    arrays, scale, translate, unit = _multiscale_arrays(path, attrs, "volume")
    # a float16 volume (recon --dtype float16) is shown as float32, converted chunk by chunk
    arrays = [a.astype(np.float32) if a.dtype == np.float16 else a for a in arrays]
    voxel = attrs.get("voxel_size_um", scale[-1] if unit else None)
    meta = {"kind": "volume", "path": str(path), "voxel_size_um": voxel,
            "units": attrs.get("units"), "energy_kev": attrs.get("energy_kev"), "center": attrs.get("center")}
    limits = _robust_limits(arrays[-1][arrays[-1].shape[0] // 2].compute())
    layers = [(arrays if len(arrays) > 1 else arrays[0],
               {"name": stem, "scale": scale, "translate": translate, "multiscale": len(arrays) > 1,
                "contrast_limits": limits, "colormap": "gray", "metadata": {"anodescope": meta}},
               "image")]
    label_root = path / "labels"
    if label_root.is_dir():
        names = (_zarr_attrs(label_root) or {}).get("labels", [])
        for name in names:
            lp = label_root / name
            la = _zarr_attrs(lp)
            if la is not None and "multiscales" in la:
                layers.append(_labels_layer(lp, la, f"{stem} {name}", volume_path=path))
    if (path / "maps").is_dir() and "thickness_um" in _child_names(path / "maps"):
        layers.extend(_maps_layers(path / "maps", stem))
    return layers


# ----------------------------------------------------------------------------- projections
def read_projections_layers(path) -> list:
    """Projections of a DXchange or NeXus NXtomo scan as one lazy image layer.

    Parameters
    ----------
    path : str or Path
        HDF5 scan file (``recon.read_projections`` picks the layout).

    Returns
    -------
    list of (data, kwargs, layer_type)
        Raw projections (angle, row, col) in counts; ``metadata["anodescope"]["projections"]``
        is the :class:`recon.Projections` object (for the reconstruction widget).
    """
    import recon

    proj = recon.read_projections(path)
    first = np.asarray(proj.data[0])
    px = proj.pixel_size_um
    scale = (1.0, px, px) if px else (1.0, 1.0, 1.0)
    meta = {"kind": "projections", "path": str(path), "projections": proj, "pixel_size_um": px}
    return [(proj.data, {"name": f"{Path(path).stem} projections", "scale": scale,
                         "contrast_limits": _robust_limits(first), "colormap": "gray",
                         "metadata": {"anodescope": meta}}, "image")]


# ----------------------------------------------------------------------------- spectral cubes
def cube_layers(cube, name: str, *, path: str | None = None) -> list:
    """Layers of a spectral cube: counts as (energy, row, col) and the summed counts map."""
    counts = np.moveaxis(np.asarray(cube.counts), -1, 0)
    edges = np.asarray(cube.bin_edges_kev, np.float64)
    width = float(np.mean(np.diff(edges))) if edges.size > 1 else 1.0
    meta = {"kind": "cube", "path": path, "cube": cube}
    total = np.asarray(cube.counts).sum(axis=-1, dtype=np.int64).astype(np.float32)
    return [
        (counts, {"name": f"{name} counts", "scale": (width, 1.0, 1.0),
                  "translate": (float(edges[0]) + width / 2, 0.0, 0.0), "colormap": "inferno",
                  "contrast_limits": _robust_limits(counts[:, ::4, ::4]) if counts.size else (0, 1),
                  "metadata": {"anodescope": meta}}, "image"),
        (total, {"name": f"{name} total counts", "colormap": "gray",
                 "contrast_limits": _robust_limits(total), "metadata": {"anodescope": meta}}, "image"),
    ]


def read_cube_layers(path) -> list:
    """Spectral cube layers of a ``compton.write_cube`` store, a HEXITEC DAQ HDF5 or a .hxt file.

    Parameters
    ----------
    path : str or Path
        Zarr directory or HDF5 file with ``counts`` and ``bin_edges``, HEXITEC HDF5 with
        ``pixel_spectra``, or a ``.hxt`` histogram file.

    Returns
    -------
    list of (data, kwargs, layer_type)
        Counts (energy in keV, row, col) and total counts (row, col);
        ``metadata["anodescope"]["cube"]`` is the :class:`compton.Cube`.
    """
    import compton

    p = Path(path)
    kind = _kind(p)
    if kind == "hexitec":
        cube = compton.read_hexitec_h5(p)
    elif kind == "hxt":
        cube = compton.read_hxt(p)
    else:
        cube = compton.read_cube(p)
    return cube_layers(cube, p.name.split(".")[0], path=str(p))


_READERS = {
    "volume": read_ome_zarr,
    "labels": read_ome_zarr,
    "maps": read_ome_zarr,
    "projections": read_projections_layers,
    "cube": read_cube_layers,
    "hexitec": read_cube_layers,
    "hxt": read_cube_layers,
}
