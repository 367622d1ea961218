"""Study configs for ``anodescope run``: load, validate, resolve paths, fill defaults.

A study is one YAML file (schema: ``pipelines/workflow/schemas/config.schema.yaml``)::

    study: anode-free-demo
    out: results                       # relative to the YAML file
    scans:                             # or  scan_sheet: scans.tsv
      - {id: plated, kind: tomo, projections: data/plated.h5, capacity_mah_cm2: 4.9}
      - {id: xcs_soc50, kind: xcs, cube: data/xcs.zarr, geometry: data/geometry.yaml}
    stages:
      reconstruct: {algorithm: fourier, ring_size: 7}
    run: [reconstruct, segment, strip, compton, report]
    dask: {scheduler: null}

:func:`load_config` checks everything a run needs before any work starts (unknown keys,
values, missing files) and raises :class:`pipelines._errors.InputError` with a message
naming the YAML file, the key path and the value, e.g.
``study.yaml: stages.segment.medain: unknown key (allowed: chunks, closing, ...)``.
"""

from __future__ import annotations

import copy
import csv
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ._errors import InputError

__all__ = ["SCHEMA_PATH", "STAGES", "ScanConfig", "StudyConfig", "load_config", "load_schema", "stage_defaults"]

#: the JSON schema (YAML) shared with the Snakefile
SCHEMA_PATH = Path(__file__).resolve().parent / "workflow" / "schemas" / "config.schema.yaml"

#: every stage, in run order
STAGES = ("reconstruct", "segment", "strip", "hexitec", "compton", "report")

#: scan keys holding paths (resolved relative to the YAML file)
PATH_KEYS = ("projections", "truth_thickness", "frames", "cube", "gradients", "intercepts", "geometry", "regions")


@lru_cache(maxsize=1)
def _schema_cached() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_schema() -> dict:
    """The study-config JSON schema (draft 2020-12) as a dict (a fresh copy)."""
    return copy.deepcopy(_schema_cached())


def stage_defaults(stage: str) -> dict:
    """Default parameters of one stage, from the schema's ``default`` values.

    Parameters
    ----------
    stage : str
        One of :data:`STAGES`.

    Returns
    -------
    dict
        ``{parameter: default}``.

    Examples
    --------
    >>> stage_defaults("reconstruct")["algorithm"]
    'fourier'
    """
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r} (expected one of {', '.join(STAGES)})")
    schema = _schema_cached()
    props = schema["$defs"][stage].get("properties", {})
    out = {}
    for key, spec in props.items():
        if "default" in spec:
            out[key] = copy.deepcopy(spec["default"])
        elif "$ref" in spec:
            ref = schema["$defs"][spec["$ref"].rsplit("/", 1)[-1]]
            if "default" in ref:
                out[key] = copy.deepcopy(ref["default"])
    return out


@dataclass(frozen=True)
class ScanConfig:
    """One scan of a study, paths absolute.

    Attributes
    ----------
    id : str
        Scan identifier (folder name under the output folder).
    kind : {"tomo", "xcs"}
        Tomography scan or X-ray Compton scattering acquisition.
    projections, truth_thickness, frames, cube, gradients, intercepts, geometry, regions : Path or None
        Input files (see the schema); None when absent.
    capacity_mah_cm2 : float or None
        Coulometric capacity (mAh cm^-2) to compare the measured one with.
    """

    id: str
    kind: str
    projections: Path | None = None
    truth_thickness: Path | None = None
    capacity_mah_cm2: float | None = None
    frames: Path | None = None
    cube: Path | None = None
    gradients: Path | None = None
    intercepts: Path | None = None
    geometry: Path | None = None
    regions: Path | None = None

    @property
    def chain(self) -> tuple[str, ...]:
        """The stages that apply to this scan, in order."""
        if self.kind == "tomo":
            return ("reconstruct", "segment", "strip", "report")
        if self.frames is not None and self.geometry is None:
            # frames without a scattering geometry: a detector / calibration acquisition,
            # processed into a spectral cube only (no Compton profiles or EMF)
            return ("hexitec", "report")
        return (("hexitec",) if self.frames is not None else ()) + ("compton", "report")

    def upstream(self, stage: str) -> tuple[str, ...]:
        """The stages whose results ``stage`` reads (report: every other stage of the chain)."""
        chain = self.chain
        if stage not in chain:
            return ()
        i = chain.index(stage)
        if stage == "report":
            return chain[:i]
        return chain[i - 1:i]

    def to_dict(self) -> dict:
        """The scan as a JSON-ready dict (paths as strings, absent keys left out)."""
        out = {}
        for key in ("id", "kind", "capacity_mah_cm2") + PATH_KEYS:
            v = getattr(self, key)
            if v is not None:
                out[key] = str(v) if isinstance(v, Path) else v
        return out


