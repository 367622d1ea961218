"""HTML reports of a study: one page per scan and one for the study, with a metrics JSON.

A scan folder holds one ``<stage>/stage.json`` per completed stage (docs: issue 7 output
layout): metrics as ``{name: {value, unit, description}}``, figures relative to the stage
folder in display order, and the provenance (inputs with hashes, parameters, versions,
times). :func:`write_scan_report` turns them into ``<scan>/report/index.html`` and
``<scan>/report/metrics.json``; :func:`write_study_report` writes ``<out>/report.html``
linking every scan report, with a summary table across scans and study-level figures
(thickness maps of the cell states side by side, EMF against state of charge, stripping
curves) drawn from the stage outputs.

The pages are self-contained (inline CSS, no script), link their figures with relative
paths, and escape every text that comes from the files. A stage that did not run is listed
as "not run"; nothing missing makes a report fail.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
from pathlib import Path
from urllib.parse import quote

from ._errors import InputError

__all__ = ["write_scan_report", "write_study_report", "STAGE_ORDER"]

#: the processing stages in chain order, per scan kind
STAGE_ORDER = ("reconstruct", "segment", "strip", "hexitec", "compton")
KIND_STAGES = {"tomo": ("reconstruct", "segment", "strip"), "xcs": ("hexitec", "compton")}
STAGE_JSON = "stage.json"
REPORT_DIR = "report"
STUDY_FIGURES = "report_figures"

#: captions of the figures the stages write (others get their file name)
CAPTIONS = {
    "volume_slice.png": "Reconstructed slices of the volume (attenuation).",
    "volume_center.png": "Rotation-centre quick-look: reconstructions around the found centre.",
    "thickness_map.png": "Li thickness map (µm colour bar).",
    "thickness_histogram.png": "Histogram of the Li thickness (µm).",
    "capacity_map.png": "Areal capacity map (mAh cm⁻²).",
    "topology_maps.png": "Topology of the Li interfaces relative to their fitted planes (µm) and roughness.",
    "stripping_curves.png": "Virtual stripping: active area, islands and current multiplier against stripped capacity.",
    "stripping_snapshots.png": "Virtual stripping snapshots: lithium left at the chosen stripped fractions.",
    "current_maps.png": "Local current density on the remaining lithium (multiples of the applied current).",
    "cube_spectrum.png": "Summed HEXITEC spectrum of the calibrated cube (keV).",
    "cube_counts.png": "Accepted events per detector pixel.",
    "emf_maps.png": "EMF map and its one-sigma uncertainty per pixel.",
    "emf_profiles.png": "Compton profiles J(p_z) with the valence and core windows.",
}

#: metric names that compare a result with a known truth (shown in the accuracy box)
_TRUTH = re.compile(r"(_mae$|_rmse$|_bias$|_error|_true|true_|truth|expected|^thickness_coverage$)", re.I)


# --------------------------------------------------------------------------- reading


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _stage_records(scan_dir: Path) -> dict:
    """{stage: record dict | "unreadable"} for every ``<stage>/stage.json`` of a scan folder."""
    out = {}
    for sub in sorted(p for p in scan_dir.iterdir() if p.is_dir() and p.name != REPORT_DIR):
        f = sub / STAGE_JSON
        if f.is_file():
            rec = _read_json(f)
            out[sub.name] = rec if isinstance(rec, dict) else "unreadable"
    return out


def _chain_of(config: dict | None) -> list[str] | None:
    """The processing stages of a scan from its study config entry (None if unknown)."""
    if not config or config.get("kind") not in KIND_STAGES:
        return None
    import dataclasses

    from .config import ScanConfig

    names = {f.name for f in dataclasses.fields(ScanConfig)}
    try:
        scan = ScanConfig(**{k: v for k, v in config.items() if k in names})
    except TypeError:
        return None
    return [s for s in scan.chain if s != "report"]


def _scan_info(scan_dir: Path, *, scan_id: str | None = None, kind: str | None = None,
               expected: list[str] | None = None) -> dict:
    """Scan id, kind and the stages in display order, each with a status and its record."""
    records = _stage_records(scan_dir)
    good = [r for r in records.values() if isinstance(r, dict)]
    scan_id = scan_id or next((str(r["scan"]) for r in good if r.get("scan")), scan_dir.name)
    kind = kind or next((str(r["kind"]) for r in good if r.get("kind")), None)
    if kind is None:
        found = set(records)
        kind = "tomo" if found & set(KIND_STAGES["tomo"]) else "xcs" if found & set(KIND_STAGES["xcs"]) else "unknown"
    expected = list(expected) if expected is not None else list(KIND_STAGES.get(kind, STAGE_ORDER))
    names = expected + [s for s in STAGE_ORDER if s in records and s not in expected]
    names += sorted(s for s in records if s not in names)
    stages = []
    for name in names:
        rec = records.get(name)
        status = "complete" if isinstance(rec, dict) else "unreadable" if rec == "unreadable" else "not run"
        stages.append({"stage": name, "status": status, "record": rec if isinstance(rec, dict) else {}})
    return {"scan": scan_id, "kind": kind, "stages": stages}


def _is_truth(name: str, metrics: dict) -> bool:
    """A metric comparing with a known truth, or the measured value of an ``<name>_expected`` pair."""
    return bool(_TRUTH.search(name)) or f"{name}_expected" in metrics


def _metrics_of(record: dict) -> dict:
    """The record's metrics as {name: {value, unit, description}} (bare values get unit '')."""
    out = {}
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        return out
    for name, m in metrics.items():
        if isinstance(m, dict) and "value" in m:
            out[str(name)] = {"value": m.get("value"), "unit": str(m.get("unit", "")),
                              "description": str(m.get("description", ""))}
        else:
            out[str(name)] = {"value": m, "unit": "", "description": ""}
    return out


