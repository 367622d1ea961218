"""The demo: the whole chain on embedded (simulated) sample data, with figures and numbers.

``anodescope demo --out DIR`` (and ``make demo``) runs, in order:

1. simulate an anode-free cell (Grafoil | Li | Li6PS5Cl with particles and pores) at
   25.5 keV and its parallel-beam scan with flats, darks, Poisson noise and defective
   detector columns, written as DXchange HDF5;
2. reconstruct it in chunks into OME-Zarr (automatic centre, ring removal) and compare
   the reconstruction with the known attenuation volume;
3. segment the layers and write the Li thickness, capacity and topology maps with
   roughness (``anodescope segment``), compared with the true thickness map;
4. strip the measured thickness map virtually and solve the local current on the
   remaining islands (``anodescope strip``);
5. process simulated HEXITEC frames (Am-241 and Compton lines, charge sharing) into a
   calibrated hyperspectral cube (``anodescope hexitec``);
6. simulate the Compton scattering of a cell (NMC622 cathode, PEO-LiTFSI separator, Li
   anode) from xraylib's reference profiles and turn it into EMF maps with uncertainties
   (``anodescope compton``), compared with the reference EMF of each component.

Every stage is idempotent: rerunning the demo reuses what is already complete and
finishes the rest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo"]


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _figure_cell(cell, recon_vol, out_png: Path, *, center: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    px = cell.pixel_size_um
    mu_cm = 1e4 / px  # per-voxel -> cm^-1
    nz, ny, nx = cell.mu_per_px.shape
    y_mid = ny // 2
    z_el = min(nz - 3, cell.li_bottom_px + int(np.nanmax(cell.thickness_um) / px) + 2)
    extent_xz = (0, nx * px, 0, nz * px)
    vmax = cell.mu_per_cm["electrolyte"] * 1.3
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), constrained_layout=True)
    panels = [
        (axes[0, 0], cell.mu_per_px[:, y_mid, :] * mu_cm, f"truth, x-z section at y={y_mid}", extent_xz),
        (axes[0, 1], recon_vol[:, y_mid, :] * mu_cm, "reconstruction, same section", extent_xz),
    ]
    for ax, img, title, ext in panels:
        im = ax.imshow(img, cmap="gray", origin="lower", extent=ext, vmin=0, vmax=vmax, aspect="equal")
        ax.set_title(title)
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("z (µm), stacking axis")
        fig.colorbar(im, ax=ax, label="µ (cm$^{-1}$)", shrink=0.8)
    ax = axes[1, 0]
    im = ax.imshow(recon_vol[z_el] * mu_cm, cmap="gray", origin="lower", vmin=0, vmax=vmax,
                   extent=(0, nx * px, 0, ny * px))
    ax.set_title(f"reconstructed slice z={z_el} (electrolyte), centre {center:.2f} px")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    fig.colorbar(im, ax=ax, label="µ (cm$^{-1}$)", shrink=0.8)
    ax = axes[1, 1]
    im = ax.imshow(cell.thickness_um, cmap="viridis", origin="lower", extent=(0, nx * px, 0, ny * px))
    ax.set_title("true Li thickness")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    fig.colorbar(im, ax=ax, label="thickness (µm)", shrink=0.8)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _cli(argv: list[str]) -> None:
    """Run one ``anodescope`` verb in-process; a failure is an error of the demo itself."""
    from pipelines.cli import main

    code = main(argv)
    if code != 0:
        raise RuntimeError(f"'anodescope {' '.join(argv)}' exited with code {code}")


def run_demo(out_dir: str | Path = "demo_out", *, seed: int = 0, quiet: bool = False,
             shape: tuple[int, int, int] = (48, 160, 160), n_angles: int = 900,
             n_frames: int = 20000) -> dict:
    """Run the demo chain and return its metrics (also written to ``<out_dir>/metrics.json``).

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created). Existing complete stages are reused.
    seed : int
        Seed of the simulated sample and noise.
    quiet : bool
        Suppress progress output.
    shape : tuple of int
        Sample volume (z, y, x) in voxels of 1.7 um.
    n_angles : int
        Number of projections over 180 degrees.
    n_frames : int
        Number of simulated HEXITEC frames (80 x 80).

    Returns
    -------
    dict
        Metrics with units: centre found and true, reconstruction error, thickness-map
        error, stripping and current figures, HEXITEC counts, timings.
    """
    import recon
    from pipelines.samples import anode_free_cell

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"seed": seed, "stages": {}}
    t0 = time.perf_counter()

    _log("[1/6] simulating an anode-free cell and its scan (DXchange)", quiet)
    cell = anode_free_cell(shape=shape, seed=seed)
    theta = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    scan = out / "cell_scan.h5"
    width = shape[2]
    if not scan.exists():
        proj = recon.simulate_scan(
            cell.mu_per_px, theta, incident_counts=50000, n_flats=10, n_darks=10,
            dead_columns=(width // 3,), hot_columns=(2 * width // 3 + 5,), seed=seed,
            pixel_size_um=cell.pixel_size_um, energy_kev=cell.energy_kev,
        )
        tmp = scan.with_suffix(".h5.part")
        recon.write_dxchange(tmp, proj, pixel_size_um=cell.pixel_size_um, energy_kev=cell.energy_kev,
                             overwrite=True)
        tmp.replace(scan)  # only a complete file gets the final name
    np.save(out / "truth_thickness_um.npy", cell.thickness_um)
    metrics["stages"]["simulate"] = {"seconds": round(time.perf_counter() - t0, 2), "scan": str(scan)}

    _log("[2/6] reconstructing in chunks into OME-Zarr", quiet)
    t1 = time.perf_counter()
    volume_path = out / "cell.zarr"
    # a narrow (160-px) detector: a short sorting filter keeps the cylinder's values unbiased
    recon.reconstruct_to_zarr(scan, volume_path, center="auto", algorithm="fourier", rings="sorting",
                              ring_options={"size": 7},
                              memory_limit="1GB", progress=not quiet)
    vol, attrs = recon.open_volume(volume_path)
    vol = np.asarray(vol)
    metrics["stages"]["reconstruct"] = {"seconds": round(time.perf_counter() - t1, 2),
                                        "volume": str(volume_path)}

    true_center = (width - 1) / 2
    center = float(np.mean(attrs.get("center", np.nan)))
    inside = cell.labels > 0
    mu_cm = 1e4 / cell.pixel_size_um
    err = (vol - cell.mu_per_px)[inside] * mu_cm
    metrics["reconstruction"] = {
        "center_px": center,
        "true_center_px": true_center,
        "center_error_px": abs(center - true_center),
        "rmse_per_cm": float(np.sqrt(np.mean(err**2))),
        "electrolyte_mu_per_cm": {
            "true": cell.mu_per_cm["electrolyte"],
            "reconstructed_median": float(np.median(vol[cell.labels == 3]) * mu_cm),
        },
    }
    fig = out / "cell_reconstruction.png"
    _figure_cell(cell, vol, fig, center=center)
    figures = [fig]

    _log("[3/6] segmenting the layers: thickness, capacity and topology maps", quiet)
    t2 = time.perf_counter()
    maps_dir = out / "cell_maps"
    if not (volume_path / "maps" / "thickness_um").exists() or not (maps_dir / "metrics.json").exists():
        capacity = float(np.nanmean(cell.thickness_um)) / 4.86
        _cli(["segment", str(volume_path), "--phases", "collector,li,electrolyte",
              "--capacity", f"{capacity:.4f}", "--out", str(maps_dir)] + (["--quiet"] if quiet else []))
    import zarr

    measured = np.asarray(zarr.open_group(str(volume_path / "maps"), mode="r")["thickness_um"])
    both = ~np.isnan(measured) & ~np.isnan(cell.thickness_um)
    diff = measured[both] - cell.thickness_um[both]
    metrics["thickness"] = {
        "mae_um": float(np.abs(diff).mean()),
        "bias_um": float(diff.mean()),
        "voxel_um": cell.pixel_size_um,
        "mean_measured_um": float(measured[both].mean()),
        "mean_true_um": float(cell.thickness_um[both].mean()),
        "coverage": float(both.sum() / (~np.isnan(cell.thickness_um)).sum()),
    }
    metrics["stages"]["segment"] = {"seconds": round(time.perf_counter() - t2, 2)}
    figures += sorted(maps_dir.glob("*.png"))

    _log("[4/6] virtual stripping and local current on the measured map", quiet)
    t3 = time.perf_counter()
    strip_dir = out / "stripping"
    if not (strip_dir / "current.json").exists():
        # the largest square inside the circular electrode: its rim would otherwise act as an
        # insulating edge with a singular (primary) current, masking the islands' own peaks
        yy, xx = np.nonzero(~np.isnan(measured))
        cy, cx = (yy.min() + yy.max()) / 2, (xx.min() + xx.max()) / 2
        half = int(0.5 * (yy.max() - yy.min()) / np.sqrt(2)) - 1
        crop = measured[int(cy) - half:int(cy) + half, int(cx) - half:int(cx) + half]
        np.save(out / "thickness_square_um.npy", crop)
        _cli(["strip", str(out / "thickness_square_um.npy"), "--pixel-size-um", str(cell.pixel_size_um),
              "-o", str(strip_dir), "--overwrite",
              "--fractions", "0.64,0.85,0.95", "--current-density", "0.5",
              "--electrolyte-thickness", "50", "--critical-current-density", "2.0",
              "--lateral-boundary", "mirror"])
    strip = json.loads((strip_dir / "stripping.json").read_text())
    metrics["stripping"] = {
        "fractions": [{k: row[k] for k in ("stripped_fraction", "active_fraction", "current_multiplier", "n_islands")}
                      for row in strip["fractions"]],
    }
    metrics["stages"]["strip"] = {"seconds": round(time.perf_counter() - t3, 2)}
    figures += sorted(strip_dir.glob("*.png"))

    _log("[5/6] HEXITEC frames -> calibrated hyperspectral cube", quiet)
    t4 = time.perf_counter()
    cube_path = out / "xcs_cube.zarr"
    if not cube_path.exists():
        _demo_hexitec(out, cube_path, n_frames=n_frames, seed=seed, quiet=quiet)
    import compton

    cube = compton.read_cube(cube_path)
    centres = cube.bin_centres_kev
    spectrum = cube.summed_spectrum
    window = (centres > 85) & (centres < 100)
    metrics["hexitec"] = {
        "frames": int(cube.n_frames),
        "accepted_events": int(np.sum(cube.accepted)),
        "rejected_events": int(np.sum(cube.rejected)),
        "compton_peak_kev": float(centres[window][np.argmax(spectrum[window])]),
        "expected_peak_kev": 93.9,
    }
    metrics["stages"]["hexitec"] = {"seconds": round(time.perf_counter() - t4, 2)}
    figures += sorted(out.glob("xcs_cube*.png"))

    _log("[6/6] Compton profiles and EMF maps of a simulated cell", quiet)
    t5 = time.perf_counter()
    emf_path = out / "xcs_emf.zarr"
    regions = _demo_xcs_cube(out, seed=seed)
    if not emf_path.exists():
        _cli(["compton", str(out / "xcs_sim.zarr"), "-o", str(emf_path), "--geometry",
              str(out / "xcs_geometry.yaml"), "--regions", str(out / "xcs_regions.npy")])
    import csv

    with open(out / "xcs_emf_regions.csv") as fh:
        rows = {int(r["region"]): r for r in csv.DictReader(fh)}
    metrics["emf"] = [
        {"component": name, "emf": float(rows[k]["emf"]), "sigma": float(rows[k]["sigma"]),
         "expected_0p8kev": expected, "reference_xraylib": ref}
        for k, (name, expected, ref) in regions.items() if k in rows
    ]
    metrics["stages"]["compton"] = {"seconds": round(time.perf_counter() - t5, 2)}
    figures += sorted(out.glob("xcs_emf*.png"))

    metrics["figures"] = [str(f) for f in figures]
    metrics["seconds_total"] = round(time.perf_counter() - t0, 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    rec = metrics["reconstruction"]
    th = metrics["thickness"]
    _log("", quiet)
    _log(f"centre {rec['center_px']:.2f} px (true {rec['true_center_px']:.2f}); µ RMSE {rec['rmse_per_cm']:.3f} cm^-1", quiet)
    _log(f"Li thickness: mean {th['mean_measured_um']:.2f} µm (true {th['mean_true_um']:.2f}), "
         f"MAE {th['mae_um']:.2f} µm (voxel {th['voxel_um']} µm)", quiet)
    for row in metrics["stripping"]["fractions"]:
        _log(f"stripped {100 * row['stripped_fraction']:.0f} %: active {100 * row['active_fraction']:.1f} %, "
             f"current x{row['current_multiplier']:.2f}, {row['n_islands']} islands", quiet)
    hx = metrics["hexitec"]
    _log(f"HEXITEC: {hx['frames']} frames, {hx['accepted_events']} events accepted, Compton peak at "
         f"{hx['compton_peak_kev']:.1f} keV (expected {hx['expected_peak_kev']})", quiet)
    for row in metrics["emf"]:
        _log(f"EMF {row['component']}: {row['emf']:.4f} ± {row['sigma']:.4f} (expected at 0.8 keV "
             f"resolution {row['expected_0p8kev']:.4f}; xraylib profile {row['reference_xraylib']:.3f})", quiet)
    _log(f"{len(figures)} figures and metrics.json in {out} ({metrics['seconds_total']:.0f} s)", quiet)
    return metrics


def _demo_hexitec(out: Path, cube_path: Path, *, n_frames: int, seed: int, quiet: bool) -> None:
    """Simulate HEXITEC raw frames with per-pixel gains, write them as DAQ HDF5 and process them."""
    import h5py

    import compton
    from compton._sim_frames import sparse_frames

    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.027, 0.033, (80, 80))  # keV per ADU
    intercepts = rng.uniform(-2.0, -1.0, (80, 80))  # keV
    frames, _ = sparse_frames(n_frames, lines_kev=(59.54, 93.9, 26.1, 31.0), weights=(0.25, 0.6, 0.08, 0.07),
                              gain_kev_per_adu=gains, intercept_kev=intercepts, dark_adu=0.0, seed=seed)
    raw = out / "xcs_frames.h5"
    tmp = raw.with_suffix(".h5.part")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("raw_frames", data=frames, chunks=(1024, 80, 80))
    tmp.replace(raw)
    compton.write_values(out / "gradients.txt", gains)
    compton.write_values(out / "intercepts.txt", intercepts)
    _cli(["hexitec", str(raw), "-o", str(cube_path), "--threshold", "300",
          "--gradients", str(out / "gradients.txt"), "--intercepts", str(out / "intercepts.txt"),
          "--charge-sharing", "discriminate", "--bin-width", "0.2", "--e-max", "120", "--overwrite"]
         + (["--quiet"] if quiet else []))


def _demo_xcs_cube(out: Path, *, seed: int) -> dict:
    """Simulated XCS cube of a cell seen by the pinhole camera.

    Detector columns image the beam plane across the cell: Li anode, PEO-LiTFSI separator and
    a half-charged NMC622 cathode, each a band of columns, at the per-pixel scattering angles
    of the published geometry (SCIENCE.md §6). Returns ``{region: (name, expected EMF,
    xraylib EMF)}``: the expected EMF is that of the noiseless spectrum at the detector's
    0.8 keV resolution (which lowers the EMF of sharp profiles), the xraylib one that of the
    reference profile itself.
    """
    import yaml

    import compton
    from compton.geometry import Geometry
    from compton.simulate import nmc622, reference_emf, simulate_cube

    components = {1: ("Li anode", "Li metal"), 2: ("separator", "PEO-LiTFSI"), 3: ("cathode x=0.5", nmc622(0.5))}
    labels = np.zeros((80, 80), np.int64)
    labels[4:76, 6:26] = 1
    labels[4:76, 30:50] = 2
    labels[4:76, 54:74] = 3
    np.save(out / "xcs_regions.npy", np.where(labels > 0, labels, -1))
    geometry = {"e0_kev": 115.0, "theta_centre_deg": 90.0, "pinhole_to_beam_mm": 160.0,
                "pinhole_to_detector_mm": 150.0, "pixel_pitch_um": 250.0}
    (out / "xcs_geometry.yaml").write_text(yaml.safe_dump(geometry))
    geo = compton.read_geometry(out / "xcs_geometry.yaml", shape=(80, 80))
    edges = np.arange(0.0, 120.0 + 1e-9, 0.2)
    comps = [None] + [c for _, c in components.values()]
    cube_path = out / "xcs_sim.zarr"
    if not cube_path.exists():
        cube = simulate_cube(comps, labels, edges, geometry=geo, counts_per_pixel=4e4, seed=seed)
        compton.write_cube(cube, cube_path)
    clean = simulate_cube(comps, labels, edges, geometry=geo, counts_per_pixel=4e4, noise=False)
    expected = compton.emf_map(clean, geometry=geo)
    assert isinstance(geo, Geometry)
    return {k: (name, float(np.nanmedian(expected.emf[labels == k])), float(reference_emf(comp)))
            for k, (name, comp) in components.items()}
