"""``anodescope strip``: virtual stripping of a thickness map, islands and local current maps.

Writes into the output folder:

- ``stripping_curve.csv``: per-depth curves (depth, stripped and active fraction, current
  multiplier, island count, mean island area, stripped capacity[, time, local current]);
- ``stripping.json``: settings, input, and exact values at the chosen stripped fractions;
- ``stripping_curves.png`` and ``stripping_snapshots.png`` (remaining Li white, depleted
  black, stripped % above, active % below);
- with ``--electrolyte-thickness``: ``current.json`` (local current statistics per fraction
  and where the current first exceeds ``--critical-current-density``), ``current_maps.png``
  and ``current_maps.npz`` (relative local current maps, float32).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from pathlib import Path

from ._errors import InputError

OUTPUT_FILES = (
    "stripping_curve.csv",
    "stripping.json",
    "stripping_curves.png",
    "stripping_snapshots.png",
    "current.json",
    "current_maps.png",
    "current_maps.npz",
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "strip",
        help="virtual stripping of a lithium thickness map, islands and local current",
        description="Strip a lithium thickness map (MAPS.zarr, .npy or .tif) layer by layer: active "
        "area, current multiplier and islands against the stripped capacity, snapshot panels and, "
        "with --electrolyte-thickness, the local current distribution on the remaining lithium.",
    )
    p.add_argument("maps", help="MAPS.zarr group (thickness_um, pixel_size_um[, mask]), or a .npy/.tif map (um)")
    p.add_argument("-o", "--out", default=None, help="output folder (default: <input>_strip next to the input)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in the output folder")
    p.add_argument("--pixel-size-um", type=float, default=None, help="pixel size (um); required for .npy/.tif")
    p.add_argument("--fractions", default="0.64,0.85,0.95",
                   help="stripped fractions for snapshots and current maps, comma separated, each in (0, 1)")
    p.add_argument("--step-um", type=float, default=None, help="depth step (um); default: 500 steps")
    p.add_argument("--connectivity", type=int, choices=(4, 8), default=8, help="island connectivity (default 8)")
    p.add_argument("--current-density", type=float, default=None, metavar="MA_CM2",
                   help="applied current density (mA cm^-2): adds the time axis and absolute currents")
    p.add_argument("--electrolyte-thickness", type=float, default=None, metavar="UM",
                   help="electrolyte thickness to the counter electrode (um): solve the local current")
    p.add_argument("--conductivity", type=float, default=1e-3, metavar="S_CM",
                   help="electrolyte ionic conductivity (S cm^-1, default 1e-3)")
    p.add_argument("--exchange-current-density", type=float, default=None, metavar="MA_CM2",
                   help="exchange current density (mA cm^-2): secondary distribution (linearised Butler-Volmer)")
    p.add_argument("--critical-current-density", type=float, default=None, metavar="MA_CM2",
                   help="critical local current density (mA cm^-2): report where it is first exceeded "
                   "(needs --current-density)")
    p.add_argument("--lateral-boundary", choices=("periodic", "mirror"), default="periodic",
                   help="lateral boundary of the current solve: periodic map (default) or mirror (no flux "
                   "through the map edges, for a crop of a larger electrode)")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="where to solve the current")
    p.set_defaults(func=run)


def parse_fractions(text: str) -> list[float]:
    """Parse ``"0.64,0.85"`` into stripped fractions, each strictly between 0 and 1."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            f = float(part)
        except ValueError:
            raise InputError(f"--fractions: {part!r} is not a number") from None
        if not (0.0 < f < 1.0):
            raise InputError(f"--fractions: {part} is outside (0, 1)")
        out.append(f)
    if not out:
        raise InputError("--fractions: give at least one stripped fraction in (0, 1)")
    return out