# --------------------------------------------------------------------------- HTML pieces

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:1em 2em;color:#1d232b;line-height:1.4}
h1{border-bottom:2px solid #2b6cb0;padding-bottom:.2em}h2{margin-top:1.6em;color:#2b4c7e}
table{border-collapse:collapse;margin:.6em 0 1em}th,td{border:1px solid #cfd6df;padding:.25em .6em;
text-align:left;vertical-align:top;font-size:.92em}th{background:#edf2f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.complete{color:#1a7f37;font-weight:600}.notrun{color:#8a6d00;font-weight:600}.unreadable{color:#b42318;font-weight:600}
.accuracy{background:#fff8e1;border:2px solid #e0a800;border-radius:6px;padding:.6em 1em;margin:1em 0}
.accuracy h2{margin-top:0;color:#7a5a00}
figure{display:inline-block;margin:.5em 1em .8em 0;max-width:100%;vertical-align:top}
figure img{max-width:100%;border:1px solid #cfd6df}figcaption{font-size:.88em;color:#3c4653;max-width:560px}
code,pre{font-family:Menlo,Consolas,monospace;font-size:.85em}pre{background:#f6f8fa;padding:.5em;overflow-x:auto}
details{margin:.4em 0}.muted{color:#66707c}
"""


def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _fmt(value) -> str:
    """A metric value as text: 4 significant digits for floats, JSON for containers."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _unit(unit: str) -> str:
    return {"um": "µm", "1": "–", "": ""}.get(unit, unit)


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _metrics_table(metrics: dict, *, stage_col: bool = False) -> str:
    if not metrics:
        return "<p class=\"muted\">No metrics.</p>"
    head = ("<th>stage</th>" if stage_col else "") + "<th>metric</th><th>value</th><th>unit</th><th>description</th>"
    rows = []
    for name, m in metrics.items():
        stage = f"<td>{_e(m.get('stage', ''))}</td>" if stage_col else ""
        rows.append(f"<tr>{stage}<td><code>{_e(m.get('name', name))}</code></td>"
                    f"<td class=\"num\">{_e(_fmt(m['value']))}</td><td>{_e(_unit(m['unit']))}</td>"
                    f"<td>{_e(m['description'])}</td></tr>")
    return f"<table><tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"


def _status(status: str) -> str:
    cls = {"complete": "complete", "not run": "notrun"}.get(status, "unreadable")
    return f"<span class=\"{cls}\">{_e(status)}</span>"


def _href(*parts: str) -> str:
    """Relative URL from path parts (each percent-encoded), HTML-escaped."""
    return _e("/".join(quote(str(p), safe="") if p not in ("..", ".") else p for p in parts))


def _safe_figure(stage_dir: Path, name) -> str | None:
    """The figure's path relative to the stage folder if it is a file inside it, else None."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or ".." in Path(name).parts:
        return None
    path = stage_dir / name
    return name if path.is_file() else None


# --------------------------------------------------------------------------- scan report


def _atomic_write(path: Path, text: str) -> None:
    """Write through a temporary file of a unique name and a rename (safe with concurrent writers)."""
    import uuid

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_scan_report(scan_dir, *, stages=None) -> Path:
    """Write ``<scan_dir>/report/index.html`` and ``<scan_dir>/report/metrics.json``.

    Reads every ``<scan_dir>/<stage>/stage.json``. The page holds the scan id and kind, a
    table of the stages (status, finish time, seconds, hash), a highlighted "accuracy against
    ground truth" box with the metrics that compare with a known truth (e.g.
    ``thickness_mae`` in um), and per stage its metrics (value and unit), its figures in
    display order with captions, and its provenance (inputs with hashes, parameters,
    versions). Stages that did not run are listed as "not run"; unreadable records as
    "unreadable".

    Parameters
    ----------
    scan_dir : str or Path
        The scan's output folder ``<out>/<scan>``.
    stages : sequence of str, optional
        The processing stages of this scan's chain, in order (default: from
        ``<out>/study.json`` when present, else every stage of the scan's kind); only these
        and the stages that ran are listed.

    Returns
    -------
    Path
        The HTML page.

    Raises
    ------
    InputError
        ``scan_dir`` is not a folder.

    Examples
    --------
    >>> write_scan_report("results/plated")  # doctest: +SKIP
    PosixPath('results/plated/report/index.html')
    """
    scan_dir = Path(scan_dir)
    if not scan_dir.is_dir():
        raise InputError(f"{scan_dir}: scan folder not found (expected <out>/<scan> with <stage>/stage.json)")
    if stages is None:
        study = _read_json(scan_dir.parent / "study.json")
        entry = next((c for c in ((study or {}).get("config") or {}).get("scans", [])
                      if isinstance(c, dict) and c.get("id") == scan_dir.name), None)
        stages = _chain_of(entry)
    info = _scan_info(scan_dir, expected=stages)
    report_dir = scan_dir / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)

    flat, stages_json, accuracy = {}, {}, {}
    for st in info["stages"]:
        rec, name = st["record"], st["stage"]
        metrics = _metrics_of(rec)
        for k, m in metrics.items():
            flat[f"{name}.{k}"] = {**m, "stage": name, "name": k}
            if _is_truth(k, metrics):
                accuracy[f"{name}.{k}"] = {**m, "stage": name, "name": k}
        stages_json[name] = {
            "status": st["status"],
            **{k: rec.get(k) for k in ("hash", "started", "finished", "seconds", "inputs", "parameters", "versions",
                                       "figures", "outputs") if k in rec},
            "metrics": metrics,
        }
    metrics_doc = {"scan": info["scan"], "kind": info["kind"], "written": _now(),
                   "metrics": {k: {x: v[x] for x in ("value", "unit", "description", "stage")}
                               for k, v in flat.items()},
                   "stages": stages_json}
    _atomic_write(report_dir / "metrics.json", json.dumps(metrics_doc, indent=2, default=str) + "\n")

    body = [f"<h1>Scan {_e(info['scan'])}</h1>",
            f"<p>kind <b>{_e(info['kind'])}</b> · report written {_e(metrics_doc['written'])} · "
            f"<a href=\"metrics.json\">metrics.json</a> (all metrics with units and provenance)</p>"]
    if accuracy:
        body.append("<div class=\"accuracy\"><h2>Accuracy against ground truth</h2>"
                    + _metrics_table(accuracy, stage_col=True) + "</div>")
    rows = []
    for st in info["stages"]:
        rec = st["record"]
        h = str(rec.get("hash", ""))
        rows.append(f"<tr><td><a href=\"#stage-{_e(st['stage'])}\">{_e(st['stage'])}</a></td>"
                    f"<td>{_status(st['status'])}</td><td>{_e(rec.get('finished', ''))}</td>"
                    f"<td class=\"num\">{_e(_fmt(rec.get('seconds')) if 'seconds' in rec else '')}</td>"
                    f"<td><code title=\"{_e(h)}\">{_e(h[:12])}</code></td></tr>")
    body.append("<h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>finished (UTC)</th>"
                "<th>seconds</th><th>hash</th></tr>\n" + "\n".join(rows) + "\n</table>")
    for st in info["stages"]:
        name, rec = st["stage"], st["record"]
        body.append(f"<h2 id=\"stage-{_e(name)}\">{_e(name)} — {_status(st['status'])}</h2>")
        if st["status"] != "complete":
            body.append("<p class=\"muted\">This stage has not produced a record "
                        + ("(its stage.json could not be read)." if st["status"] == "unreadable" else "(not run).")
                        + "</p>")
            continue
        body.append(_metrics_table(_metrics_of(rec)))
        figs = rec.get("figures") if isinstance(rec.get("figures"), list) else []
        for fig in figs:
            rel = _safe_figure(scan_dir / name, fig)
            if rel is None:
                body.append(f"<p class=\"unreadable\">figure {_e(fig)} listed but not found in {_e(name)}/</p>")
                continue
            caption = CAPTIONS.get(Path(rel).name, Path(rel).stem.replace("_", " "))
            src = _href("..", name, *Path(rel).parts)
            body.append(f"<figure><a href=\"{src}\"><img src=\"{src}\" alt=\"{_e(rel)}\"></a>"
                        f"<figcaption><b>{_e(rel)}</b>: {_e(caption)}</figcaption></figure>")
        body.append(_provenance(rec))
    _atomic_write(report_dir / "index.html", _page(f"anodescope scan {info['scan']}", body))
    return report_dir / "index.html"


def _provenance(rec: dict) -> str:
    parts = ["<details><summary>Provenance</summary>"]
    inputs = rec.get("inputs") if isinstance(rec.get("inputs"), dict) else {}
    if inputs:
        rows = []
        for k, v in inputs.items():
            path, h = (v.get("path"), v.get("hash")) if isinstance(v, dict) else (v, None)
            rows.append(f"<tr><td>{_e(k)}</td><td><code>{_e(path)}</code></td><td><code>{_e(h)}</code></td></tr>")
        parts.append("<table><tr><th>input</th><th>path</th><th>hash (sha256)</th></tr>" + "".join(rows) + "</table>")
    parts.append(f"<p>started {_e(rec.get('started', '?'))}, finished {_e(rec.get('finished', '?'))}; "
                 f"hash <code>{_e(rec.get('hash', ''))}</code></p>")
    for key in ("parameters", "versions", "outputs"):
        if rec.get(key):
            parts.append(f"<p>{key}</p><pre>{_e(json.dumps(rec[key], indent=1, default=str))}</pre>")
    parts.append("</details>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- study report

#: headline metrics of the summary table: (stage, metric, label)
_HEADLINE = (
    ("reconstruct", "center", "centre"),
    ("segment", "thickness_mean", "mean thickness"),
    ("segment", "thickness_mae", "thickness MAE vs truth"),
    ("segment", "thickness_bias", "thickness bias vs truth"),
    ("segment", "capacity", "capacity"),
    ("segment", "li_coverage", "Li coverage"),
    ("segment", "interface_top_Sq", "top interface Sq"),
    ("strip", "active_fraction_64pct", "active area at 64 %"),
    ("strip", "current_multiplier_85pct", "current x at 85 %"),
    ("hexitec", "events_accepted", "events accepted"),
    ("hexitec", "compton_peak", "Compton peak"),
    ("compton", "emf_median", "median EMF"),
    ("compton", "emf_region_1", "EMF region 1"),
    ("compton", "emf_region_2", "EMF region 2"),
    ("compton", "emf_region_3", "EMF region 3"),
)


def _study_scans(out: Path) -> tuple[str, list[dict], dict]:
    """(study name, [{id, kind, dir, config}], config) from study.json, else the scan folders."""
    study = _read_json(out / "study.json")
    if isinstance(study, dict):
        cfg = study.get("config") if isinstance(study.get("config"), dict) else {}
        scans = cfg.get("scans") if isinstance(cfg.get("scans"), list) else None
        if scans is None and isinstance(study.get("scans"), dict):
            scans = [{"id": k, "kind": (v or {}).get("kind")} for k, v in study["scans"].items()]
        if scans:
            listed = [{"id": str(s.get("id")), "kind": s.get("kind"), "dir": out / str(s.get("id")), "config": s}
                      for s in scans if isinstance(s, dict) and s.get("id")]
            return str(study.get("study") or cfg.get("study") or out.name), listed, cfg
    listed = [{"id": p.name, "kind": None, "dir": p, "config": {}} for p in sorted(out.iterdir())
              if p.is_dir() and (any(p.glob(f"*/{STAGE_JSON}")) or (p / REPORT_DIR).is_dir())]
    return out.name, listed, {}


def _find_truth(out: Path, cfg: dict, truth) -> tuple[dict | None, Path | None]:
    if truth is None:
        return None, None
    if truth == "auto":
        candidates = []
        src = cfg.get("source")
        if isinstance(src, str):
            candidates.append(Path(src).parent / "truth.json")
        candidates += [out / "truth.json", out.parent / "truth.json"]
    else:
        candidates = [Path(truth)]
        if not candidates[0].is_file():
            raise InputError(f"{truth}: truth file not found (expected the truth.json of a sample study)")
    for c in candidates:
        doc = _read_json(c)
        if isinstance(doc, dict):
            return doc, c.parent
    return None, None


def _resolve(path, base: Path | None) -> Path | None:
    if not path:
        return None
    p = Path(str(path))
    if not p.is_absolute() and base is not None:
        p = base / p
    return p if p.exists() else None


def _thickness_figure(out: Path, scans: list, cfg: dict, truth: dict | None, truth_dir: Path | None,
                      fig_dir: Path) -> tuple[Path | None, str]:
    import numpy as np

    from . import _report_figures as rf

    maps, px, truths = {}, {}, {}
    base = Path(cfg["source"]).parent if isinstance(cfg.get("source"), str) else None
    tstates = ((truth or {}).get("tomography") or {}).get("states") or {}
    for s in scans:
        store = s["dir"] / "segment" / "maps.zarr"
        if not store.exists():
            continue
        try:
            import zarr

            grp = zarr.open_group(str(store), mode="r")
            maps[s["id"]] = np.asarray(grp["thickness_um"][...], dtype=np.float64)
            px[s["id"]] = grp.attrs.get("pixel_size_um")
        except Exception:  # an unreadable store is skipped, the report still comes out
            continue
        tpath = _resolve(s["config"].get("truth_thickness"), base)
        if tpath is None and s["id"] in tstates:
            tpath = _resolve(tstates[s["id"]].get("truth_thickness"), truth_dir)
        if tpath is not None and tpath.suffix == ".npy":
            try:
                truths[s["id"]] = np.load(tpath, allow_pickle=False).astype(np.float64)
            except (OSError, ValueError):
                pass
    if not maps:
        return None, ""
    path = rf.thickness_states(maps, fig_dir / "thickness_states.png", pixel_size_um=px, truths=truths or None,
                               title="Li thickness of the tomography scans")
    ids = list(maps)
    cap = ("Measured Li thickness maps of " + ", ".join(ids) + " with one shared µm colour bar"
           + (f"; last column: {ids[-1]} − {ids[0]}" if len(ids) > 1 else "")
           + ("; lower rows: the sample's truth and the error (measured − true, µm)" if truths else "") + ".")
    return path, cap


def _soc_of(scan_id: str, truth_scans: dict):
    entry = truth_scans.get(scan_id) or {}
    soc = entry.get("state_of_charge")
    if isinstance(soc, dict) and isinstance(soc.get("value"), (int, float)):
        return float(soc["value"])
    m = re.search(r"soc[_-]?(\d+)", scan_id, re.I)
    return int(m.group(1)) / 100.0 if m else None


def _emf_figure(scans: list, truth: dict | None, fig_dir: Path) -> tuple[Path | None, str]:
    from . import _report_figures as rf

    xcs = (truth or {}).get("xcs") or {}
    names = {str(k): v for k, v in (xcs.get("regions") or {}).items()}
    tscans = xcs.get("scans") or {}
    points = []
    for s in scans:
        rec = _read_json(s["dir"] / "compton" / STAGE_JSON)
        if not isinstance(rec, dict):
            continue
        metrics = _metrics_of(rec)
        for name, m in metrics.items():
            mm = re.fullmatch(r"emf_region_(\d+)", name)
            if not mm or not isinstance(m["value"], (int, float)):
                continue
            region = mm.group(1)
            label = names.get(region, f"region {region}")
            sig = metrics.get(f"sigma_emf_region_{region}", {}).get("value")
            exp = (((tscans.get(s["id"]) or {}).get("expected_emf") or {}).get(label) or {}).get("value")
            points.append({"scan": s["id"], "region": label, "emf": float(m["value"]),
                           "sigma": float(sig) if isinstance(sig, (int, float)) else 0.0,
                           "expected": exp, "soc": _soc_of(s["id"], tscans)})
    if not points:
        return None, ""
    ids = list(dict.fromkeys(p["scan"] for p in points))
    use_soc = all(p["soc"] is not None for p in points)
    for p in points:
        p["x"] = p["soc"] if use_soc else ids.index(p["scan"])
    path = rf.emf_vs_soc(points, fig_dir / "emf_vs_soc.png", xlabel="state of charge" if use_soc else "scan")
    cap = ("EMF of each region (window sums) against " + ("state of charge" if use_soc else "scan")
           + " with one-sigma error bars" + ("; open squares: expected EMF of the simulated sample"
                                              if any(p["expected"] is not None for p in points) else "") + ".")
    return path, cap


def _stripping_figure(scans: list, fig_dir: Path) -> tuple[Path | None, str]:
    import csv

    from . import _report_figures as rf

    curves = {}
    for s in scans:
        f = s["dir"] / "strip" / "stripping_curve.csv"
        if not (s["dir"] / "strip" / STAGE_JSON).is_file() or not f.is_file():
            continue
        try:
            with open(f, newline="") as fh:
                rows = list(csv.DictReader(fh))
            c = {k: [float(r[k]) for r in rows] for k in ("stripped_fraction", "active_fraction")}
            if rows and "current_multiplier" in rows[0]:
                c["current_multiplier"] = [float(r["current_multiplier"]) for r in rows]
        except (OSError, KeyError, ValueError):
            continue
        if c["stripped_fraction"]:
            curves[s["id"]] = c
    if not curves:
        return None, ""
    path = rf.stripping_overlay(curves, fig_dir / "stripping_overlay.png")
    return path, "Virtual stripping of each measured thickness map: active area and mean current multiplier."


def _read_thickness(scan_dir: Path):
    """Measured thickness map (um) of a scan's segment stage, or None."""
    import numpy as np

    store = scan_dir / "segment" / "maps.zarr"
    if not (scan_dir / "segment" / STAGE_JSON).is_file() or not store.exists():
        return None
    try:
        import zarr

        return np.asarray(zarr.open_group(str(store), mode="r")["thickness_um"][...], dtype=np.float64)
    except Exception:  # unreadable store: no comparison, the report still comes out
        return None


def _gap_comparison(scan: dict, entry: dict, truth_dir: Path | None) -> dict | None:
    """MAE of the measured map against lithium plus the gap it left (voids are dark like Li)."""
    import numpy as np

    path = _resolve(entry.get("li_plus_gap"), truth_dir)
    measured = _read_thickness(scan["dir"])
    if path is None or measured is None:
        return None
    try:
        gap = np.load(path, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError):
        return None
    both = np.isfinite(gap) & np.isfinite(measured)
    if gap.shape != measured.shape or not both.any():
        return None
    return {"stage": f"{scan['id']} / segment", "name": "thickness_mae_li_plus_gap",
            "value": float(np.abs(measured[both] - gap[both]).mean()), "unit": "um",
            "description": "mean absolute error against lithium plus the void it left on stripping "
                           "(absorption contrast shows both as the dark layer)"}


def _truth_comparisons(infos: list, truth: dict | None, truth_dir: Path | None = None) -> list[dict]:
    """Metrics against a sample study's truth.json: centre, Li-plus-gap thickness, region EMF."""
    if not truth:
        return []
    rows = []
    tomo = truth.get("tomography") or {}
    centre = (tomo.get("true_center") or {}).get("value")
    xcs = truth.get("xcs") or {}
    names = {str(k): v for k, v in (xcs.get("regions") or {}).items()}
    for s, info in infos:
        recs = {st["stage"]: _metrics_of(st["record"]) for st in info["stages"]}
        entry = (tomo.get("states") or {}).get(s["id"]) or {}
        if entry.get("li_plus_gap"):
            row = _gap_comparison(s, entry, truth_dir)
            if row is not None:
                rows.append(row)
        c = recs.get("reconstruct", {}).get("center", {}).get("value")
        if isinstance(c, (int, float)) and isinstance(centre, (int, float)) and info["kind"] == "tomo":
            rows.append({"stage": f"{s['id']} / reconstruct", "name": "center_error", "value": float(c - centre),
                         "unit": "pixels", "description": f"found {c:.3f} − true {centre:.3f} (truth.json)"})
        expected = ((xcs.get("scans") or {}).get(s["id"]) or {}).get("expected_emf") or {}
        for name, m in recs.get("compton", {}).items():
            mm = re.fullmatch(r"emf_region_(\d+)", name)
            if not mm or not isinstance(m["value"], (int, float)):
                continue
            region = names.get(mm.group(1), f"region {mm.group(1)}")
            exp = (expected.get(region) or {}).get("value")
            if not isinstance(exp, (int, float)):
                continue
            sig = recs["compton"].get(f"sigma_emf_region_{mm.group(1)}", {}).get("value")
            z = (m["value"] - exp) / sig if isinstance(sig, (int, float)) and sig > 0 else float("nan")
            rows.append({"stage": f"{s['id']} / compton", "name": f"emf_error_{region}",
                         "value": float(m["value"] - exp), "unit": "a.u.",
                         "description": f"measured {m['value']:.4f} − expected {exp:.4f} ({z:+.1f} σ)"})
    return rows


def write_study_report(out_dir, *, truth="auto") -> Path:
    """Write ``<out_dir>/report.html``: every scan report linked, a summary table and study figures.

    The scans come from ``<out_dir>/study.json`` (written by ``anodescope run``) when present,
    else from the scan folders holding stage records. A scan report that does not exist yet is
    written first. Study figures go to ``<out_dir>/report_figures/``: the measured thickness
    maps of the tomography scans side by side with a shared µm colour bar and the difference
    of the last and first (with the truth and error rows when truth maps are known), EMF per
    region against state of charge with error bars (expected values when known) and the
    stripping curves of all scans. The study's metrics with units and provenance are also
    collected into ``<out_dir>/report_metrics.json``.

    Parameters
    ----------
    out_dir : str or Path
        The study's output folder (``out`` of the study config).
    truth : "auto", str, Path or None
        The ``truth.json`` of a sample study (:func:`pipelines.samples.make_sample_study`):
        "auto" looks beside the study config, in ``out_dir`` and in its parent; None uses no
        truth beyond the scans' own truth maps.

    Returns
    -------
    Path
        ``<out_dir>/report.html``.

    Raises
    ------
    InputError
        ``out_dir`` is not a folder, or an explicit ``truth`` file does not exist.

    Examples
    --------
    >>> write_study_report("sample_study/results")  # doctest: +SKIP
    PosixPath('sample_study/results/report.html')
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"{out}: study output folder not found")
    name, scans, cfg = _study_scans(out)
    truth_doc, truth_dir = _find_truth(out, cfg, truth)
    fig_dir = out / STUDY_FIGURES
    fig_dir.mkdir(exist_ok=True)

    infos, summary = [], {}
    for s in scans:
        if s["dir"].is_dir():
            index = s["dir"] / REPORT_DIR / "index.html"
            newest = max((f.stat().st_mtime for f in s["dir"].glob(f"*/{STAGE_JSON}")
                          if f.parent.name != REPORT_DIR), default=0.0)
            if not index.is_file() or index.stat().st_mtime < newest:
                write_scan_report(s["dir"])
            info = _scan_info(s["dir"], scan_id=s["id"], kind=s["kind"], expected=_chain_of(s.get("config")))
        else:
            info = {"scan": s["id"], "kind": s["kind"] or "unknown",
                    "stages": [{"stage": st, "status": "not run", "record": {}}
                               for st in (_chain_of(s.get("config")) or KIND_STAGES.get(s["kind"], STAGE_ORDER))]}
        infos.append((s, info))
        summary[s["id"]] = {"kind": info["kind"], "stages": {
            st["stage"]: {"status": st["status"], "hash": st["record"].get("hash"),
                          "metrics": _metrics_of(st["record"])} for st in info["stages"]}}

    figures = []
    for make in (lambda: _thickness_figure(out, scans, cfg, truth_doc, truth_dir, fig_dir),
                 lambda: _emf_figure(scans, truth_doc, fig_dir),
                 lambda: _stripping_figure(scans, fig_dir)):
        path, caption = make()
        if path is not None:
            figures.append((path, caption))

    columns = [(st, m, label) for st, m, label in _HEADLINE
               if any(m in summary[s["id"]]["stages"].get(st, {}).get("metrics", {}) for s, _ in infos)]
    head = "".join(f"<th>{_e(label)}</th>" for _, _, label in columns)
    rows = []
    for s, info in infos:
        done = sum(st["status"] == "complete" for st in info["stages"])
        link = f"{_href(s['id'], REPORT_DIR, 'index.html')}"
        cells = []
        for st, m, _ in columns:
            metric = summary[s["id"]]["stages"].get(st, {}).get("metrics", {}).get(m)
            if metric is None:
                cells.append("<td class=\"muted\">–</td>")
                continue
            sig = summary[s["id"]]["stages"].get(st, {}).get("metrics", {}).get(f"sigma_{m}")
            text = _fmt(metric["value"]) + (f" ± {_fmt(sig['value'])}" if sig else "")
            cells.append(f"<td class=\"num\">{_e(text)} {_e(_unit(metric['unit']))}</td>")
        status = ", ".join(f"{st['stage']}: {st['status']}" for st in info["stages"])
        rows.append(f"<tr><td><a href=\"{link}\">{_e(s['id'])}</a></td><td>{_e(info['kind'])}</td>"
                    f"<td title=\"{_e(status)}\">{done}/{len(info['stages'])}</td>{''.join(cells)}</tr>")
    body = [f"<h1>Study {_e(name)}</h1>",
            f"<p>{len(infos)} scans · report written {_e(_now())} · "
            "<a href=\"report_metrics.json\">report_metrics.json</a> (all metrics with units and provenance)</p>",
            "<h2>Scans</h2><table><tr><th>scan</th><th>kind</th><th>stages complete</th>" + head + "</tr>\n"
            + "\n".join(rows) + "\n</table>"]
    acc = []
    for s, info in infos:
        for st in info["stages"]:
            metrics = _metrics_of(st["record"])
            for k, m in metrics.items():
                if _is_truth(k, metrics):
                    acc.append({**m, "stage": f"{s['id']} / {st['stage']}", "name": k})
    comparisons = _truth_comparisons(infos, truth_doc, truth_dir)
    acc += comparisons
    if acc:
        body.append("<div class=\"accuracy\"><h2>Accuracy against ground truth</h2>"
                    + _metrics_table({str(i): m for i, m in enumerate(acc)}, stage_col=True) + "</div>")
    if figures:
        body.append("<h2>Study figures</h2>")
        for path, caption in figures:
            src = _href(STUDY_FIGURES, path.name)
            body.append(f"<figure><a href=\"{src}\"><img src=\"{src}\" alt=\"{_e(path.name)}\"></a>"
                        f"<figcaption><b>{_e(path.name)}</b>: {_e(caption)}</figcaption></figure>")
    doc = {"study": name, "written": _now(), "truth": str(truth_dir / "truth.json") if truth_dir else None,
           "truth_comparisons": comparisons,
           "figures": [f"{STUDY_FIGURES}/{p.name}" for p, _ in figures], "scans": summary}
    _atomic_write(out / "report_metrics.json", json.dumps(doc, indent=2, default=str) + "\n")
    _atomic_write(out / "report.html", _page(f"anodescope study {name}", body))
    return out / "report.html"
