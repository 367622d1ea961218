"""The study runner behind ``anodescope run``: one folder per (scan, stage), skipped when done.

Each stage of a scan writes into ``<out>/<scan>/<stage>.partial/`` and, once everything is
there, writes ``stage.json`` (fsynced, atomically) and renames the folder to
``<out>/<scan>/<stage>/``. The presence of ``<stage>/stage.json`` therefore means the stage is
complete. Its ``hash`` is the SHA-256 of the stage name, its parameters (defaults filled in,
canonical JSON), the content hashes of the scan's raw inputs that the stage reads, and the
hashes of its upstream stages; never times. A rerun

- skips a stage whose ``stage.json`` has the same hash;
- reruns a stage whose hash differs (the old folder is removed only after the new one is
  complete);
- resumes an interrupted ``reconstruct`` inside its partial folder (the chunk markers of
  :func:`recon.reconstruct_to_zarr`) when the partial's hash matches, and starts the other
  (short) stages afresh; a partial folder with another hash is removed first.

Content hashes of input files are cached by ``(path, size, mtime_ns)`` in
``<out>/.anodescope/hashes.json``.

Stage chains: tomo scans ``reconstruct -> segment -> strip -> report``; xcs scans
``hexitec`` (only with ``frames``) ``-> compton -> report``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import io
import json
import math
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from ._errors import InputError
from .config import STAGES, ScanConfig, StudyConfig, load_config

__all__ = ["run_stage", "run_study", "stage_hash", "stage_status", "content_hash"]

STAGE_JSON = "stage.json"
_PARTIAL_HASH = ".stage-hash"


# ============================================================================ small helpers

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _canonical(obj) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))


def _write_json_atomic(path: Path, data) -> None:
    """Write JSON to ``path`` via a fsynced temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(_jsonable(data), indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metric(value, unit: str, description: str) -> dict:
    return {"value": _jsonable(value), "unit": unit, "description": description}


def _versions() -> dict:
    import platform

    import dask
    import scipy

    from . import __version__

    return {"anodescope": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "dask": dask.__version__, "python": platform.python_version()}


class _Log:
    """One line per stage on stdout (``[scan] stage: ...``), silent when ``progress`` is False."""

    def __init__(self, progress: bool):
        self.progress = progress

    def __call__(self, scan: str, stage: str, msg: str) -> None:
        if self.progress:
            print(f"[{scan}] {stage}: {msg}", flush=True)


@contextlib.contextmanager
def _quiet_stdout(quiet: bool):
    """Silence the verbs' own summary lines when the run is quiet."""
    if quiet:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    else:
        yield


# ============================================================================ content hashes

_CACHE_LOCK = threading.Lock()


class _HashCache:
    """SHA-256 of files keyed by ``(path, size, mtime_ns)``, kept in ``<out>/.anodescope/hashes.json``."""

    def __init__(self, out: Path | None):
        self.path = None if out is None else Path(out) / ".anodescope" / "hashes.json"
        self.entries = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            data = _read_json(self.path)
            if isinstance(data, dict):
                self.entries = data

    def file_hash(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        ent = self.entries.get(key)
        if ent and ent.get("size") == st.st_size and ent.get("mtime_ns") == st.st_mtime_ns:
            return ent["sha256"]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        digest = h.hexdigest()
        self.entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        with _CACHE_LOCK:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            old = _read_json(self.path)  # merge what other processes added meanwhile
            merged = old if isinstance(old, dict) else {}
            merged.update(self.entries)
            _write_json_atomic(self.path, merged)
            self.dirty = False


def content_hash(path, *, cache: _HashCache | None = None) -> str:
    """SHA-256 of a file's bytes, or of a folder (relative paths and file hashes, sorted).

    Parameters
    ----------
    path : str or Path
        File or folder (a Zarr store, a TIFF folder).
    cache : optional
        Hash cache keyed by ``(path, size, mtime_ns)``.

    Returns
    -------
    str
        Hex digest; the same content gives the same digest wherever it lies.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"; _ = p.write_text("abc")
    >>> content_hash(p)[:12]
    'ba7816bf8f01'
    """
    cache = cache or _HashCache(None)
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_file():
        return cache.file_hash(path)
    h = hashlib.sha256(b"folder\0")
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            f = Path(root) / name
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            h.update(cache.file_hash(f).encode() + b"\0")
    return h.hexdigest()


# ============================================================================ stage identity

#: scan keys each stage reads
_RAW_INPUTS = {
    "reconstruct": ("projections",),
    "segment": ("truth_thickness",),
    "strip": (),
    "hexitec": ("frames", "gradients", "intercepts", "geometry"),
    "compton": ("geometry", "regions"),
    "report": (),
}


def _stage_parameters(cfg: StudyConfig, scan: ScanConfig, stage: str) -> dict:
    params = dict(cfg.stages[stage])
    if stage == "segment":
        params["capacity_mah_cm2"] = scan.capacity_mah_cm2
    if stage == "compton":
        params["cube_from"] = "hexitec" if scan.frames is not None else "scan"
    return params


def _raw_inputs(scan: ScanConfig, stage: str) -> dict:
    keys = list(_RAW_INPUTS[stage])
    if stage == "compton" and scan.frames is None:
        keys.insert(0, "cube")
    return {k: getattr(scan, k) for k in keys if getattr(scan, k) is not None}


def _upstream(cfg: StudyConfig, scan: ScanConfig, stage: str) -> tuple[str, ...]:
    """Stages whose results ``stage`` reads; the report covers the chain stages of ``run`` only."""
    ups = scan.upstream(stage)
    if stage == "report":
        ups = tuple(s for s in ups if s in cfg.run)
    return ups


def stage_hash(cfg: StudyConfig, scan_id: str, stage: str, *, _cache=None, _memo=None) -> str:
    """The hash that a complete ``stage`` of ``scan_id`` must carry to be up to date.

    SHA-256 over the stage name, its parameters (canonical JSON, defaults filled in), the
    content hashes of the scan's raw inputs for this stage and the hashes of the upstream
    stages (computed the same way, so an upstream change propagates downstream).
    """
    cache = _cache if _cache is not None else _HashCache(cfg.out)
    memo = _memo if _memo is not None else {}
    key = (scan_id, stage)
    if key in memo:
        return memo[key]
    scan = cfg.scan(scan_id)
    h = hashlib.sha256()
    h.update(f"stage={stage}\0".encode())
    h.update(_canonical(_stage_parameters(cfg, scan, stage)).encode() + b"\0")
    for name, path in sorted(_raw_inputs(scan, stage).items()):
        h.update(f"input {name}={content_hash(path, cache=cache)}\0".encode())
    for up in _upstream(cfg, scan, stage):
        h.update(f"upstream {up}={stage_hash(cfg, scan_id, up, _cache=cache, _memo=memo)}\0".encode())
    memo[key] = h.hexdigest()
    if _cache is None:
        cache.save()
    return memo[key]


def stage_status(cfg: StudyConfig, scan_id: str, stage: str, *, _cache=None, _memo=None) -> str:
    """``"complete"`` (stage.json with the expected hash), ``"stale"`` (another hash) or ``"missing"``."""
    rec = _read_json(cfg.scan_dir(scan_id) / stage / STAGE_JSON)
    if not isinstance(rec, dict):
        return "missing"
    expected = stage_hash(cfg, scan_id, stage, _cache=_cache, _memo=_memo)
    return "complete" if rec.get("hash") == expected else "stale"


# ============================================================================ the stages

def _run_reconstruct(cfg, scan, work: Path, params: dict, upstream: dict, progress: bool) -> dict:
    import recon

    rings = None if params["rings"] == "none" else params["rings"]
    ring_options = {"size": int(params["ring_size"])} if rings == "sorting" else None
    vol_path = work / "volume.zarr"
    recon.reconstruct_to_zarr(
        scan.projections, vol_path, center=params["center"], algorithm=params["algorithm"],
        filter_name=params["filter_name"], rings=rings, ring_options=ring_options, zingers=params["zingers"],
        flat_method=params["flat_method"], device=params["device"], memory_limit=params["memory_limit"],
        rows_per_chunk=params["rows_per_chunk"], progress=progress,
    )
    vol, attrs = recon.open_volume(vol_path)
    center = attrs.get("center")
    vs = attrs.get("voxel_size_um")
    metrics = {
        "center": _metric(float(np.mean(center)) if center is not None else None, "pixels",
                          "rotation axis in detector columns"),
        "shape_z": _metric(int(vol.shape[0]), "voxels", "slices (detector rows)"),
        "shape_y": _metric(int(vol.shape[1]), "voxels", "rows of a slice"),
        "shape_x": _metric(int(vol.shape[2]), "voxels", "columns of a slice"),
        "voxel_size": _metric(vs, "um", "voxel edge"),
    }
    figures = [p.name for p in (work / "volume_slice.png", work / "volume_center.png") if p.exists()]
    return {"metrics": metrics, "figures": figures, "outputs": ["volume.zarr"],
            "inputs": {"projections": str(scan.projections)}}


def _run_segment(cfg, scan, work: Path, params: dict, upstream: dict, progress: bool) -> dict:
    import zarr

    from . import _cli_segment

    volume = cfg.scan_dir(scan) / "reconstruct" / "volume.zarr"
    args = argparse.Namespace(
        volume=str(volume), phases=",".join(params["phases"]), axis="0", capacity=scan.capacity_mah_cm2,
        level=params["level"], out=str(work), quiet=not progress, method=params["method"], classifier=None,
        li_class=None, median=params["median"], opening=params["opening"], closing=params["closing"],
        nlm=params["nlm"], smooth=params["smooth"], chunks=",".join(str(c) for c in params["chunks"]),
        tile=params["tile"], memory_gb=None, device=params["device"],
        labels_store=str(work / "labels.zarr"), maps_store=str(work / "maps.zarr"),
    )
    _cli_segment.run_segment(args)
    mm = json.loads((work / "metrics.json").read_text())
    grp = zarr.open_group(str(work / "maps.zarr"), mode="r")
    thickness = np.asarray(grp["thickness_um"][...], dtype=np.float64)
    metrics = _segment_metrics(mm)
    if scan.truth_thickness is not None:
        metrics.update(_truth_metrics(thickness, scan.truth_thickness))
    figures = sorted(p.name for p in work.glob("*.png"))
    return {"metrics": metrics, "figures": figures, "outputs": ["maps.zarr", "labels.zarr", "metrics.json"],
            "inputs": {"volume": str(volume)}}


_ROUGHNESS_UNITS = {"Ra": ("um", "arithmetic mean height"), "Rq": ("um", "RMS height"),
                    "Sa": ("um", "areal arithmetic mean height"), "Sq": ("um", "areal RMS height"),
                    "Sz": ("um", "maximum height"), "Ssk": ("1", "skewness"), "Sku": ("1", "kurtosis"),
                    "Sdr": ("fraction", "developed interfacial area ratio"),
                    "correlation_length_um": ("um", "autocorrelation length")}


def _segment_metrics(mm: dict) -> dict:
    """The maps' metrics.json as ``{name: {value, unit, description}}``."""
    out = {}
    t = mm.get("thickness_um", {})
    for k in ("mean", "std", "median", "min", "max"):
        if k in t:
            out[f"thickness_{k}"] = _metric(t[k], "um", f"{k} Li thickness over the electrode")
    simple = {"capacity_mah_cm2_mean": ("capacity", "mAh cm^-2", "mean areal capacity of the Li layer"),
              "coulometric_mah_cm2": ("capacity_coulometric", "mAh cm^-2", "coulometric capacity (config)"),
              "capacity_ratio_to_coulometric": ("capacity_ratio", "1", "measured / coulometric capacity"),
              "li_coverage_fraction": ("li_coverage", "fraction", "electrode area covered by Li"),
              "voxel_size_um": ("voxel_size", "um", "voxel edge"),
              "n_columns": ("n_columns", "count", "lateral columns inside the electrode")}
    for key, (name, unit, desc) in simple.items():
        if isinstance(mm.get(key), (int, float)):
            out[name] = _metric(mm[key], unit, desc)
    for side in ("interface_bottom", "interface_top"):
        d = mm.get(side)
        if not isinstance(d, dict):
            continue
        if "tilt_rad" in d:
            out[f"{side}_tilt"] = _metric(d["tilt_rad"], "radians", f"{side.replace('_', ' ')} tilt")
        if "mean_height_um" in d:
            out[f"{side}_height"] = _metric(d["mean_height_um"], "um", f"{side.replace('_', ' ')} mean height")
        for k, v in (d.get("roughness") or {}).items():
            if k in _ROUGHNESS_UNITS and isinstance(v, (int, float)):
                unit, desc = _ROUGHNESS_UNITS[k]
                out[f"{side}_{k.removesuffix('_um')}"] = _metric(v, unit, f"{side.replace('_', ' ')} {desc}")
    return out


def _truth_metrics(measured: np.ndarray, truth_path: Path) -> dict:
    try:
        truth = np.asarray(np.load(truth_path, allow_pickle=False), dtype=np.float64)
    except Exception as exc:
        raise InputError(f"{truth_path}: not a readable .npy thickness map ({type(exc).__name__})") from None
    if truth.shape != measured.shape:
        raise InputError(f"{truth_path}: truth map has shape {truth.shape}, the measured map {measured.shape}")
    both = np.isfinite(measured) & np.isfinite(truth)
    n_truth = int(np.isfinite(truth).sum())
    if not both.any():
        return {"thickness_coverage": _metric(0.0, "fraction", "truth pixels with a measured thickness")}
    diff = measured[both] - truth[both]
    return {
        "thickness_mae": _metric(float(np.abs(diff).mean()), "um", "mean absolute error against the truth map"),
        "thickness_bias": _metric(float(diff.mean()), "um", "mean (measured - true) thickness"),
        "thickness_rmse": _metric(float(np.sqrt(np.mean(diff**2))), "um", "RMS error against the truth map"),
        "thickness_true_mean": _metric(float(truth[both].mean()), "um", "mean true thickness (same pixels)"),
        "thickness_coverage": _metric(float(both.sum() / max(n_truth, 1)), "fraction",
                                      "truth pixels with a measured thickness"),
    }


def inscribed_square(thickness_um: np.ndarray) -> tuple[slice, slice]:
    """The largest axis-aligned square inside a circular electrode (NaN outside), as slices.

    Parameters
    ----------
    thickness_um : (y, x) ndarray
        Thickness map (um), NaN outside the electrode.

    Returns
    -------
    (slice, slice)
        Rows and columns of the square (one pixel inside the inscribed square's edge).
    """
    yy, xx = np.nonzero(np.isfinite(thickness_um))
    if yy.size == 0:
        raise InputError("thickness map has no finite pixel: nothing to crop")
    cy, cx = (yy.min() + yy.max()) / 2, (xx.min() + xx.max()) / 2
    half = int(0.5 * (yy.max() - yy.min()) / np.sqrt(2)) - 1
    if half < 2:
        raise InputError(f"electrode too small for crop 'inscribed' ({yy.max() - yy.min() + 1} pixels across)")
    return slice(int(cy) - half, int(cy) + half), slice(int(cx) - half, int(cx) + half)


def _run_strip(cfg, scan, work: Path, params: dict, upstream: dict, progress: bool) -> dict:
    from . import _cli_strip
    from ._maps_io import read_thickness_map

    maps = cfg.scan_dir(scan) / "segment" / "maps.zarr"
    thickness, px, _ = read_thickness_map(maps)
    src = str(maps)
    if params["crop"] == "inscribed":
        rows, cols = inscribed_square(thickness)
        np.save(work / "thickness_square_um.npy", thickness[rows, cols])
        src = str(work / "thickness_square_um.npy")
    args = argparse.Namespace(
        maps=src, out=str(work), overwrite=True, pixel_size_um=px,
        fractions=",".join(repr(float(f)) for f in params["fractions"]), step_um=params["step_um"],
        connectivity=params["connectivity"], current_density=params["current_density_ma_cm2"],
        electrolyte_thickness=params["electrolyte_thickness_um"], conductivity=params["conductivity_s_cm"],
        exchange_current_density=params["exchange_current_density_ma_cm2"],
        critical_current_density=params["critical_current_density_ma_cm2"],
        lateral_boundary=params["lateral_boundary"], device=params["device"],
    )
    with _quiet_stdout(not progress):
        _cli_strip.run(args)
    info = json.loads((work / "stripping.json").read_text())
    metrics = {
        "mean_thickness": _metric(info["mean_thickness_um"], "um", "mean Li thickness of the stripped map"),
        "capacity": _metric(info["capacity_mah_cm2"], "mAh cm^-2", "Li capacity of the stripped map"),
    }
    for row in info["fractions"]:
        pct = round(100 * row["stripped_fraction"])
        metrics[f"active_fraction_{pct}pct"] = _metric(row["active_fraction"], "fraction",
                                                       f"area still covered at {pct} % stripped")
        metrics[f"current_multiplier_{pct}pct"] = _metric(row["current_multiplier"], "x applied",
                                                          f"mean current multiplier at {pct} % stripped")
        metrics[f"n_islands_{pct}pct"] = _metric(row["n_islands"], "count", f"Li islands at {pct} % stripped")
    cur = _read_json(work / "current.json")
    if isinstance(cur, dict):
        for row in cur.get("fractions", []) if isinstance(cur.get("fractions"), list) else []:
            if isinstance(row, dict) and "stripped_fraction" in row and "max_rel" in row:
                pct = round(100 * row["stripped_fraction"])
                metrics[f"max_local_current_{pct}pct"] = _metric(row["max_rel"], "x applied",
                                                                 f"peak local current at {pct} % stripped")
        fe = cur.get("first_exceed")
        if isinstance(fe, dict) and "stripped_fraction" in fe:
            metrics["critical_exceeded_at"] = _metric(fe["stripped_fraction"], "fraction",
                                                      "stripped fraction where the critical current is first exceeded")
    outputs = [n for n in _cli_strip.OUTPUT_FILES if (work / n).exists() and not n.endswith(".png")]
    figures = [n for n in ("stripping_curves.png", "stripping_snapshots.png", "current_maps.png")
               if (work / n).exists()]
    return {"metrics": metrics, "figures": figures, "outputs": outputs,
            "inputs": {"maps": str(maps)}}


def _compton_peak_kev(scan: ScanConfig) -> float:
    """Compton line energy (keV) at the geometry's central angle (default 115 keV at 90 degrees)."""
    e0, theta = 115.0, math.pi / 2
    if scan.geometry is not None:
        import compton

        geo = compton.read_geometry(scan.geometry)
        e0, theta = float(geo.e0_kev), float(geo.theta_centre_rad)
    return e0 / (1.0 + e0 / 510.99895 * (1.0 - math.cos(theta)))


def _run_hexitec(cfg, scan, work: Path, params: dict, upstream: dict, progress: bool) -> dict:
    import compton

    from . import _cli_hexitec

    args = argparse.Namespace(
        input=str(scan.frames), output=str(work / "cube.zarr"), dark=params["dark_adu"],
        threshold=params["threshold_adu"],
        gradients=str(scan.gradients) if scan.gradients else None,
        intercepts=str(scan.intercepts) if scan.intercepts else None, next_frame=params["next_frame"],
        charge_sharing=params["charge_sharing"], window=params["window"], bin_width=params["bin_width_kev"],
        e_min=params["e_min_kev"], e_max=params["e_max_kev"], device=params["device"],
        chunk_frames=params["chunk_frames"], fit_calibration=None, no_figures=False, overwrite=True,
        quiet=not progress,
    )
    with _quiet_stdout(not progress):
        _cli_hexitec.run(args)
    cube = compton.read_cube(work / "cube.zarr")
    metrics = {
        "frames": _metric(int(cube.n_frames), "count", "frames processed"),
        "events_accepted": _metric(int(np.sum(cube.accepted)), "count", "events accepted"),
        "events_rejected": _metric(int(np.sum(cube.rejected)), "count", "events rejected (charge sharing)"),
        "counts": _metric(int(np.sum(cube.counts)), "count", "counts in the cube"),
    }
    if scan.gradients is not None:
        expected = _compton_peak_kev(scan)
        c = cube.bin_centres_kev
        window = (c > expected - 8) & (c < expected + 8)
        if window.any():
            peak = float(c[window][np.argmax(cube.summed_spectrum[window])])
            metrics["compton_peak"] = _metric(peak, "keV", "maximum of the summed spectrum near the Compton line")
            metrics["compton_peak_expected"] = _metric(expected, "keV", "Compton line at the central angle")
    return {"metrics": metrics, "figures": ["cube_spectrum.png", "cube_counts.png"], "outputs": ["cube.zarr"],
            "inputs": {k: str(v) for k, v in _raw_inputs(scan, "hexitec").items()}}


def _run_compton(cfg, scan, work: Path, params: dict, upstream: dict, progress: bool) -> dict:
    import csv

    import zarr

    from . import _cli_compton

    cube = cfg.scan_dir(scan) / "hexitec" / "cube.zarr" if scan.frames is not None else scan.cube
    args = argparse.Namespace(
        input=str(cube), output=str(work / "emf.zarr"), geometry=str(scan.geometry) if scan.geometry else None,
        e0=params["e0_kev"], theta_deg=params["theta_deg"], low=params["low_au"], high=params["high_au"],
        background=params["background"], sideband=[list(s) for s in params["sidebands_kev"]] or None,
        fwhm=params["fwhm_kev"], regions=str(scan.regions) if scan.regions else None, fractions=None,
        calibration=None, device=params["device"], no_figures=False, overwrite=True,
    )
    with _quiet_stdout(not progress):
        _cli_compton.run(args)
    g = zarr.open_group(str(work / "emf.zarr"), mode="r")
    emf = np.asarray(g["emf"][...])
    sigma = np.asarray(g["sigma_emf"][...])
    ok = np.isfinite(emf)
    metrics = {
        "emf_median": _metric(float(np.nanmedian(emf)) if ok.any() else None, "a.u.", "median EMF over the pixels"),
        "sigma_emf_median": _metric(float(np.nanmedian(sigma)) if ok.any() else None, "a.u.",
                                    "median EMF uncertainty (1 sigma)"),
        "finite_pixels": _metric(int(ok.sum()), "count", "pixels with a finite EMF"),
    }
    outputs = ["emf.zarr"]
    if (work / "emf_regions.csv").exists():
        outputs.append("emf_regions.csv")
        with open(work / "emf_regions.csv") as fh:
            for r in csv.DictReader(fh):
                metrics[f"emf_region_{r['region']}"] = _metric(float(r["emf"]), "a.u.",
                                                               f"EMF of region {r['region']} (window sums)")
                metrics[f"sigma_emf_region_{r['region']}"] = _metric(float(r["sigma"]), "a.u.",
                                                                     f"EMF uncertainty of region {r['region']}")
    return {"metrics": metrics, "figures": ["emf_maps.png", "emf_profiles.png"], "outputs": outputs,
            "inputs": {"cube": str(cube), **{k: str(v) for k, v in _raw_inputs(scan, "compton").items()}}}


_STAGE_FUNCS = {
    "reconstruct": _run_reconstruct,
    "segment": _run_segment,
    "strip": _run_strip,
    "hexitec": _run_hexitec,
    "compton": _run_compton,
}


# ============================================================================ run one stage

def _check_upstream(cfg, scan, stage, cache, memo) -> dict:
    """Upstream records; InputError when an upstream stage is missing or out of date."""
    records = {}
    for up in _upstream(cfg, scan, stage):
        status = stage_status(cfg, scan.id, up, _cache=cache, _memo=memo)
        if status != "complete":
            why = "has not run" if status == "missing" else "is out of date (its inputs or parameters changed)"
            raise InputError(f"{cfg.source}: scan {scan.id!r}: stage {stage!r} needs {up!r}, which {why}; "
                             f"run it first (anodescope run CONFIG --scan {scan.id} --stage {up})")
        records[up] = _read_json(cfg.scan_dir(scan) / up / STAGE_JSON)
    return records


def _finalize(partial: Path, final: Path) -> None:
    """Rename a complete partial folder to its final name; an old final folder goes last."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def run_stage(config, scan_id: str, stage: str, *, force: bool = False, progress: bool = True) -> dict:
    """Run one stage of one scan (or skip it when it is complete with the same hash).

    Parameters
    ----------
    config : StudyConfig, str, Path or dict
        The study (a path or dict is loaded with :func:`pipelines.config.load_config`).
    scan_id : str
        Scan identifier.
    stage : str
        One of ``reconstruct, segment, strip, hexitec, compton, report`` that applies to the
        scan's kind.
    force : bool
        Run even when the stage is complete with the same hash.
    progress : bool
        Print one line per stage and show progress bars.

    Returns
    -------
    dict
        The stage record (the content of ``<out>/<scan>/<stage>/stage.json``), with an extra
        key ``"status"``: ``"skipped"`` or ``"done"``.

    Raises
    ------
    InputError
        Unknown scan or stage, a stage that does not apply to the scan, or an upstream stage
        that is missing or out of date.
    """
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    log = _Log(progress)
    scan = cfg.scan(scan_id)
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r} (expected one of {', '.join(STAGES)})")
    if stage not in scan.chain:
        raise InputError(f"{cfg.source}: scan {scan.id!r} ({scan.kind}) has no stage {stage!r} "
                         f"(its stages: {', '.join(scan.chain)})")
    cache = _HashCache(cfg.out)
    memo = {}
    try:
        upstream = _check_upstream(cfg, scan, stage, cache, memo)
        h = stage_hash(cfg, scan.id, stage, _cache=cache, _memo=memo)
    finally:
        cache.save()
    scan_dir = cfg.scan_dir(scan)
    final = scan_dir / stage
    old = _read_json(final / STAGE_JSON)
    if not force and isinstance(old, dict) and old.get("hash") == h:
        log(scan.id, stage, "skipped (complete, same inputs and parameters)")
        return {**old, "status": "skipped"}
    scan_dir.mkdir(parents=True, exist_ok=True)
    with _stage_lock(scan_dir, scan.id, stage):
        return _execute(cfg, scan, stage, h, upstream, cache, force=force, progress=progress, log=log)


@contextlib.contextmanager
def _stage_lock(scan_dir: Path, scan_id: str, stage: str):
    """An exclusive lock on ``<scan>/.<stage>.lock`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    path = scan_dir / f".{stage}.lock"
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"{scan_dir}: stage {stage!r} of scan {scan_id!r} is being run by another process "
                             f"(lock {path.name}); wait for it to finish") from None
        yield
    finally:
        fh.close()


def _execute(cfg, scan, stage, h, upstream, cache, *, force, progress, log) -> dict:
    scan_dir = cfg.scan_dir(scan)
    final = scan_dir / stage
    old = _read_json(final / STAGE_JSON)  # completed by another process while we waited?
    if not force and isinstance(old, dict) and old.get("hash") == h:
        log(scan.id, stage, "skipped (complete, same inputs and parameters)")
        return {**old, "status": "skipped"}
    params = _stage_parameters(cfg, scan, stage)
    started, t0 = _now(), time.perf_counter()
    if stage == "report":
        work = final
        (work / STAGE_JSON).unlink(missing_ok=True)
        log(scan.id, stage, "running")
        from .report import write_scan_report

        path = write_scan_report(scan_dir, stages=[s for s in scan.chain if s != "report"])
        result = {"metrics": {}, "figures": [], "inputs": {},
                  "outputs": [str(Path(path).relative_to(work)) if Path(path).is_relative_to(work) else str(path)]}
        if (work / "metrics.json").exists():
            result["outputs"].append("metrics.json")
    else:
        work = scan_dir / f"{stage}.partial"
        marker = _read_json(work / _PARTIAL_HASH) if work.exists() else None
        resume = (not force and stage == "reconstruct" and isinstance(marker, dict) and marker.get("hash") == h)
        if work.exists() and isinstance(marker, dict) and marker.get("hash") == h and (work / STAGE_JSON).exists():
            log(scan.id, stage, "finishing an interrupted run (complete partial folder)")
            _finalize(work, final)
            rec = _read_json(final / STAGE_JSON)
            return {**rec, "status": "done"}
        if work.exists() and not resume:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(work / _PARTIAL_HASH, {"hash": h, "stage": stage, "scan": scan.id})
        log(scan.id, stage, "resuming" if resume else "running")
        result = _STAGE_FUNCS[stage](cfg, scan, work, params, upstream, progress)
    seconds = time.perf_counter() - t0
    inputs = {}
    for k, v in result.get("inputs", {}).items():
        owner = next((rec for up, rec in upstream.items() if Path(v).is_relative_to(scan_dir / up)), None)
        inputs[k] = {"path": v, "hash": owner.get("hash") if owner else content_hash(v, cache=cache)}
    for up, rec in upstream.items():
        inputs[up] = {"path": str(scan_dir / up), "hash": rec.get("hash")}
    cache.save()
    record = {
        "stage": stage, "scan": scan.id, "kind": scan.kind, "hash": h, "inputs": inputs, "parameters": params,
        "versions": _versions(), "started": started, "finished": _now(), "seconds": round(seconds, 3),
        "metrics": result.get("metrics", {}), "figures": result.get("figures", []),
        "outputs": result.get("outputs", []),
    }
    _write_json_atomic(work / STAGE_JSON, record)
    if stage != "report":
        _finalize(work, final)
        (final / _PARTIAL_HASH).unlink(missing_ok=True)
    log(scan.id, stage, f"done in {seconds:.1f} s")
    return {**_jsonable(record), "status": "done"}


# ============================================================================ run a study

def _plan(cfg: StudyConfig, scans, stages, force: bool) -> list[tuple[str, str]]:
    """(scan, stage) pairs to run, in order; InputError before any work when something is off."""
    if scans:
        for s in scans:
            cfg.scan(s)
    selected = [s for s in cfg.scans if not scans or s.id in scans]
    if stages is not None:
        bad = [s for s in stages if s not in STAGES]
        if bad:
            raise InputError(f"unknown stage {bad[0]!r} (expected one of {', '.join(STAGES)})")
    from .config import check_input_files

    check_input_files(cfg, stages=stages)
    cache = _HashCache(cfg.out)
    memo = {}
    pairs = []
    try:
        for scan in selected:
            chosen = cfg.stages_for(scan, stages)
            for st in chosen:
                pairs.append((scan.id, st))
                for up in _upstream(cfg, scan, st):
                    if up in chosen:
                        continue
                    status = stage_status(cfg, scan.id, up, _cache=cache, _memo=memo)
                    if status != "complete":
                        why = "has not run" if status == "missing" else "is out of date"
                        raise InputError(
                            f"{cfg.source}: scan {scan.id!r}: stage {st!r} needs {up!r}, which {why} and is not "
                            f"selected; run it first (anodescope run CONFIG --scan {scan.id} --stage {up})")
    finally:
        cache.save()
    if not pairs:
        names = ", ".join(stages) if stages is not None else ", ".join(cfg.run)
        raise InputError(f"{cfg.source}: no stage to run: the selected scans have none of the stages {names}")
    return pairs


def _stage_task(cfg, scan_id, stage, force, progress, *upstream):
    """One (scan, stage) on a dask.distributed worker; dask work inside it (reconstruction
    slabs included) goes to the same cluster, the task seceding while it waits."""
    import dask

    try:
        from distributed import worker_client
    except ImportError:  # pragma: no cover - only called on a distributed worker
        return run_stage(cfg, scan_id, stage, force=force, progress=progress)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(worker_client(separate_thread=True))
        stack.enter_context(dask.config.set(scheduler=client))
        return run_stage(cfg, scan_id, stage, force=force, progress=progress)


def _run_distributed(cfg, pairs, client, force, progress, log) -> dict:
    from distributed import as_completed

    futures = {}
    by_key = {}
    for scan_id, stage in pairs:
        scan = cfg.scan(scan_id)
        deps = [futures[(scan_id, up)] for up in _upstream(cfg, scan, stage) if (scan_id, up) in futures]
        fut = client.submit(_stage_task, cfg, scan_id, stage, force, False, *deps, pure=False,
                            key=f"anodescope-{scan_id}-{stage}-{uuid.uuid4().hex[:8]}")
        futures[(scan_id, stage)] = fut
        by_key[fut.key] = (scan_id, stage)
    records = {}
    try:
        for fut in as_completed(list(futures.values())):
            scan_id, stage = by_key[fut.key]
            rec = fut.result()
            records[(scan_id, stage)] = rec
            status = rec.get("status")
            log(scan_id, stage, "skipped (complete, same inputs and parameters)" if status == "skipped" else
                f"done in {rec.get('seconds', 0):.1f} s" if status == "done" else status)
    except BaseException:
        for f in futures.values():
            f.cancel()
        raise
    return records


def run_study(config, *, scans=None, stages=None, scheduler=None, force: bool = False,
              progress: bool = True) -> dict:
    """Run the stages of a study's scans; complete stages with the same hash are skipped.

    Parameters
    ----------
    config : StudyConfig, str, Path or dict
        The study (a path or dict is loaded and checked first).
    scans : sequence of str, optional
        Scan ids to run (default: all). The study report (``<out>/report.html``) is
        rewritten only when no scan filter is given.
    stages : sequence of str, optional
        Stages to run (default: the config's ``run``). A selected stage's upstream stages
        that are not selected must already be complete.
    scheduler : str, optional
        dask.distributed scheduler address; default the config's ``dask.scheduler``, else
        the local threaded scheduler. With a scheduler every (scan, stage) is one task,
        scans run in parallel on the cluster.
    force : bool
        Rerun the selected stages even when complete.
    progress : bool
        One line per stage and progress bars.

    Returns
    -------
    dict
        The study summary also written to ``<out>/study.json``: the resolved config and,
        per scan, the records of its complete stages.

    Raises
    ------
    InputError
        Before any work starts: unknown scan or stage, missing input file, an upstream
        stage missing or out of date.

    Examples
    --------
    >>> run_study("study.yaml", stages=["reconstruct"])   # doctest: +SKIP
    """
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    pairs = _plan(cfg, scans, stages, force)
    log = _Log(progress)
    cfg.out.mkdir(parents=True, exist_ok=True)
    address = scheduler if scheduler is not None else cfg.scheduler
    from .cluster import connect

    with connect(address) as client:
        if client is None:
            for scan_id, stage in pairs:
                run_stage(cfg, scan_id, stage, force=force, progress=progress)
        else:
            if progress:
                print(f"dask.distributed scheduler {client.scheduler.address}: {len(pairs)} stage tasks",
                      flush=True)
            _run_distributed(cfg, pairs, client, force, progress, log)
    study = write_study_json(cfg)
    # the study report covers every scan: rebuild it on whole-study runs only, not for each
    # scan's report job of a batch (the Snakemake workflow has its own study-report rule)
    if scans is None and any(st == "report" for _, st in pairs):
        from .report import write_study_report

        write_study_report(cfg.out)
        if progress:
            print(f"study report: {cfg.out / 'report.html'}", flush=True)
    return study


def write_study_json(cfg: StudyConfig) -> dict:
    """Collect every complete stage record into ``<out>/study.json`` and return it."""
    scans = {}
    for scan in cfg.scans:
        recs = {}
        for stage in scan.chain:
            rec = _read_json(cfg.scan_dir(scan) / stage / STAGE_JSON)
            if isinstance(rec, dict):
                recs[stage] = rec
        scans[scan.id] = {"kind": scan.kind, "stages": recs}
    study = {"study": cfg.study, "written": _now(), "config": cfg.to_dict(), "scans": scans}
    cfg.out.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(cfg.out / "study.json", study)
    return study