@dataclass(frozen=True)
class StudyConfig:
    """A validated study: scans, per-stage parameters (defaults filled in), stages to run.

    Attributes
    ----------
    study : str
        Study name.
    out : Path
        Absolute output folder.
    scans : tuple of ScanConfig
        The scans, in the order of the config.
    stages : dict
        ``{stage: parameters}`` for every stage of :data:`STAGES`, defaults filled in.
    run : tuple of str
        Stages to run, in chain order.
    scheduler : str or None
        dask.distributed scheduler address, or None for the local threaded scheduler.
    source : str
        Name of the config (the YAML path, or ``"config"`` for a dict), used in messages.
    base_dir : Path
        Folder relative paths were resolved against.
    """

    study: str
    out: Path
    scans: tuple
    stages: dict
    run: tuple
    scheduler: str | None = None
    source: str = "config"
    base_dir: Path = field(default_factory=Path.cwd)

    def scan(self, scan_id: str) -> ScanConfig:
        """The scan named ``scan_id`` (InputError naming the known ids otherwise)."""
        for s in self.scans:
            if s.id == scan_id:
                return s
        raise InputError(f"{self.source}: no scan {scan_id!r} (scans: {', '.join(s.id for s in self.scans)})")

    def stages_for(self, scan: ScanConfig | str, stages=None) -> tuple[str, ...]:
        """Stages of ``scan``'s chain that are selected (``stages`` or the config's ``run``)."""
        scan = self.scan(scan) if isinstance(scan, str) else scan
        wanted = self.run if stages is None else tuple(stages)
        return tuple(s for s in scan.chain if s in wanted)

    def scan_dir(self, scan: ScanConfig | str) -> Path:
        """``<out>/<scan id>``."""
        return self.out / (scan if isinstance(scan, str) else scan.id)

    def to_dict(self) -> dict:
        """The resolved config as a JSON-ready dict (absolute paths, defaults filled in)."""
        return {"study": self.study, "out": str(self.out), "scans": [s.to_dict() for s in self.scans],
                "stages": copy.deepcopy(self.stages), "run": list(self.run),
                "dask": {"scheduler": self.scheduler}}


# ----------------------------------------------------------------------------- messages

