"""``anodescope recon``: reconstruct a scan file into a multiscale OME-Zarr volume.

Example::

    anodescope recon scan.h5 -o scan.zarr --center auto --rings sorting --memory-limit 4GB

Writes ``scan.zarr`` plus ``scan_slice.png`` (middle slice) and ``scan_center.png`` (centre
quick-look, with ``--center auto``). Interrupted runs resume when the same command is run
again; an existing output made with other parameters is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse

from ._argtypes import positive_float


def _center(value: str):
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--center must be 'auto' or a number of detector columns, got {value!r}"
        ) from None


def _rows(value: str) -> tuple[int | None, int | None]:
    parts = value.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return tuple(int(p) if p.strip() else None for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rows must be START:STOP (detector rows, e.g. 100:200), got {value!r}"
        ) from None


def register(subparsers) -> None:
    """Add the ``recon`` verb to the ``anodescope`` parser."""
    p = subparsers.add_parser(
        "recon",
        help="reconstruct a tomography scan into an OME-Zarr volume (chunked, resumable)",
        description=(
            "Reconstruct a DXchange/NXtomo/TIFF scan slab by slab into a multiscale OME-Zarr "
            "volume (NGFF 0.4, axes z y x in micrometres) with quick-look PNGs next to it. "
            "Rerun the same command to resume an interrupted run."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="scan file (.h5/.nxs) or TIFF folder")
    p.add_argument("-o", "--output", required=True, metavar="OUT.zarr", help="output Zarr directory")
    p.add_argument("--center", type=_center, default="auto",
                   help="rotation axis in detector columns (pixels), or 'auto' (default)")
    p.add_argument("--algorithm", choices=("fourier", "fbp"), default="fourier",
                   help="reconstruction algorithm (default fourier)")
    p.add_argument("--filter", dest="filter_name",
                   choices=("ramp", "shepp", "cosine", "hann", "parzen"), default="ramp",
                   help="reconstruction filter (default ramp)")
    p.add_argument("--rings", choices=("none", "sorting", "all", "fw"), default="none",
                   help="ring (stripe) removal on the sinograms (default none)")
    p.add_argument("--ring-size", type=int, metavar="PX",
                   help="median width in pixels of the sorting filter (--rings sorting or all; "
                        "default 21, suited to ~2k-pixel detectors: use fewer for narrow scans)")
    p.add_argument("--zingers", action="store_true", help="remove zingers (3x3 median test)")
    p.add_argument("--phase-distance-mm", type=positive_float, metavar="D",
                   help="Paganin phase retrieval: propagation distance (mm)")
    p.add_argument("--delta-beta", type=positive_float, metavar="R",
                   help="Paganin phase retrieval: delta/beta ratio")
    p.add_argument("--energy-kev", type=positive_float, metavar="E",
                   help="photon energy (keV); default from the file")
    p.add_argument("--pixel-size-um", type=positive_float, metavar="P",
                   help="detector pixel size (um); default from the file")
    p.add_argument("--flat-method", choices=("mean", "median"), default="mean",
                   help="how flats and darks are combined (default mean)")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where to compute (default auto: GPU when usable)")
    p.add_argument("--memory-limit", default="2GB", metavar="SIZE",
                   help="host memory for the slabs in flight, e.g. 512MB, 4GiB (default 2GB)")
    p.add_argument("--rows", type=_rows, metavar="START:STOP",
                   help="reconstruct only these detector rows")
    p.add_argument("--pyramid-levels", type=int, metavar="N",
                   help="resolution levels including full resolution (default: automatic)")
    p.add_argument("--compression", choices=("lz4", "zstd", "none"), default="lz4",
                   help="Blosc codec of the stored volume (default lz4: fast; zstd: ~3%% smaller)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="value type of the stored volume (default float32; float16 writes half "
                        "the bytes at 11 significant bits)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _ring_options(args) -> dict | None:
    from recon import InputError

    if args.ring_size is None:
        return None
    if args.rings not in ("sorting", "all"):
        raise InputError("--ring-size applies to --rings sorting or all")
    if args.ring_size < 3:
        raise InputError(f"--ring-size must be at least 3 pixels, got {args.ring_size}")
    return {"size": args.ring_size} if args.rings == "sorting" else {"sm_size": args.ring_size}


def run(args) -> int:
    """Run ``anodescope recon``; returns the exit code."""
    import time
    from pathlib import Path

    import recon
    from recon.chunked import open_volume, reconstruct_to_zarr

    if (args.phase_distance_mm is None) != (args.delta_beta is None):
        raise recon.InputError(
            "Paganin phase retrieval needs both --phase-distance-mm and --delta-beta"
        )
    phase = None
    if args.phase_distance_mm is not None:
        phase = {"distance_mm": args.phase_distance_mm, "delta_beta": args.delta_beta}
    out = Path(args.output)
    attrs_file = out / ".zattrs"
    before = attrs_file.stat().st_mtime_ns if attrs_file.exists() else None
    t0 = time.perf_counter()
    reconstruct_to_zarr(
        args.input,
        out,
        center=args.center,
        algorithm=args.algorithm,
        filter_name=args.filter_name,
        rings=None if args.rings == "none" else args.rings,
        ring_options=_ring_options(args),
        zingers=args.zingers,
        phase=phase,
        flat_method=args.flat_method,
        device=args.device,
        memory_limit=args.memory_limit,
        rows=args.rows,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        pyramid_levels=args.pyramid_levels,
        compression=args.compression,
        dtype=args.dtype,
        pixel_size_um=args.pixel_size_um,
        energy_kev=args.energy_kev,
    )
    seconds = time.perf_counter() - t0
    volume, attrs = open_volume(out)
    run_info = attrs.get("anodescope_run", {})
    if before is not None and attrs_file.stat().st_mtime_ns == before:
        print(f"{out}: already complete with these parameters; nothing done (--overwrite to redo)")
    voxel = attrs.get("voxel_size_um")
    voxel_text = f"voxel {voxel:g} um" if voxel else "voxel size unknown (scale 1 = one pixel)"
    print(f"volume: {out}  shape {tuple(volume.shape)} (z, y, x), {voxel_text}")
    for key, label in (("slice_png", "slice quick-look"), ("center_png", "centre quick-look")):
        png = attrs.get("quicklook", {}).get(key)
        if png:
            print(f"{label}: {png}")
    info = attrs.get("center_info", {})
    print(f"centre: {attrs.get('center'):.3f} px ({info.get('center_method', 'given')})")
    plan = run_info.get("plan", {})
    if plan:
        print(f"slabs: {plan.get('rows_per_chunk')} rows each, {plan.get('chunks_in_flight')} in flight")
    print(f"time: {seconds:.1f} s")
    return 0
