"""The demo: the whole study workflow on the embedded (simulated) sample data.

``anodescope demo --out DIR`` (and ``make demo``) does what a beamline user does with a
study, on data whose truth is known:

1. :func:`pipelines.samples.make_sample_study` writes the sample study into ``DIR``: an
   anode-free cell (Grafoil | Li | Li6PS5Cl with particles and pores, attenuation from
   xraylib at 25.5 keV) after plating and after partial stripping, each scanned in parallel
   beam with flats, darks, Poisson noise and defective detector columns (DXchange HDF5),
   with its true Li thickness maps; XCS cubes of a cell (Li anode, PEO-LiTFSI separator,
   NMC622 cathode) at three states of charge; simulated HEXITEC frames with their
   per-pixel calibration; ``study.yaml`` and ``scans.tsv``.
2. :func:`pipelines.stages.run_study` runs it as ``anodescope run DIR/study.yaml`` would:
   reconstruct -> segment (thickness, capacity, topology, roughness) -> virtual stripping
   with local current for each tomography scan; HEXITEC frames -> calibrated cube; Compton
   profiles -> EMF maps for each XCS scan; a report per scan and one for the study
   (``DIR/results/report.html``) with every figure and the errors against the truth.

Everything is idempotent: rerunning the demo reuses the sample files and every complete
stage (same inputs and parameters) and finishes the rest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["run_demo"]


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _value(stage: dict, name: str):
    metric = (stage.get("metrics") or {}).get(name)
    return None if metric is None else metric.get("value")


def run_demo(out_dir: str | Path = "demo_out", *, size: str = "demo", seed: int = 0, quiet: bool = False,
             scheduler: str | None = None) -> dict:
    """Write the sample study, run every stage and the reports, and summarise against the truth.

    Parameters
    ----------
    out_dir : str or Path
        Folder for the study (``study.yaml``, ``data/``, ``truth.json``) and its results
        (``results/``). Existing complete files and stages are reused.
    size : {"demo", "test"}
        Sample size: "demo" (1.7 um voxels, 48 x 160 x 160, 900 angles; about two minutes on
        two cores) or "test" (3.4 um voxels, a few seconds).
    seed : int
        Seed of the simulated samples and noise.
    quiet : bool
        Suppress progress output and the summary.
    scheduler : str, optional
        dask.distributed scheduler address (default: the local threaded scheduler).

    Returns
    -------
    dict
        ``{"study": path of study.yaml, "report": path of report.html, "summary": {...},
        "seconds": float}``; the summary holds the headline numbers with units (also written
        to ``<out_dir>/results/demo_summary.json``); every metric with units and
        provenance is in ``results/report_metrics.json`` and ``results/study.json``.
    """
    from pipelines.samples import make_sample_study
    from pipelines.stages import run_study

    out = Path(out_dir)
    t0 = time.perf_counter()
    _log(f"[1/2] writing the sample study ({size} size) into {out}", quiet)
    study_yaml = make_sample_study(out, size=size, seed=seed)
    t1 = time.perf_counter()
    _log(f"[2/2] running the study: anodescope run {study_yaml}", quiet)
    run_study(study_yaml, scheduler=scheduler, progress=not quiet)
    seconds = time.perf_counter() - t0

    import yaml

    results = out / yaml.safe_load(study_yaml.read_text())["out"]
    report = results / "report.html"
    metrics = json.loads((results / "report_metrics.json").read_text())
    truth = json.loads((out / "truth.json").read_text())
    summary = _summary(metrics, truth)
    summary["seconds"] = {"sample": round(t1 - t0, 1), "total": round(seconds, 1), "unit": "s"}
    (results / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    if not quiet:
        _print_summary(summary, report)
    return {"study": study_yaml, "report": report, "summary": summary, "seconds": seconds}


def _summary(metrics: dict, truth: dict) -> dict:
    """Headline numbers of the sample study against its truth, each with its unit."""
    scans = metrics["scans"]
    out: dict = {"tomography": {}, "xcs": {}, "hexitec": {}}
    for scan_id, scan in scans.items():
        st = scan["stages"]
        if scan.get("kind") == "tomo":
            rec, seg, strip = st.get("reconstruct", {}), st.get("segment", {}), st.get("strip", {})
            row = {
                "center_px": _value(rec, "center"),
                "thickness_mean_um": _value(seg, "thickness_mean"),
                "thickness_true_mean_um": _value(seg, "thickness_true_mean"),
                "thickness_mae_um": _value(seg, "thickness_mae"),
                "thickness_bias_um": _value(seg, "thickness_bias"),
                "voxel_um": _value(seg, "voxel_size"),
                "capacity_mah_cm2": _value(seg, "capacity"),
                "capacity_coulometric_mah_cm2": _value(seg, "capacity_coulometric"),
                "stripping": [
                    {"stripped_fraction": f / 100, "active_fraction": _value(strip, f"active_fraction_{f}pct"),
                     "current_multiplier": _value(strip, f"current_multiplier_{f}pct"),
                     "n_islands": _value(strip, f"n_islands_{f}pct")}
                    for f in (64, 85, 95) if _value(strip, f"active_fraction_{f}pct") is not None
                ],
            }
            out["tomography"][scan_id] = row
        elif "compton" in st and st["compton"].get("status") == "complete":
            out["xcs"][scan_id] = {
                f"region_{k}": {"emf": _value(st["compton"], f"emf_region_{k}"),
                                "sigma": _value(st["compton"], f"sigma_emf_region_{k}")}
                for k in (1, 2, 3) if _value(st["compton"], f"emf_region_{k}") is not None
            }
        if "hexitec" in st and st["hexitec"].get("status") == "complete":
            out["hexitec"][scan_id] = {"frames": _value(st["hexitec"], "frames"),
                                       "events_accepted": _value(st["hexitec"], "events_accepted"),
                                       "compton_peak_kev": _value(st["hexitec"], "compton_peak"),
                                       "expected_peak_kev": _value(st["hexitec"], "compton_peak_expected")}
    out["truth_comparisons"] = metrics.get("truth_comparisons", [])
    out["truth"] = truth
    return out


def _print_summary(summary: dict, report: Path) -> None:
    print("")
    for scan_id, row in summary["tomography"].items():
        print(f"{scan_id}: centre {row['center_px']:.2f} px; Li thickness mean {row['thickness_mean_um']:.2f} um "
              f"(truth {row['thickness_true_mean_um']:.2f}), MAE {row['thickness_mae_um']:.2f} um, "
              f"voxel {row['voxel_um']} um; capacity {row['capacity_mah_cm2']:.2f} mAh/cm2 "
              f"(coulometric {row['capacity_coulometric_mah_cm2']:.2f})")
        gap = next((c for c in summary["truth_comparisons"]
                    if c["stage"] == f"{scan_id} / segment" and c["name"] == "thickness_mae_li_plus_gap"), None)
        if gap is not None:
            print(f"    the dark layer is Li plus the voids stripping left (absorption cannot tell them apart: "
                  f"both nearly transparent); against Li + voids the MAE is {gap['value']:.2f} {gap['unit']}")
        for s in row["stripping"]:
            print(f"    stripped {100 * s['stripped_fraction']:.0f} %: active {100 * s['active_fraction']:.1f} %, "
                  f"current x{s['current_multiplier']:.2f}, {s['n_islands']} islands")
    for c in summary["truth_comparisons"]:
        print(f"truth check {c['stage']} {c['name']}: {c['value']:+.4g} {c['unit']} ({c['description']})")
    for scan_id, row in summary["hexitec"].items():
        print(f"{scan_id}: {row['frames']} frames, {row['events_accepted']} events, Compton peak "
              f"{row['compton_peak_kev']:.1f} keV (expected {row['expected_peak_kev']:.1f})")
    print(f"report: {report}")
