"""``anodescope hexitec``: HEXITEC frames (``.bin`` or DAQ HDF5) to a calibrated spectra cube.

Example::

    anodescope hexitec run.bin -o cube.zarr --dark 100 --threshold thresholds.txt \\
        --gradients gradients.txt --intercepts intercepts.txt --charge-sharing discriminate

Writes ``cube.zarr`` (or ``cube.h5``) plus ``cube_spectrum.png`` (summed spectrum) and
``cube_counts.png`` (counts per pixel). With ``--fit-calibration DIR`` and no gradients the
ADU cube of a flood measurement is fitted with the Am-241 lines and ``DIR/gradients.txt``,
``DIR/intercepts.txt`` and ``DIR/calibration_report.txt`` are written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ._argtypes import positive_float


def _number_or_path(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def register(subparsers) -> None:
    """Add the ``hexitec`` verb to the ``anodescope`` parser."""
    p = subparsers.add_parser(
        "hexitec",
        help="process HEXITEC frames into a per-pixel spectra cube (numba or CUDA)",
        description=(
            "Stream HEXITEC frames (.bin or HDF5 raw_frames) through dark subtraction, "
            "threshold, next-frame correction, calibration and charge-sharing correction into "
            "a (row, col, energy) cube in Zarr or HDF5, with quick-look PNGs."
        ),
    )
    p.add_argument("input", help="frames: .bin stream or .h5/.hdf5 with raw_frames")
    p.add_argument("-o", "--output", required=True, help="output cube: DIR.zarr or FILE.h5")
    p.add_argument("--dark", type=_number_or_path, default=None,
                   help="per-pixel offset in ADU: a number, a one-value-per-line file, or "
                   "'auto' (per-pixel median of the first frames)")
    p.add_argument("--threshold", type=_number_or_path, default=None,
                   help="event threshold in ADU after dark subtraction: a number or a file")
    p.add_argument("--gradients", default=None, help="per-pixel gradients file (keV/ADU)")
    p.add_argument("--intercepts", default=None, help="per-pixel intercepts file (keV)")
    p.add_argument("--next-frame", action="store_true", help="apply the next-frame correction")
    p.add_argument("--charge-sharing", choices=("none", "discriminate", "add"), default="none",
                   help="charge-sharing correction (default none)")
    p.add_argument("--window", type=int, choices=(3, 5), default=3,
                   help="discrimination window in pixels (default 3)")
    p.add_argument("--bin-width", type=positive_float, default=0.2,
                   help="bin width in keV (ADU without calibration), default 0.2")
    p.add_argument("--e-min", type=float, default=0.0, help="lowest bin edge, keV (default 0)")
    p.add_argument("--e-max", type=float, default=200.0, help="top bin edge, keV (default 200)")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--chunk-frames", type=int, default=8192, help="frames per chunk (default 8192)")
    p.add_argument("--fit-calibration", metavar="DIR", default=None,
                   help="fit per-pixel gradients/intercepts to Am-241 lines and write them to DIR")
    p.add_argument("--no-figures", action="store_true", help="do not write the PNG quick-looks")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import compton

    from ._progress import progress

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(17, "output exists (use --overwrite to replace it)", str(out))
    if args.fit_calibration and args.gradients:
        raise compton.InputError("--fit-calibration needs an uncalibrated (ADU) cube: drop --gradients")
    n_total = compton.count_frames(args.input)
    bar = progress(total=n_total, desc="hexitec", unit="frame", disable=True if args.quiet else None)
    t0 = time.perf_counter()
    state = {"done": 0}

    def callback(n_frames, n_events):
        bar.update(n_frames - state["done"])
        state["done"] = n_frames
        dt = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"{n_events / dt / 1e6:.2f} M events/s", refresh=False)

    try:
        cube = compton.process_frames(
            args.input, dark=args.dark, threshold=args.threshold, gradients=args.gradients,
            intercepts=args.intercepts, next_frame=args.next_frame,
            charge_sharing=None if args.charge_sharing == "none" else args.charge_sharing,
            window=args.window, bin_width_kev=args.bin_width, e_min_kev=args.e_min,
            e_max_kev=args.e_max, device=args.device, chunk_frames=args.chunk_frames,
            callback=callback,
        )
    finally:
        bar.close()
    dt = time.perf_counter() - t0
    compton.write_cube(cube, out, overwrite=args.overwrite)
    found = int(cube.found.sum())
    print(
        f"{cube.n_frames} frames in {dt:.2f} s ({cube.n_frames / dt:,.0f} frames/s, "
        f"{found / dt:,.0f} events/s on {cube.attrs['device']}): {found} events found, "
        f"{int(cube.accepted.sum())} accepted, {int(cube.rejected.sum())} rejected, "
        f"{int(cube.counts.sum())} in the cube -> {out}"
    )
    if not args.no_figures:
        for path in write_figures(cube, out):
            print(f"wrote {path}")
    if args.fit_calibration:
        _fit(cube, Path(args.fit_calibration))
    return 0


def _fit(cube, folder: Path) -> None:
    import compton

    cal = compton.fit_calibration(cube.counts, cube.bin_edges_kev)
    folder.mkdir(parents=True, exist_ok=True)
    compton.write_values(folder / "gradients.txt", cal.gradients)
    compton.write_values(folder / "intercepts.txt", cal.intercepts)
    report = cal.report()
    (folder / "calibration_report.txt").write_text(report + "\n")
    print(report.splitlines()[0] + f" -> {folder}", file=sys.stdout)


def write_figures(cube, out: Path) -> list[Path]:
    """Write ``<out>_spectrum.png`` (summed spectrum) and ``<out>_counts.png`` (counts map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stem = out.with_suffix("") if out.suffix else out
    spec_png = Path(f"{stem}_spectrum.png")
    map_png = Path(f"{stem}_counts.png")
    spec = cube.summed_spectrum
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(cube.bin_centres_kev, np.maximum(spec, 0.5), where="mid", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)
    ax.set_xlabel(f"energy ({cube.units})")
    ax.set_ylabel(f"counts per {cube.bin_width_kev:g} {cube.units} bin")
    ax.set_title(f"summed spectrum, {cube.counts.shape[0]} x {cube.counts.shape[1]} pixels, "
                 f"{cube.n_frames} frames")
    fig.tight_layout()
    fig.savefig(spec_png, dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(cube.counts.sum(axis=2), cmap="viridis", origin="upper")
    fig.colorbar(im, ax=ax, label="counts in the cube")
    ax.set_xlabel("column (250 um pixels)")
    ax.set_ylabel("row")
    ax.set_title(f"counts per pixel ({cube.attrs.get('charge_sharing', 'none')} charge sharing)")
    fig.tight_layout()
    fig.savefig(map_png, dpi=120)
    plt.close(fig)
    return [spec_png, map_png]

