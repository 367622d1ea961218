"""``anodescope segment`` and ``anodescope maps``: lithium layer -> labels, maps, metrics, figures.

``segment VOLUME.zarr`` denoises the reconstructed OME-Zarr volume (chunked, into a
temporary zarr store), labels the layers in the given phase order in lateral tiles of the
full stacking extent (``--tile`` voxels, or sized from ``--memory-gb``; memory is bounded by
the tile, not the volume), writes the labels tile by tile under ``VOLUME.zarr/labels/layers/0`` and
the maps under ``VOLUME.zarr/maps`` (``thickness_um``, ``capacity_mah_cm2``,
``topology_bottom_um``, ``topology_top_um``, ``mask``, ...), plus ``metrics.json`` and PNG
figures in the output folder. ``maps SEGMENTED.zarr`` recomputes maps, metrics and figures
from stored labels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS_NAME = "layers"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="label the layers of a reconstructed cell and write Li thickness/capacity/topology maps",
        description="Denoise an OME-Zarr volume, label its layers in the given order along the stacking "
        "axis, and write labels (VOLUME.zarr/labels/layers), maps (VOLUME.zarr/maps), metrics.json and figures.",
    )
    p.add_argument("volume", help="reconstructed OME-Zarr volume (level '0', voxel size in um)")
    _common(p)
    p.add_argument("--method", default="multiotsu", choices=("multiotsu", "kmeans"),
                   help="automatic threshold method (default: multiotsu)")
    p.add_argument("--classifier", default=None, help="trained pixel classifier (.pkl) instead of thresholds")
    p.add_argument("--li-class", type=int, default=None,
                   help="rank of the lithium level (0 = darkest), overriding the darkest-phase rule")
    p.add_argument("--median", type=int, default=3, help="median window edge in voxels (default 3; 1 = off)")
    p.add_argument("--opening", type=int, default=0, help="grey opening ball radius in voxels (default 0)")
    p.add_argument("--closing", type=int, default=0, help="grey closing ball radius in voxels (default 0)")
    p.add_argument("--nlm", action="store_true", help="non-local means after the other filters")
    p.add_argument("--smooth", type=float, default=1.0,
                   help="lateral Gaussian sigma in voxels for the automatic fit (default 1)")
    p.add_argument("--chunks", default="64,256,256", help="chunk shape z,y,x for the filters (default 64,256,256); "
                   "the lateral layering tiles default to its y,x size")
    p.add_argument("--tile", type=int, default=None,
                   help="lateral tile edge in voxels for the layer labelling (full extent along the stacking axis)")
    p.add_argument("--memory-gb", type=float, default=None,
                   help="memory budget in GB for one labelling tile; sets --tile from the stacking-axis length")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="where filters run")
    p.set_defaults(func=run_segment)

    q = subparsers.add_parser(
        "maps",
        help="recompute Li thickness/capacity/topology maps, metrics and figures from stored labels",
        description="Read VOLUME.zarr/labels/layers written by 'anodescope segment' and write the maps, "
        "metrics.json and figures again (e.g. with another capacity or levelling).",
    )
    q.add_argument("segmented", help="OME-Zarr volume holding labels/layers (from 'anodescope segment')")
    _common(q, phases=False)
    q.set_defaults(func=run_maps)


def _common(p, phases: bool = True) -> None:
    if phases:
        p.add_argument("--phases", default="collector,li,electrolyte",
                       help="phase order along the stacking axis, comma-separated (default collector,li,electrolyte)")
        p.add_argument("--axis", default="0", help="stacking axis 0, 1, 2 or 'auto' (default 0)")
    p.add_argument("--capacity", type=float, default=None, help="coulometric capacity in mAh/cm^2 to compare with")
    p.add_argument("--level", default="plane", choices=("plane", "poly2", "none"),
                   help="reference surface removed before roughness (default plane)")
    p.add_argument("--out", default=None, help="folder for metrics.json and PNG figures "
                   "(default: next to the volume, <name>_maps)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _out_dir(volume: Path, out) -> Path:
    if out:
        return Path(out)
    name = volume.name[:-5] if volume.name.endswith(".zarr") else volume.name
    return volume.parent / f"{name}_maps"


def _say(args, msg):
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _parse_chunks(text: str):
    from segment import InputError

    try:
        c = tuple(int(v) for v in text.split(","))
    except ValueError:
        c = ()
    if len(c) != 3 or min(c) < 1:
        raise InputError(f"--chunks must be three positive integers z,y,x, got {text!r}")
    return c


def _labels_array(store: Path, shape, axis: int, tile: int):
    """Create ``labels/layers/0`` (uint8, chunks = full stacking extent x tile x tile) and register it."""
    from ._ngff import require_label_group

    g = require_label_group(store, LABELS_NAME)
    chunks = [min(tile, s) for s in shape]
    chunks[axis] = shape[axis]
    return g, g.create_array("0", shape=tuple(shape), dtype="uint8", chunks=tuple(chunks), overwrite=True)


def _write_label_attrs(g, voxel_size_um: float, phases, info: dict) -> None:
    import numpy as np

    ip = np.asarray(info["interfaces_px"], np.float32)
    a2 = g.create_array("interfaces_px", shape=ip.shape, dtype="float32", overwrite=True)
    a2[...] = ip
    fp = np.asarray(info["footprint"], bool)
    a3 = g.create_array("footprint", shape=fp.shape, dtype="bool", overwrite=True)
    a3[...] = fp
    palette = [[200, 120, 40, 255], [60, 160, 255, 255], [120, 200, 90, 255], [200, 80, 200, 255]]
    colors = [{"label-value": k + 1, "rgba": c} for k, c in enumerate(palette[:len(phases)])]
    g.attrs.update({
        "multiscales": [{"version": "0.4", "name": LABELS_NAME,
                         "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
                         "datasets": [{"path": "0", "coordinateTransformations": [
                             {"type": "scale", "scale": [voxel_size_um] * 3}]}]}],
        "image-label": {"version": "0.4", "colors": colors, "source": {"image": "../../"}},
        "phases": list(phases), "axis": int(info["axis"]), "voxel_size_um": voxel_size_um,
        "segmentation": {k: v for k, v in info.items() if k in ("method", "thresholds", "levels",
                                                             "interface_smooth_px", "li_column_fraction",
                                                             "n_tiles")},
    })


def tile_from_memory(memory_gb: float, nz: int, *, halo_px: int = 24, bytes_per_voxel: int = 48) -> int:
    """Lateral tile edge (voxels) whose working set fits ``memory_gb`` GB.

    A tile of nz x (t + 2 halo)^2 voxels costs about ``bytes_per_voxel`` bytes per voxel
    (raw float32 read, zarr chunk buffers, two or three smoothed copies, labels, components).
    """
    from segment import InputError

    if not memory_gb > 0:
        raise InputError(f"--memory-gb must be a positive number of GB, got {memory_gb!r}")
    edge = int((memory_gb * 1e9 / (bytes_per_voxel * max(int(nz), 1))) ** 0.5) - 2 * halo_px
    if edge < 8:
        raise InputError(f"--memory-gb {memory_gb} is too small for a stacking axis of {nz} voxels "
                         f"(a tile of 8 x 8 columns needs {bytes_per_voxel * nz * (8 + 2 * halo_px) ** 2 / 1e9:.3g} GB)")
    return edge


def _finish(args, store: Path, labels, voxel_size_um, phases, axis, info_interfaces, footprint) -> int:
    import segment

    li = next((i + 1 for i, p in enumerate(phases) if p in ("li", "lithium")), None)
    if li is None:
        raise segment.InputError(f"phases {','.join(phases)} name no lithium layer ('li')")
    maps = segment.layer_maps(labels, voxel_size_um=voxel_size_um, li_label=li, axis=axis,
                              interfaces_px=info_interfaces, mask=footprint, coulometric_mah_cm2=args.capacity,
                              level=None if args.level == "none" else args.level)
    import zarr

    provenance = {"command": " ".join(sys.argv[1:]) or "anodescope"}
    maps_store = getattr(args, "maps_store", None)
    if maps_store:  # a separate group (the study runner's segment/maps.zarr)
        segment.write_maps(zarr.open_group(str(maps_store), mode="a", zarr_format=2), maps, provenance=provenance)
    else:
        root = zarr.open_group(str(store), mode="a")  # same zarr format as the volume
        segment.write_maps(root.require_group("maps"), maps, provenance=provenance)
    out = _out_dir(store, args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = dict(maps.metrics)
    metrics.update(phases=list(phases), axis=int(axis), volume=str(store))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    figs = segment.save_figures(maps, out)
    t = maps.metrics["thickness_um"]
    _say(args, f"Li thickness mean {t['mean']:.2f} um (min {t['min']:.2f}, max {t['max']:.2f}); "
               f"capacity {maps.metrics['capacity_mah_cm2_mean']:.3f} mAh/cm^2")
    _say(args, f"wrote {maps_store or store / 'maps'}, {out / 'metrics.json'} and {len(figs)} figures in {out}")
    return 0


def run_segment(args) -> int:
    import shutil
    import tempfile

    import dask.array as da

    import segment

    store = Path(args.volume)
    vol, voxel_size_um, _ = segment.read_volume(store)
    chunks = _parse_chunks(args.chunks)
    vol = vol.rechunk(tuple(min(c, s) for c, s in zip(chunks, vol.shape)))
    phases = tuple(p.strip().lower() for p in args.phases.split(",") if p.strip())
    if args.axis == "auto":
        axis = None
    else:
        try:
            axis = int(args.axis)
        except ValueError:
            raise segment.InputError(f"--axis must be 0, 1, 2 or 'auto', got {args.axis!r}") from None
    if args.tile is not None and args.tile < 1:
        raise segment.InputError(f"--tile must be a positive number of voxels, got {args.tile}")
    _say(args, f"volume {tuple(vol.shape)} voxel {voxel_size_um} um; denoising (median {args.median}, "
               f"opening {args.opening}, closing {args.closing}{', NL-means' if args.nlm else ''})")
    den = segment.denoise(vol, median_size=args.median, opening_radius_px=args.opening,
                          closing_radius_px=args.closing, nlm=args.nlm, device=args.device)
    out = _out_dir(store, args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".denoised_", dir=out))
    try:
        da.to_zarr(den, str(tmp / "v.zarr"))  # chunk by chunk, read back tile by tile
        den = da.from_zarr(str(tmp / "v.zarr"))
        if axis is None:
            axis = segment.stacking_axis(den)
            _say(args, f"stacking axis: {axis}")
        nz = den.shape[axis]
        lateral = [c for a, c in enumerate(chunks) if a != axis]
        tile = args.tile or (tile_from_memory(args.memory_gb, nz) if args.memory_gb is not None else max(lateral))
        method = segment.load_classifier(args.classifier) if args.classifier else args.method
        _say(args, f"labelling phases {','.join(phases)} along axis {axis} "
                   f"({'classifier ' + str(args.classifier) if args.classifier else args.method}) "
                   f"in lateral tiles of {tile} x {tile} voxels")
        labels_store = getattr(args, "labels_store", None)  # default: inside the volume
        if labels_store:
            import zarr

            zarr.open_group(str(labels_store), mode="a", zarr_format=2)
        g, arr = _labels_array(Path(labels_store) if labels_store else store, den.shape, axis, tile)
        labels, info = segment.segment_layers(den, phases, axis=axis, method=method, li_class=args.li_class,
                                              smooth_px=args.smooth, device=args.device, tile_px=tile,
                                              chunks=chunks, out=arr, return_info=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _write_label_attrs(g, voxel_size_um, info["phases"], info)
    return _finish(args, store, da.from_zarr(arr), voxel_size_um, info["phases"], axis, info["interfaces_px"],
                   info["footprint"])


def run_maps(args) -> int:
    import zarr

    import segment

    store = Path(args.segmented)
    if not store.exists():
        raise FileNotFoundError(2, "No such file or directory", str(store))
    try:
        root = zarr.open_group(str(store), mode="r")
        g = root["labels"][LABELS_NAME]
        labels = g["0"]
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise segment.InputError(f"{store}: no labels/{LABELS_NAME}/0 (run 'anodescope segment' first)") from exc
    attrs = dict(g.attrs)
    vs = attrs.get("voxel_size_um")
    if vs is None:
        raise segment.InputError(f"{store}/labels/{LABELS_NAME}: no attribute 'voxel_size_um'")
    phases = tuple(attrs.get("phases", ("collector", "li", "electrolyte")))
    axis = int(attrs.get("axis", 0))
    interfaces = g["interfaces_px"][...] if "interfaces_px" in g else None
    footprint = g["footprint"][...] if "footprint" in g else None
    import dask.array as da

    return _finish(args, store, da.from_zarr(labels), float(vs), phases, axis, interfaces, footprint)
