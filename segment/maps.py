"""Maps a battery paper reports: lithium thickness, areal capacity, interface topology, roughness.

``layer_maps`` turns a segmented layer stack into maps on the (y, x) grid of the columns;
``write_maps`` / ``read_maps`` store them as a zarr group (2-D float arrays ``thickness_um``,
``capacity_mah_cm2``, ``topology_bottom_um``, ``topology_top_um``, boolean ``mask``, the
attribute ``pixel_size_um``), the form read by the virtual-stripping stage;
``save_figures`` writes PNG figures and ``read_volume`` opens an OME-Zarr volume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._backend import to_device
from ._errors import InputError
from .layers import fit_plane, thickness_map
from .roughness import roughness

__all__ = [
    "UM_PER_MAH_CM2",
    "LayerMaps",
    "capacity_map",
    "layer_maps",
    "write_maps",
    "read_maps",
    "save_figures",
    "read_volume",
]

#: lithium thickness of 1 mAh cm^-2 (molar volume 13.02 cm^3/mol, 96485 C/mol), in um
UM_PER_MAH_CM2 = 4.86


def capacity_map(thickness_um):
    """Areal capacity in mAh cm^-2 from a lithium thickness map in um (4.86 um per mAh cm^-2).

    Examples
    --------
    >>> float(capacity_map(24.3))
    5.0
    """
    return np.asarray(thickness_um, dtype=np.float64) / UM_PER_MAH_CM2


@dataclass
class LayerMaps:
    """Per-column maps of the lithium layer (all on the (y, x) grid of the columns).

    Attributes
    ----------
    thickness_um : ndarray
        Lithium thickness in um from the sub-voxel interfaces (NaN outside the cell).
    thickness_voxels_um : ndarray
        Lithium thickness in um from counting labelled voxels.
    capacity_mah_cm2 : ndarray
        Areal capacity in mAh cm^-2.
    bottom_um, top_um : ndarray
        Absolute positions of the lower and upper Li interfaces along the stacking axis, um.
    topology_bottom_um, topology_top_um : ndarray
        Interface topology Z(x, y) in um relative to each interface's fitted plane.
    mask : ndarray of bool
        Cell footprint.
    pixel_size_um : float
        Lateral map sampling and voxel edge in um.
    metrics : dict
        Scalars: mean/median/min/max thickness, mean capacity, coverage, tilts, roughness of
        both interfaces, and the coulometric comparison when a capacity was given.
    """

    thickness_um: np.ndarray
    thickness_voxels_um: np.ndarray
    capacity_mah_cm2: np.ndarray
    bottom_um: np.ndarray
    top_um: np.ndarray
    topology_bottom_um: np.ndarray
    topology_top_um: np.ndarray
    mask: np.ndarray
    pixel_size_um: float
    metrics: dict = field(default_factory=dict)


def _stats(a):
    v = a[np.isfinite(a)]
    if v.size == 0:
        return {"mean": None, "median": None, "min": None, "max": None, "std": None}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()),
            "max": float(v.max()), "std": float(v.std())}


def layer_maps(labels, *, voxel_size_um: float, li_label: int = 2, axis: int = 0, interfaces_px=None,
               mask=None, coulometric_mah_cm2: float | None = None, level: str | None = "plane") -> LayerMaps:
    """Thickness, capacity and topology maps of the lithium layer, with roughness metrics.

    Parameters
    ----------
    labels : ndarray or dask.array.Array, integer
        Phase labels from :func:`segment.segment_layers` (0 = unassigned). With
        ``interfaces_px``, Dask (e.g. zarr-backed) labels are only reduced chunk by chunk.
    voxel_size_um : float
        Voxel edge in um (the volume's ``voxel_size_um``).
    li_label : int
        Label of the lithium phase (its 1-based position in the phase order).
    axis : int
        Stacking axis.
    interfaces_px : ndarray, (n_phases - 1, y, x), optional
        Sub-voxel interface positions in voxels along ``axis`` (``info["interfaces_px"]`` of
        ``segment_layers``); without it the interfaces are the labelled voxel boundaries.
    mask : ndarray of bool, (y, x), optional
        Cell footprint; default: columns with any labelled voxel.
    coulometric_mah_cm2 : float, optional
        Charge passed per area (mAh cm^-2); the metrics then compare the map's mean with it.
    level : {"plane", "poly2", None}
        Reference surface for the roughness of each interface.

    Returns
    -------
    LayerMaps

    Raises
    ------
    InputError
        For a missing or non-positive voxel size, or when no lithium is found.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.ones((12, 8, 8), np.uint8); lab[2:6] = 2; lab[6:] = 3
    >>> m = layer_maps(lab, voxel_size_um=1.7)
    >>> round(m.metrics["thickness_um"]["mean"], 2), round(m.metrics["capacity_mah_cm2_mean"], 3)
    (6.8, 1.399)
    """
    if voxel_size_um is None or not np.isfinite(voxel_size_um) or voxel_size_um <= 0:
        raise InputError(f"voxel_size_um must be a positive number in um, got {voxel_size_um!r}")
    lazy = hasattr(labels, "dask")  # Dask (e.g. zarr-backed) labels: 2-D reductions chunk by chunk
    if lazy:
        import dask.array as da

        if labels.ndim != 3:
            raise InputError(f"labels must be 3-D, got shape {labels.shape}")
        lab = da.moveaxis(labels, axis, 0)
    else:
        lab = np.moveaxis(np.asarray(to_device(labels, "cpu")), axis, 0)
    if lab.ndim != 3:
        raise InputError(f"labels must be 3-D, got shape {lab.shape}")
    if mask is None:
        fp = (lab > 0).any(axis=0)
        fp = np.asarray(fp.compute() if lazy else fp)
    else:
        fp = np.asarray(mask, bool)
    if fp.shape != lab.shape[1:]:
        raise InputError(f"mask shape {fp.shape} does not match the label columns {lab.shape[1:]}")
    t_vox = thickness_map(lab, li_label, axis=0, voxel_size_um=voxel_size_um)
    t_vox[~fp] = np.nan
    if not np.any((np.nan_to_num(t_vox) > 0)[fp]):
        raise InputError(f"no lithium found: label {li_label} does not occur inside the cell")
    if interfaces_px is None and lazy:
        lab = lab.compute()  # voxel boundaries need the labels themselves
    if interfaces_px is not None:
        ip = np.asarray(interfaces_px, dtype=np.float64)
        k = li_label - 1
        nz = lab.shape[0]
        bottom = ip[k - 1] if k >= 1 else np.zeros(lab.shape[1:])
        top = ip[k] if k < ip.shape[0] else np.full(lab.shape[1:], float(nz))
    else:
        li = lab == li_label
        below = lab < li_label
        # bottom: top of the phases below; top: start of the phases above (per column)
        z = np.arange(lab.shape[0])[:, None, None]
        bottom = np.where(below & (lab > 0), z + 1, 0).max(axis=0).astype(np.float64)
        above = (lab > li_label)
        top = np.where(above.any(axis=0), np.argmax(above, axis=0), lab.shape[0]).astype(np.float64)
        top = np.where(li.any(axis=0), np.maximum(top, bottom), bottom)
    bottom_um = np.where(fp, bottom * voxel_size_um, np.nan)
    top_um = np.where(fp, top * voxel_size_um, np.nan)
    thick = np.clip(top_um - bottom_um, 0, None)
    cap = capacity_map(thick)
    topo = {}
    metrics: dict = {"voxel_size_um": float(voxel_size_um), "n_columns": int(fp.sum())}
    for name, h in (("bottom", bottom_um), ("top", top_um)):
        plane = fit_plane(h, pixel_size_um=voxel_size_um, mask=fp)
        topo[name] = np.where(fp, h - plane["plane"], np.nan)
        r = roughness(h, voxel_size_um, level=level, mask=fp)
        metrics[f"interface_{name}"] = {"tilt_rad": plane["tilt_rad"], "mean_height_um": float(np.nanmean(h)),
                                        "roughness": r.scalars()}
    metrics["thickness_um"] = _stats(thick)
    metrics["thickness_voxels_um"] = _stats(t_vox)
    metrics["capacity_mah_cm2_mean"] = float(np.nanmean(cap))
    metrics["li_coverage_fraction"] = float(np.mean(thick[fp] > 0))
    if coulometric_mah_cm2 is not None:
        q = float(coulometric_mah_cm2)
        if not np.isfinite(q) or q <= 0:
            raise InputError(
                f"coulometric capacity must be a positive number in mAh cm^-2, got {coulometric_mah_cm2!r}")
        metrics["coulometric_mah_cm2"] = q
        metrics["capacity_ratio_to_coulometric"] = metrics["capacity_mah_cm2_mean"] / q
    return LayerMaps(thickness_um=thick.astype(np.float32), thickness_voxels_um=t_vox,
                     capacity_mah_cm2=cap.astype(np.float32), bottom_um=bottom_um.astype(np.float32),
                     top_um=top_um.astype(np.float32), topology_bottom_um=topo["bottom"].astype(np.float32),
                     topology_top_um=topo["top"].astype(np.float32), mask=fp, pixel_size_um=float(voxel_size_um),
                     metrics=metrics)


MAP_ARRAYS = ("thickness_um", "thickness_voxels_um", "capacity_mah_cm2", "bottom_um", "top_um",
              "topology_bottom_um", "topology_top_um")


def write_maps(store, maps: LayerMaps, *, overwrite: bool = True, provenance: dict | None = None):
    """Write the maps to a zarr group (a path or a group); returns the group.

    Arrays: ``thickness_um`` (NaN outside the cell), ``thickness_voxels_um``,
    ``capacity_mah_cm2``, ``bottom_um``, ``top_um``, ``topology_bottom_um``,
    ``topology_top_um`` (float32, y x) and ``mask`` (bool); attributes ``pixel_size_um``
    (group and each array), ``metrics`` and ``provenance``.
    """
    import zarr

    grp = zarr.open_group(str(store), mode="a") if isinstance(store, (str, Path)) else store
    for name in MAP_ARRAYS:
        arr = np.asarray(getattr(maps, name), np.float32)
        a = grp.create_array(name, shape=arr.shape, dtype="float32", overwrite=overwrite, fill_value=np.nan)
        a[...] = arr
        a.attrs.update({"pixel_size_um": maps.pixel_size_um, "units": "mAh/cm^2" if "capacity" in name else "um"})
    m = grp.create_array("mask", shape=maps.mask.shape, dtype="bool", overwrite=overwrite)
    m[...] = maps.mask
    grp.attrs.update({"pixel_size_um": maps.pixel_size_um, "metrics": _jsonable(maps.metrics),
                      "provenance": provenance or {}})
    return grp


def read_maps(store) -> LayerMaps:
    """Read maps written by :func:`write_maps` (a zarr group path)."""
    import zarr

    path = Path(store)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        grp = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path}: not a zarr group of maps ({type(exc).__name__})") from exc
    if "thickness_um" not in grp:
        raise InputError(f"{path}: no 'thickness_um' array in the maps group")
    px = grp.attrs.get("pixel_size_um", grp["thickness_um"].attrs.get("pixel_size_um"))
    if px is None:
        raise InputError(f"{path}: no attribute 'pixel_size_um' on the group or on 'thickness_um'")
    arrays = {n: (grp[n][...] if n in grp else np.full(grp["thickness_um"].shape, np.nan, np.float32))
              for n in MAP_ARRAYS}
    mask = grp["mask"][...] if "mask" in grp else np.isfinite(arrays["thickness_um"])
    return LayerMaps(**arrays, mask=mask, pixel_size_um=float(px), metrics=dict(grp.attrs.get("metrics", {})))


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def read_volume(path, *, level: str = "0"):
    """Open an OME-Zarr volume lazily: returns (dask array (z, y, x), voxel size in um, attrs).

    A float16 volume is promoted to float32 as it is read (the filters and classifiers
    compute in float32).

    The voxel size comes from the attribute ``voxel_size_um`` or the NGFF multiscales
    ``coordinateTransformations`` scale of the level.

    Raises
    ------
    InputError
        When the store has no level ``level`` or no voxel size.
    """
    import dask.array as da
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        grp = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path}: not a zarr group ({type(exc).__name__})") from exc
    if level not in grp:
        raise InputError(f"{path}: no array '{level}' (expected an OME-Zarr multiscale volume)")
    arr = grp[level]
    if arr.ndim != 3:
        raise InputError(f"{path}/{level}: expected a 3-D (z, y, x) volume, got shape {arr.shape}")
    attrs = dict(grp.attrs)
    vs = attrs.get("voxel_size_um", arr.attrs.get("voxel_size_um"))
    if vs is None:
        ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        try:
            for ds in ms[0]["datasets"]:
                if str(ds["path"]) == level:
                    for ct in ds.get("coordinateTransformations", []):
                        if ct.get("type") == "scale":
                            vs = ct["scale"][-1]
        except (TypeError, KeyError, IndexError):
            vs = None
    if isinstance(vs, (list, tuple)):
        vs = vs[-1]
    if vs is None or not np.isfinite(float(vs)) or float(vs) <= 0:
        raise InputError(f"{path}: no voxel size (attribute 'voxel_size_um' or multiscales scale) in um")
    volume = da.from_zarr(arr)
    if volume.dtype == np.float16:
        volume = volume.astype(np.float32)
    return volume, float(vs), attrs


def save_figures(maps: LayerMaps, out_dir, *, prefix: str = "") -> list[Path]:
    """PNG figures: thickness map (um colour bar), capacity map (mAh cm^-2), both topology maps, histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ny, nx = maps.thickness_um.shape
    ext = [0, nx * maps.pixel_size_um, ny * maps.pixel_size_um, 0]
    paths = []

    mt = maps.metrics.get("thickness_um", {}).get("mean")
    cap = np.nanmean(maps.capacity_mah_cm2) if np.isfinite(maps.capacity_mah_cm2).any() else None
    for data, cmap, label, title, name in (
        (maps.thickness_um, "viridis", "Li thickness (µm)",
         "Lithium thickness" + (f" (mean {mt:.1f} µm)" if mt is not None else ""), "thickness_map.png"),
        (maps.capacity_mah_cm2, "magma", "areal capacity (mAh cm$^{-2}$)",
         "Li areal capacity" + (f" (mean {cap:.2f} mAh cm$^{{-2}}$)" if cap is not None else ""), "capacity_map.png"),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        im = ax.imshow(data, extent=ext, cmap=cmap)
        fig.colorbar(im, ax=ax, label=label)
        ax.set_title(title)
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
        p = out / f"{prefix}{name}"
        fig.savefig(p, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax, name, title in ((axes[0], "topology_bottom_um", "collector | Li interface"),
                            (axes[1], "topology_top_um", "Li | electrolyte interface")):
        z = getattr(maps, name)
        lim = np.nanmax(np.abs(z)) if np.isfinite(z).any() else 1.0
        im = ax.imshow(z, extent=ext, cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(im, ax=ax, label="height Z (µm, vs fitted plane)")
        key = "interface_bottom" if "bottom" in name else "interface_top"
        ra = maps.metrics.get(key, {}).get("roughness", {}).get("Ra")
        ax.set_title(title + (f"\nRa {ra:.2f} µm" if ra is not None else ""))
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
    p = out / f"{prefix}topology_maps.png"
    fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    v = maps.thickness_um[np.isfinite(maps.thickness_um)]
    ax.hist(v, bins=50, color="tab:blue")
    ax.set_xlabel("Li thickness (µm)")
    ax.set_ylabel("columns")
    ax.set_title("Thickness histogram")
    p = out / f"{prefix}thickness_histogram.png"
    fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)
    return paths