def _positive(name, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be > 0, got {value!r}")


def _out_dir(args) -> Path:
    src = Path(args.maps)
    out = Path(args.out) if args.out else src.with_name(src.stem + "_strip")
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not args.overwrite:
        raise InputError(f"{out}: results already there ({', '.join(existing)}); pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    if args.overwrite:
        for name in existing:
            (out / name).unlink()
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _provenance(args, thickness, mask) -> dict:
    """Inputs (path and SHA-256 of the map as float64), parameters, versions and time."""
    import hashlib
    import platform

    import numpy as np
    import scipy

    digest = hashlib.sha256(np.ascontiguousarray(thickness, dtype=np.float64).tobytes())
    if mask is not None:
        digest.update(np.ascontiguousarray(mask, dtype=bool).tobytes())
    params = {k: v for k, v in vars(args).items() if k not in ("func", "debug", "verb")}
    from . import __version__

    return {
        "inputs": [{"path": str(Path(args.maps).resolve()), "sha256": digest.hexdigest()}],
        "parameters": params,
        "versions": {"anodescope": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "python": platform.python_version()},
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run(args) -> int:
    import numpy as np

    import segment
    from segment import _plots

    from ._maps_io import read_thickness_map

    fractions = parse_fractions(args.fractions)
    for name in ("--current-density", "--electrolyte-thickness", "--conductivity",
                 "--exchange-current-density", "--critical-current-density", "--step-um", "--pixel-size-um"):
        _positive(name, getattr(args, name.lstrip("-").replace("-", "_")))
    if args.critical_current_density is not None and args.current_density is None:
        raise InputError("--critical-current-density needs --current-density (the applied one)")
    thickness, px, mask = read_thickness_map(args.maps, pixel_size_um=args.pixel_size_um)
    out = _out_dir(args)

    result = segment.virtual_stripping(
        thickness, px, step_um=args.step_um, mask=mask, connectivity=args.connectivity,
        current_density_ma_cm2=args.current_density, largest_island=True,
    )
    cols = result.curves()
    with open(out / "stripping_curve.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for row in zip(*cols.values()):
            w.writerow([f"{v:.10g}" for v in row])
    rows = result.summary(fractions)
    provenance = _provenance(args, thickness, mask)
    info = {
        "input": str(Path(args.maps).resolve()),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "anodescope_version": segment.__version__,
        "pixel_size_um": px,
        "shape": list(thickness.shape),
        "connectivity": result.connectivity,
        "n_valid_pixels": result.n_valid,
        "mean_thickness_um": result.mean_thickness_um,
        "capacity_mah_cm2": result.capacity_mah_cm2,
        "current_density_ma_cm2": result.current_density_ma_cm2,
        "depth_step_um": float(result.depth_um[1] - result.depth_um[0]) if result.depth_um.size > 1 else 0.0,
        "fractions": rows,
        "provenance": provenance,
    }
    (out / "stripping.json").write_text(json.dumps(_jsonable(info), indent=2))
    _plots.plot_curves(result, out / "stripping_curves.png", fractions=fractions)
    _plots.plot_snapshots(result, fractions, out / "stripping_snapshots.png")
    for row in rows:
        print(
            f"{100 * row['stripped_fraction']:.0f}% stripped: {100 * row['active_fraction']:.1f}% active, "
            f"current x{row['current_multiplier']:.2f}, {row['n_islands']} islands"
        )

    if args.electrolyte_thickness is not None:
        kinetics = None
        if args.exchange_current_density is not None:
            kinetics = {"exchange_current_density_ma_cm2": args.exchange_current_density}
        combo = segment.stripping_with_current(
            thickness, px, args.electrolyte_thickness, fractions=fractions, kinetics=kinetics,
            conductivity_s_cm=args.conductivity, mask=mask, connectivity=args.connectivity,
            step_um=args.step_um, current_density_ma_cm2=args.current_density,
            critical_current_density_ma_cm2=args.critical_current_density,
            lateral_boundary=args.lateral_boundary, device=args.device,
        )
        summary = combo.summary()
        summary["electrolyte_thickness_um"] = args.electrolyte_thickness
        summary["kinetics"] = kinetics
        summary["conductivity_s_cm"] = args.conductivity
        summary["lateral_boundary"] = args.lateral_boundary
        summary["provenance"] = provenance
        (out / "current.json").write_text(json.dumps(_jsonable(summary), indent=2))
        maps = {}
        for f, c in zip(combo.fractions, combo.currents):
            rel = c.current_rel.get() if hasattr(c.current_rel, "get") else c.current_rel
            maps[f"stripped_{round(100 * f)}pct"] = np.asarray(rel, dtype=np.float32)
        np.savez_compressed(out / "current_maps.npz", **maps)
        _plots.plot_current_maps(combo.currents, combo.fractions, out / "current_maps.png")
        for f, c in zip(combo.fractions, combo.currents):
            print(f"{100 * f:.0f}% stripped: local current up to {c.max_rel:.2f}x applied "
                  f"(area ratio {1 / c.active_fraction:.2f}x, p99 {c.percentiles[99]:.2f}x)")
        if combo.first_exceed is not None:
            fe = combo.first_exceed
            print(f"critical current first exceeded at {100 * fe['stripped_fraction']:.1f}% stripped, "
                  f"at y, x = {fe['yx_um'][0]:.0f}, {fe['yx_um'][1]:.0f} um")
        elif combo.threshold_rel is not None:
            print("critical current not exceeded up to 98% stripped")
    print(f"results in {out}")
    return 0
