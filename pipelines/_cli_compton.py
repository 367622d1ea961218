"""``anodescope compton``: a calibrated spectra cube to EMF and uncertainty maps.

Example::

    anodescope compton cube.zarr -o emf.zarr --geometry geometry.yaml \\
        --regions regions.npy --fractions fractions.csv \\
        --background linear --sideband 70 86 --sideband 108 113

Writes ``emf.zarr`` (arrays ``emf``, ``sigma_emf``, ``e_low``, ``e_high``, ``theta_rad`` and,
with ``--calibration``, ``li_x`` and ``sigma_li_x``; attributes with the windows, E0, the
geometry and provenance), ``emf_maps.png`` (EMF and uncertainty maps with colour bars) and
``emf_profiles.png`` (profiles with the valence and core windows shaded). With ``--regions``
(an integer map [rows, cols] as ``.npy`` or ``.tif``; negative = unused) it also writes
``emf_regions.csv`` (region EMF from the per-pixel window sums, exact for per-pixel angles);
with ``--fractions`` (CSV: a header ``region,<component>...`` and one row per region with the
volume fraction of each component from tomography) it unmixes the region spectra and writes
``emf_components.csv`` (EMF from unmixing the per-pixel window sums, exact for per-pixel
angles; the plotted component profiles come from angle-aligned region spectra). ``--calibration`` reads a CSV ``x,emf[,sigma]`` of reference samples
and converts the EMF map to Li content.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import time
from pathlib import Path

from ._argtypes import positive_float


def register(subparsers) -> None:
    """Add the ``compton`` verb to the ``anodescope`` parser."""
    p = subparsers.add_parser(
        "compton",
        help="Compton profiles and EMF maps (with uncertainties) from a spectra cube",
        description=(
            "Per-pixel Compton profiles J(p_z) and electron-momentum-factor maps "
            "EMF = int_{|pz|<=low} J / int_{low<|pz|<=high} J with Poisson uncertainties; "
            "optional regions, tomography-fraction unmixing and EMF -> Li calibration."
        ),
    )
    p.add_argument("input", help="calibrated cube: DIR.zarr or FILE.h5 (anodescope hexitec)")
    p.add_argument("-o", "--output", required=True, help="output EMF maps: DIR.zarr")
    p.add_argument("--geometry", default=None, help="geometry YAML (per-pixel scattering angles)")
    p.add_argument("--e0", type=positive_float, default=None, help="incident energy, keV (default 115 or the geometry's)")
    p.add_argument("--theta-deg", type=positive_float, default=None,
                   help="one scattering angle for all pixels, degrees (default: geometry, else 90)")
    p.add_argument("--low", type=positive_float, default=1.0, help="valence window |p_z| <= LOW, a.u. (default 1)")
    p.add_argument("--high", type=positive_float, default=5.0, help="core window LOW < |p_z| <= HIGH, a.u. (default 5)")
    p.add_argument("--background", choices=("none", "constant", "linear", "quadratic"), default="none",
                   help="side-band background fit (with fluorescence lines in the side bands)")
    p.add_argument("--sideband", nargs=2, type=float, action="append", metavar=("LO_KEV", "HI_KEV"),
                   default=None, help="side band for the background fit, keV (repeatable)")
    p.add_argument("--fwhm", type=positive_float, default=0.8, help="detector resolution FWHM, keV (default 0.8)")
    p.add_argument("--regions", default=None, help="region label map [rows, cols] (.npy or .tif)")
    p.add_argument("--fractions", default=None, help="CSV of component volume fractions per region")
    p.add_argument("--calibration", default=None, help="CSV x,emf[,sigma] of reference samples")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--no-figures", action="store_true", help="do not write PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def _read_labels(path: str, shape):
    import numpy as np

    import compton

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    if p.suffix.lower() == ".npy":
        lab = np.load(p)
    elif p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        lab = tifffile.imread(p)
    else:
        raise compton.InputError(f"{p}: region map must be .npy or .tif, got {p.suffix!r}")
    if lab.shape != tuple(shape) or lab.dtype.kind not in "iu":
        raise compton.InputError(f"{p}: region map must be integers of shape {tuple(shape)}, got {lab.dtype} {lab.shape}")
    return lab.astype(np.int64)


def _read_csv(path: str, what: str) -> tuple[list[str], list[list[str]]]:
    import compton

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    with open(p, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    if len(rows) < 2:
        raise compton.InputError(f"{p}: {what} CSV needs a header and at least one row")
    return [h.strip() for h in rows[0]], rows[1:]


def _floats(row, path, line):
    import compton

    try:
        return [float(v) for v in row]
    except ValueError:
        raise compton.InputError(f"{path}: row {line} has a non-numeric value: {row}") from None


def _window_ratio(el, eh, vl, vh, cv):
    import numpy as np

    r = el / eh
    return r, np.sqrt(max(r * r * (vl / el**2 + vh / eh**2 - 2 * cv / (el * eh)), 0.0))


def run(args) -> int:
    import numpy as np

    import compton

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(17, "output exists (use --overwrite to replace it)", str(out))
    t0 = time.perf_counter()
    cube = compton.read_cube(args.input)
    shape = cube.counts.shape[:2]
    geo = compton.read_geometry(args.geometry, shape=shape) if args.geometry else None
    theta = np.deg2rad(args.theta_deg) if args.theta_deg else None
    if args.fractions and not args.regions:
        raise compton.InputError("--fractions needs --regions (the region map the fractions refer to)")
    if args.background != "none" and not args.sideband:
        raise compton.InputError(f"--background {args.background} needs at least one --sideband LO_KEV HI_KEV")
    kw = dict(low=args.low, high=args.high, fwhm_kev=args.fwhm, device=args.device,
              background=None if args.background == "none" else args.background,
              sidebands_kev=args.sideband)
    res = compton.emf_map(cube, geometry=geo, e0_kev=args.e0, theta_rad=theta, **kw)
    e0 = args.e0 or (geo.e0_kev if geo else 115.0)
    theta_map = np.broadcast_to(
        theta if theta is not None else (geo.scattering_angles() if geo else np.pi / 2), shape).astype(float)
    dt = time.perf_counter() - t0
    arrays = {"emf": res.emf, "sigma_emf": res.sigma, "e_low": res.e_low, "e_high": res.e_high,
              "theta_rad": theta_map}
    cal = None
    if args.calibration:
        head, rows = _read_csv(args.calibration, "calibration")
        vals = np.array([_floats(r, args.calibration, i + 2) for i, r in enumerate(rows)])
        if vals.ndim != 2 or vals.shape[1] not in (2, 3):
            raise compton.InputError(f"{args.calibration}: expected columns x,emf[,sigma], got header {head}")
        cal = compton.fit_emf_calibration(vals[:, 0], vals[:, 1],
                                          sigma_emf=vals[:, 2] if vals.shape[1] == 3 else None)
        arrays["li_x"], arrays["sigma_li_x"] = cal.concentration(res.emf, res.sigma)
    attrs = {
        "anodescope": {"kind": "emf_maps", "format_version": 1},
        "low_au": args.low, "high_au": args.high, "e0_kev": e0,
        "background": args.background, "sidebands_kev": args.sideband, "fwhm_kev": args.fwhm,
        "geometry": geo.to_dict() if geo else None,
        "calibration": None if cal is None else {"intercept": cal.intercept, "slope": cal.slope,
                                                 "cov": cal.cov.tolist(), "r2": cal.r2},
        "provenance": {"input": str(Path(args.input).resolve()), "tool": "anodescope compton",
                       "version": compton.__version__,
                       "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
    }
    _write_zarr(out, arrays, attrs, overwrite=args.overwrite)
    ok = np.isfinite(res.emf)
    print(f"EMF maps {shape[0]}x{shape[1]} in {dt:.2f} s: median EMF {np.nanmedian(res.emf):.4f}, "
          f"median sigma {np.nanmedian(res.sigma):.4f} ({int(ok.sum())} finite pixels) -> {out}")
    stem = out.with_suffix("") if out.suffix else out
    regions, components = [], []
    theta_ref = float(np.mean(theta_map))
    aligned = aligned_var = None
    if args.regions or not args.no_figures:
        # background-subtracted per pixel (the fluorescence lines do not move with the angle),
        # then every pixel's Compton signal on the energy axis of the mean angle so sums do not blur
        net, var = cube.counts.astype(np.float64), None
        if kw["background"]:
            degree = {"constant": 0, "linear": 1, "quadratic": 2}[kw["background"]]
            net, var = compton.subtract_background(net, cube.bin_edges_kev, sidebands_kev=args.sideband,
                                                   degree=degree, fwhm_kev=args.fwhm)
        var = np.clip(net, 0, None) if var is None else var
        aligned = compton.align_spectra(net, cube.bin_edges_kev, theta_map, e0_kev=e0, theta_ref_rad=theta_ref)
        aligned_var = compton.align_spectra(var, cube.bin_edges_kev, theta_map, e0_kev=e0,
                                            theta_ref_rad=theta_ref)
    if args.regions:
        lab = _read_labels(args.regions, shape)
        regions = _region_table(res, lab)
        _write_rows(Path(f"{stem}_regions.csv"), regions)
        print(f"wrote {stem}_regions.csv")
        if args.fractions:
            components = _components(args, res, aligned, aligned_var, lab)
            _write_rows(Path(f"{stem}_components.csv"), [{k: v for k, v in c.items() if k not in ("spectrum", "variance")}
                                                         for c in components])
            print(f"wrote {stem}_components.csv")
    if not args.no_figures:
        for path in write_figures(cube, res, stem, summed=aligned.sum(axis=(0, 1)),
                                  summed_var=aligned_var.sum(axis=(0, 1)), theta_ref_rad=theta_ref,
                                  e0_kev=e0, kw=kw, components=components):
            print(f"wrote {path}")
    return 0


def _region_table(res, lab):
    import numpy as np

    rows = []
    for r in sorted(int(v) for v in np.unique(lab) if v >= 0):
        m = (lab == r) & np.isfinite(res.e_low) & np.isfinite(res.e_high)
        el, eh = float(res.e_low[m].sum()), float(res.e_high[m].sum())
        vl, vh = float((res.sigma_low[m] ** 2).sum()), float((res.sigma_high[m] ** 2).sum())
        value, sig = _window_ratio(el, eh, vl, vh, float(res.cov[m].sum()))
        rows.append({"region": r, "n_pixels": int(m.sum()), "emf": value, "sigma": sig,
                     "e_low": el, "e_high": eh})
    return rows


def _components(args, res, aligned, aligned_var, lab):
    import numpy as np

    import compton

    head, rows = _read_csv(args.fractions, "fractions")
    if head[0].lower() != "region" or len(head) < 2:
        raise compton.InputError(f"{args.fractions}: header must be region,<component>,..., got {head}")
    vals = np.array([_floats(r, args.fractions, i + 2) for i, r in enumerate(rows)])
    if vals.shape[1] != len(head):
        raise compton.InputError(f"{args.fractions}: every row needs {len(head)} values")
    reg = vals[:, 0].astype(int)
    spectra = compton.region_spectra(aligned, lab)
    if reg.min() < 0 or reg.max() >= spectra.shape[0]:
        raise compton.InputError(f"{args.fractions}: region {reg.max()} is not in the region map")
    # EMF: exact unmixing of the per-pixel window sums; spectra (for the plots): aligned sums
    out = compton.component_emf(res, lab, vals[:, 1:], regions=reg, names=head[1:])
    variance = np.clip(compton.region_spectra(aligned_var, lab), 1.0, None)
    un = compton.unmix(spectra[reg], vals[:, 1:], variance=variance[reg])
    for i, row in enumerate(out):
        row["spectrum"] = un.spectra[i]
        row["variance"] = un.variance[i]
    return out


def _write_rows(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _write_zarr(out: Path, arrays: dict, attrs: dict, *, overwrite: bool) -> None:
    import shutil

    import numpy as np
    import zarr

    if out.exists() and overwrite:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    g = zarr.open_group(str(out), mode="w", zarr_format=2)
    g.attrs.update(json.loads(json.dumps(attrs, default=str)))
    for name, arr in arrays.items():
        a = g.create_array(name, data=np.asarray(arr, np.float64), chunks=np.shape(arr))
        a.attrs["units"] = {"theta_rad": "radians", "li_x": "Li per formula unit",
                            "sigma_li_x": "Li per formula unit"}.get(name, "a.u.")


def write_figures(cube, res, stem, *, summed, summed_var, theta_ref_rad, e0_kev, kw, components=()) -> list[Path]:
    """``<stem>_maps.png`` (EMF and sigma maps) and ``<stem>_profiles.png`` (profiles of the
    aligned summed spectrum and of the unmixed components, with the valence and core windows
    shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import compton

    maps_png, prof_png = Path(f"{stem}_maps.png"), Path(f"{stem}_profiles.png")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    finite = res.emf[np.isfinite(res.emf)]
    lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0, 1))
    for ax, data, label, lim in ((axes[0], res.emf, "EMF", (lo, hi)),
                                 (axes[1], res.sigma, "sigma(EMF)", (None, None))):
        im = ax.imshow(data, cmap="viridis" if label == "EMF" else "magma", vmin=lim[0], vmax=lim[1])
        fig.colorbar(im, ax=ax, label=label)
        ax.set_xlabel("column (250 um pixels)")
        ax.set_ylabel("row")
        ax.set_title(label)
    fig.suptitle(f"EMF = J over |p_z| <= {res.low:g} / J over {res.low:g} < |p_z| <= {res.high:g} a.u.")
    fig.tight_layout()
    fig.savefig(maps_png, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    theta = theta_ref_rad
    pkw = {"fwhm_kev": kw["fwhm_kev"]}       # spectra here are already background-subtracted
    curves = [("all pixels", np.asarray(summed, float), summed_var)]
    curves += [(c["name"], c["spectrum"], c["variance"]) for c in components]
    pz_max = res.high + 1.5
    for name, spec, var in curves:
        try:
            prof = compton.compton_profile(spec, cube.bin_edges_kev, e0_kev, theta, pz_max=pz_max,
                                           variance=np.clip(var, 0, None), **pkw)
        except compton.InputError:
            continue
        value, sig = prof.emf(res.low, res.high)
        ax.plot(prof.pz, prof.J, lw=1.2, label=f"{name}: EMF {value:.4f} +- {sig:.4f}")
        ax.fill_between(prof.pz, prof.J - prof.sigma, prof.J + prof.sigma, alpha=0.25, lw=0)
    ax.axvspan(-res.low, res.low, color="tab:orange", alpha=0.15, label="valence window")
    for a, b in ((-res.high, -res.low), (res.low, res.high)):
        ax.axvspan(a, b, color="tab:blue", alpha=0.08, label="core window" if a < 0 else None)
    ax.set_xlim(-pz_max, pz_max)
    ax.set_xlabel("p_z (atomic units)")
    ax.set_ylabel("J(p_z), unit area (a.u.^-1)")
    ax.set_title(f"Compton profiles at {np.rad2deg(theta):.1f} deg, E0 = {e0_kev:g} keV")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(prof_png, dpi=110)
    plt.close(fig)
    return [maps_png, prof_png]