def _key_path(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _where(source: str, parts) -> str:
    path = _key_path(parts)
    return f"{source}: {path}" if path else source


def _schema_at(schema: dict, path) -> dict:
    """The schema of the object at ``path`` in an instance (follows properties/items/$ref)."""
    root = _schema_cached()
    node = schema
    for p in path:
        while "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        if isinstance(p, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(p, {})
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _error_message(err, source: str, instance: dict) -> str:
    """One line for a jsonschema error: file, key path, what was expected."""
    path = list(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(_schema_at(_schema_cached(), path).get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        key = extra[0] if extra else "?"
        return f"{_where(source, path + [key])}: unknown key (allowed: {', '.join(allowed)})"
    if err.validator == "required":
        m = re.match(r"'([^']+)' is a required property", err.message)
        key = m.group(1) if m else err.message
        return f"{_where(source, path + [key])}: missing required key"
    if err.schema is False:  # a key excluded for this scan kind
        node = instance
        for p in path:
            node = node[p] if isinstance(node, (dict, list)) else None
        if isinstance(node, dict) and "kind" in node:
            kind = node["kind"]
            banned = []
            for rule in _schema_cached()["$defs"]["scan"].get("allOf", []):
                if rule.get("if", {}).get("properties", {}).get("kind", {}).get("const") == kind:
                    banned += [k for k, v in rule.get("then", {}).get("properties", {}).items() if v is False]
            keys = [k for k in banned if k in node]
            if keys:
                return f"{_where(source, path + [keys[0]])}: not allowed for a scan of kind {kind!r}"
        return f"{_where(source, path)}: not allowed here"
    if err.validator == "anyOf" and path and path[-1] == "center":
        return f"{_where(source, path)}: {err.instance!r} is not 'auto' or a number (detector columns)"
    if err.validator in ("if", "then", "allOf", "anyOf", "oneOf") and err.context:
        # a conditional: report its most specific sub-error
        best = sorted(err.context, key=lambda e: (-len(list(e.absolute_path)), str(e.message)))[0]
        if best.validator == "required" and err.validator == "anyOf":
            keys = [re.match(r"'([^']+)'", e.message).group(1) for e in err.context if e.validator == "required"]
            return f"{_where(source, path)}: needs one of the keys {', '.join(keys)}"
        return _error_message(best, source, instance)
    return f"{_where(source, path)}: {err.message}"


# ----------------------------------------------------------------------------- scan sheet

def _number_keys() -> set:
    scan = _schema_cached()["$defs"]["scan"]["properties"]
    out = set()
    for key, spec in scan.items():
        if spec.get("$ref", "").endswith("/positive") or spec.get("type") == "number":
            out.add(key)
    return out


def read_scan_sheet(path: Path, *, source: str) -> list[dict]:
    """Read a scan sheet (TSV with a header of scan keys; an empty cell = key absent).

    Parameters
    ----------
    path : Path
        TSV file.
    source : str
        Name of the YAML file, for messages.

    Returns
    -------
    list of dict
        One dict per row; numeric columns (``capacity_mah_cm2``) converted to float.
    """
    if not path.is_file():
        raise InputError(f"{source}: scan_sheet: file not found: {path}")
    numbers = _number_keys()
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t") if r and not (r[0].startswith("#"))]
    if not rows:
        raise InputError(f"{path}: empty scan sheet (expected a header line of scan keys, e.g. id, kind, ...)")
    header = [h.strip() for h in rows[0]]
    scans = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(header):
            raise InputError(f"{path}: line {lineno}: {len(row)} cells but the header has {len(header)} columns")
        d = {}
        for key, cell in zip(header, row):
            cell = cell.strip()
            if not cell:
                continue
            if key in numbers:
                try:
                    cell = float(cell)
                except ValueError:
                    raise InputError(f"{path}: line {lineno}: column {key}: {cell!r} is not a number") from None
            d[key] = cell
        scans.append(d)
    if not scans:
        raise InputError(f"{path}: no scans (only a header line)")
    return scans


# ----------------------------------------------------------------------------- load

def _validate(doc: dict, source: str) -> None:
    import jsonschema

    if not isinstance(doc, dict):
        raise InputError(f"{source}: expected a mapping of keys (study, out, scans, ...), got {type(doc).__name__}")
    if "scans" in doc and "scan_sheet" in doc:
        raise InputError(f"{source}: give either 'scans' or 'scan_sheet', not both")
    if "scans" not in doc and "scan_sheet" not in doc:
        raise InputError(f"{source}: scans: missing required key (a list of scans, or scan_sheet: FILE.tsv)")
    schema = _schema_cached()
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(doc))
    if not errors:
        return
    errors = [e for e in errors if e.validator != "oneOf" or e.absolute_path]  # scans/scan_sheet handled above
    if not errors:
        return
    # the deepest error first: it is the most specific (wrong value of a stage key, ...)
    errors.sort(key=lambda e: (-len(list(e.absolute_path)), e.validator != "additionalProperties"))
    raise InputError(_error_message(errors[0], source, doc))


def _resolve(base: Path, value) -> Path:
    p = Path(str(value)).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def load_config(path_or_dict, *, check_inputs: bool = True, base_dir=None) -> StudyConfig:
    """Load, validate and resolve a study config.

    Parameters
    ----------
    path_or_dict : str, Path or dict
        The YAML file, or the config as a dict (paths relative to ``base_dir``).
    check_inputs : bool
        Check that every input file named by a scan exists (default True).
    base_dir : str or Path, optional
        Folder that relative paths refer to (default: the YAML's folder, or the current
        folder for a dict).

    Returns
    -------
    StudyConfig
        Scans with absolute paths and every stage's parameters with defaults filled in.

    Raises
    ------
    InputError
        A wrong key, a bad value or a missing input file; the message names the YAML file
        and the key path (``scans[1].projections``), the value or the file.

    Examples
    --------
    >>> cfg = load_config({"study": "s", "out": "res", "scans": [
    ...     {"id": "a", "kind": "xcs", "cube": "a.zarr"}]}, check_inputs=False)
    >>> cfg.stages["compton"]["low_au"], cfg.stages_for("a")
    (1.0, ('compton', 'report'))
    """
    import yaml

    if isinstance(path_or_dict, dict):
        doc = copy.deepcopy(path_or_dict)
        source = "config"
        base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
    else:
        path = Path(path_or_dict)
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        source = path.name
        base = Path(base_dir).resolve() if base_dir is not None else path.resolve().parent
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise InputError(f"{source}: not valid YAML{where}: {problem}") from None
        if doc is None:
            raise InputError(f"{source}: empty config (expected study, out, scans, ...)")
    _validate(doc, source)

    scan_source = source
    if "scan_sheet" in doc:
        sheet = _resolve(base, doc["scan_sheet"])
        raw_scans = read_scan_sheet(sheet, source=source)
        scan_source = sheet.name
        _validate({k: v for k, v in doc.items() if k != "scan_sheet"} | {"scans": raw_scans}, scan_source)
    else:
        raw_scans = doc["scans"]

    seen = {}
    scans = []
    for i, s in enumerate(raw_scans):
        if s["id"] in seen:
            raise InputError(f"{scan_source}: scans[{i}].id: {s['id']!r} is already used by scans[{seen[s['id']]}]")
        seen[s["id"]] = i
        kw = {k: (_resolve(base, v) if k in PATH_KEYS else v) for k, v in s.items()}
        if kw.get("capacity_mah_cm2") is not None:
            kw["capacity_mah_cm2"] = float(kw["capacity_mah_cm2"])
        scans.append(ScanConfig(**kw))

    stages = {}
    for stage in STAGES:
        params = stage_defaults(stage)
        params.update(copy.deepcopy((doc.get("stages") or {}).get(stage) or {}))
        stages[stage] = params
    rp = stages["compton"]
    if rp["high_au"] <= rp["low_au"]:
        raise InputError(f"{source}: stages.compton.high_au: {rp['high_au']} must be larger than low_au "
                         f"({rp['low_au']})")
    if rp["background"] != "none" and not rp["sidebands_kev"]:
        raise InputError(f"{source}: stages.compton.sidebands_kev: background {rp['background']!r} needs at "
                         "least one side band [lo_kev, hi_kev]")
    hp = stages["hexitec"]
    if hp["e_max_kev"] <= hp["e_min_kev"]:
        raise InputError(f"{source}: stages.hexitec.e_max_kev: {hp['e_max_kev']} must be larger than e_min_kev "
                         f"({hp['e_min_kev']})")
    sp = stages["strip"]
    if sp["critical_current_density_ma_cm2"] is not None and sp["current_density_ma_cm2"] is None:
        raise InputError(f"{source}: stages.strip.critical_current_density_ma_cm2 needs current_density_ma_cm2")
    rec = stages["reconstruct"]
    try:
        from recon.chunked import parse_memory

        parse_memory(rec["memory_limit"])
    except ImportError:  # pragma: no cover - recon is part of the package
        pass
    except ValueError as exc:
        raise InputError(f"{source}: stages.reconstruct.memory_limit: {rec['memory_limit']!r} is not a memory "
                         f"size such as '1GB' ({exc})") from None
    if "li" not in stages["segment"]["phases"] and "lithium" not in stages["segment"]["phases"]:
        raise InputError(f"{source}: stages.segment.phases: {stages['segment']['phases']} names no lithium "
                         "layer ('li')")

    run = tuple(s for s in STAGES if s in (doc.get("run") or STAGES))
    cfg = StudyConfig(study=doc["study"], out=_resolve(base, doc["out"]), scans=tuple(scans), stages=stages,
                      run=run, scheduler=(doc.get("dask") or {}).get("scheduler"), source=source, base_dir=base)
    if check_inputs:
        check_input_files(cfg, scan_source=scan_source)
    return cfg


def check_input_files(cfg: StudyConfig, *, scan_source: str | None = None, stages=None) -> None:
    """Raise InputError naming the first input file a selected stage needs that is missing.

    Parameters
    ----------
    cfg : StudyConfig
        The study.
    scan_source : str, optional
        Name used in messages (the YAML or the scan sheet).
    stages : sequence of str, optional
        Stages that will run (default: the config's ``run``); only their inputs are checked,
        but every path named in a scan must exist.
    """
    source = scan_source or cfg.source
    for i, scan in enumerate(cfg.scans):
        for key in PATH_KEYS:
            p = getattr(scan, key)
            if p is not None and not p.exists():
                raise InputError(f"{source}: scans[{i}].{key}: file not found: {p}")
        if scan.kind == "xcs" and "compton" in cfg.stages_for(scan, stages) and scan.geometry is None:
            raise InputError(f"{source}: scans[{i}].geometry: missing required key (the compton stage of "
                             f"xcs scan {scan.id!r} needs the geometry YAML)")
