"""Study config loading: schema validation messages, scan sheets, paths, defaults."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipelines._errors import InputError
from pipelines.config import SCHEMA_PATH, STAGES, load_config, load_schema, stage_defaults


@pytest.fixture()
def study(tmp_path) -> Path:
    """A study folder with real (empty) input files and a valid study.yaml."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("plated.h5", "truth.npy", "frames.h5", "gradients.txt", "intercepts.txt", "geometry.yaml",
                 "regions.npy"):
        (data / name).write_bytes(b"x")
    (data / "xcs.zarr").mkdir()
    doc = {
        "study": "demo",
        "out": "results",
        "scans": [
            {"id": "plated", "kind": "tomo", "projections": "data/plated.h5", "truth_thickness": "data/truth.npy",
             "capacity_mah_cm2": 4.9},
            {"id": "xcs_soc50", "kind": "xcs", "frames": "data/frames.h5", "gradients": "data/gradients.txt",
             "intercepts": "data/intercepts.txt", "geometry": "data/geometry.yaml", "regions": "data/regions.npy"},
            {"id": "xcs_cube", "kind": "xcs", "cube": "data/xcs.zarr", "geometry": "data/geometry.yaml"},
        ],
        "stages": {"reconstruct": {"algorithm": "fbp", "ring_size": 9}, "segment": {"median": 1}},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (tmp_path / "pristine.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp_path


def _write(folder: Path, doc: dict) -> Path:
    p = folder / "study.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _doc(folder: Path) -> dict:
    return yaml.safe_load((folder / "pristine.yaml").read_text())


def _error(folder: Path, change) -> str:
    doc = _doc(folder)
    change(doc)
    with pytest.raises(InputError) as exc:
        load_config(_write(folder, doc))
    return str(exc.value)


def test_valid_config_resolves_paths_and_fills_defaults(study):
    cfg = load_config(study / "study.yaml")
    assert cfg.study == "demo"
    assert cfg.out == (study / "results").resolve()
    plated = cfg.scan("plated")
    assert plated.projections == (study / "data" / "plated.h5").resolve()
    assert plated.capacity_mah_cm2 == 4.9
    # given values win, everything else comes from the schema defaults
    assert cfg.stages["reconstruct"]["algorithm"] == "fbp"
    assert cfg.stages["reconstruct"]["ring_size"] == 9
    assert cfg.stages["reconstruct"]["center"] == "auto"
    assert cfg.stages["segment"]["median"] == 1
    assert cfg.stages["segment"]["phases"] == ["collector", "li", "electrolyte"]
    assert cfg.stages["strip"]["fractions"] == [0.64, 0.85, 0.95]
    assert cfg.stages["strip"]["crop"] == "inscribed"
    assert cfg.stages["hexitec"]["threshold_adu"] == 300
    assert cfg.run == STAGES
    assert cfg.scheduler is None
    # stage chains per kind
    assert cfg.stages_for("plated") == ("reconstruct", "segment", "strip", "report")
    assert cfg.stages_for("xcs_soc50") == ("hexitec", "compton", "report")
    assert cfg.stages_for("xcs_cube") == ("compton", "report")
    assert cfg.scan("xcs_soc50").upstream("compton") == ("hexitec",)
    assert cfg.scan("plated").upstream("report") == ("reconstruct", "segment", "strip")


def test_defaults_match_the_verbs_defaults():
    """Independent truth: the CLI verbs' own argparse defaults (where the study does not differ on purpose)."""
    from pipelines.cli import build_parser

    parser = build_parser()
    seg = parser.parse_args(["segment", "v.zarr"])
    d = stage_defaults("segment")
    assert d["method"] == seg.method and d["median"] == seg.median and d["smooth"] == seg.smooth
    assert d["level"] == seg.level and ",".join(d["phases"]) == seg.phases
    assert ",".join(str(c) for c in d["chunks"]) == seg.chunks
    strip = parser.parse_args(["strip", "m.npy"])
    s = stage_defaults("strip")
    assert ",".join(str(f) for f in s["fractions"]) == strip.fractions
    assert s["conductivity_s_cm"] == strip.conductivity and s["connectivity"] == strip.connectivity
    comp = parser.parse_args(["compton", "c.zarr", "-o", "e.zarr"])
    c = stage_defaults("compton")
    assert (c["low_au"], c["high_au"], c["fwhm_kev"], c["background"]) == (comp.low, comp.high, comp.fwhm,
                                                                          comp.background)
    hx = parser.parse_args(["hexitec", "f.h5", "-o", "c.zarr"])
    h = stage_defaults("hexitec")
    assert (h["bin_width_kev"], h["window"], h["e_min_kev"]) == (hx.bin_width, hx.window, hx.e_min)


def test_unknown_key_names_file_key_and_allowed(study):
    msg = _error(study, lambda d: d["stages"]["segment"].update(medain=3))
    assert msg.startswith("study.yaml: stages.segment.medain: unknown key (allowed: ")
    assert "median" in msg and "phases" in msg
    msg = _error(study, lambda d: d.update(outt="x"))
    assert msg.startswith("study.yaml: outt: unknown key")
    msg = _error(study, lambda d: d["scans"][1].update(projection="a.h5"))
    assert msg.startswith("study.yaml: scans[1].projection: unknown key")


def test_bad_values_name_key_and_value(study):
    msg = _error(study, lambda d: d["stages"]["reconstruct"].update(algorithm="fbpx"))
    assert msg == "study.yaml: stages.reconstruct.algorithm: 'fbpx' is not one of ['fourier', 'fbp']"
    msg = _error(study, lambda d: d["stages"]["reconstruct"].update(center="middle"))
    assert msg.startswith("study.yaml: stages.reconstruct.center: 'middle'")
    msg = _error(study, lambda d: d["stages"].update(strip={"fractions": [0.5, 1.5]}))
    assert msg.startswith("study.yaml: stages.strip.fractions[1]: 1.5")
    msg = _error(study, lambda d: d["scans"][0].update(id="bad id"))
    assert msg.startswith("study.yaml: scans[0].id: 'bad id'")
    msg = _error(study, lambda d: d["scans"][0].update(kind="ct"))
    assert msg.startswith("study.yaml: scans[0].kind: 'ct' is not one of")
    msg = _error(study, lambda d: d.update(run=["reconstruct", "segmnt"]))
    assert msg.startswith("study.yaml: run[1]: 'segmnt' is not one of")
    msg = _error(study, lambda d: d["stages"]["reconstruct"].update(memory_limit="lots"))
    assert msg.startswith("study.yaml: stages.reconstruct.memory_limit: 'lots'")
    msg = _error(study, lambda d: d["stages"].update(compton={"low_au": 3.0, "high_au": 2.0}))
    assert msg.startswith("study.yaml: stages.compton.high_au: 2.0 must be larger than low_au")
    msg = _error(study, lambda d: d["stages"]["segment"].update(phases=["collector", "electrolyte"]))
    assert msg.startswith("study.yaml: stages.segment.phases:") and "lithium" in msg


def test_missing_keys_and_kind_rules(study):
    msg = _error(study, lambda d: d["scans"][0].pop("projections"))
    assert msg == "study.yaml: scans[0].projections: missing required key"
    msg = _error(study, lambda d: d.pop("out"))
    assert msg == "study.yaml: out: missing required key"
    msg = _error(study, lambda d: d["scans"][2].pop("cube"))
    assert msg == "study.yaml: scans[2]: needs one of the keys frames, cube"
    msg = _error(study, lambda d: d["scans"][0].update(geometry="data/geometry.yaml"))
    assert msg == "study.yaml: scans[0].geometry: not allowed for a scan of kind 'tomo'"
    msg = _error(study, lambda d: d["scans"][2].pop("geometry"))
    assert msg.startswith("study.yaml: scans[2].geometry: missing required key")
    msg = _error(study, lambda d: d["scans"].append(copy.deepcopy(d["scans"][0])))
    assert msg == "study.yaml: scans[3].id: 'plated' is already used by scans[0]"
    msg = _error(study, lambda d: d.update(scan_sheet="scans.tsv"))
    assert "either 'scans' or 'scan_sheet'" in msg


def test_missing_input_file_is_named_with_absolute_path(study):
    (study / "data" / "gradients.txt").unlink()
    with pytest.raises(InputError) as exc:
        load_config(study / "study.yaml")
    want = (study / "data" / "gradients.txt").resolve()
    assert str(exc.value) == f"study.yaml: scans[1].gradients: file not found: {want}"
    load_config(study / "study.yaml", check_inputs=False)  # the check can be deferred


def test_yaml_syntax_and_empty_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("study: x\nscans: [\n")
    with pytest.raises(InputError, match=r"bad.yaml: not valid YAML at line"):
        load_config(p)
    p.write_text("")
    with pytest.raises(InputError, match="bad.yaml: empty config"):
        load_config(p)
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_scan_sheet(study):
    doc = _doc(study)
    doc.pop("scans")
    doc["scan_sheet"] = "scans.tsv"
    (study / "scans.tsv").write_text(
        "id\tkind\tprojections\tcapacity_mah_cm2\tcube\tgeometry\n"
        "plated\ttomo\tdata/plated.h5\t4.9\t\t\n"
        "xc\txcs\t\t\tdata/xcs.zarr\tdata/geometry.yaml\n"
    )
    cfg = load_config(_write(study, doc))
    assert [s.id for s in cfg.scans] == ["plated", "xc"]
    assert cfg.scan("plated").capacity_mah_cm2 == 4.9
    assert cfg.scan("plated").cube is None  # empty cell = absent
    assert cfg.scan("xc").cube == (study / "data" / "xcs.zarr").resolve()
    (study / "scans.tsv").write_text("id\tkind\tprojections\tcapacity_mah_cm2\nplated\ttomo\tdata/plated.h5\tlots\n")
    with pytest.raises(InputError, match=r"scans.tsv: line 2: column capacity_mah_cm2: 'lots' is not a number"):
        load_config(study / "study.yaml")
    (study / "scans.tsv").write_text("id\tkind\tprojection\nplated\ttomo\tdata/plated.h5\n")
    with pytest.raises(InputError, match=r"^scans.tsv: scans\[0\].projection: unknown key"):
        load_config(study / "study.yaml")
    (study / "scans.tsv").write_text("id\tkind\tprojections\nplated\ttomo\tdata/missing.h5\n")
    with pytest.raises(InputError, match=r"^scans.tsv: scans\[0\].projections: file not found: .*missing.h5"):
        load_config(study / "study.yaml")


INTERFACE_EXAMPLE = """
study: anode-free-demo
out: results
scans:
  - id: plated
    kind: tomo
    projections: data/plated.h5
    truth_thickness: data/plated_thickness_um.npy
    capacity_mah_cm2: 4.9
  - id: xcs_soc50
    kind: xcs
    frames: data/xcs_frames.h5
    cube: data/xcs_soc50.zarr
    gradients: data/gradients.txt
    intercepts: data/intercepts.txt
    geometry: data/xcs_geometry.yaml
    regions: data/xcs_regions.npy
stages:
  reconstruct: {algorithm: fourier, center: auto, rings: sorting, ring_size: 7, memory_limit: 1GB, device: auto}
  segment: {phases: [collector, li, electrolyte], method: multiotsu, median: 3}
  strip: {fractions: [0.64, 0.85, 0.95], current_density_ma_cm2: 0.5, electrolyte_thickness_um: 50,
          critical_current_density_ma_cm2: 2.0, lateral_boundary: mirror, crop: inscribed}
  hexitec: {threshold_adu: 300, charge_sharing: discriminate, bin_width_kev: 0.2, e_max_kev: 120}
  compton: {}
run: [reconstruct, segment, strip, hexitec, compton, report]
dask: {scheduler: null}
"""


def test_schema_is_closed_and_accepts_the_interface_example():
    """additionalProperties: false on every object schema; the documented example validates
    with jsonschema alone (as the Snakefile does) and a misspelt key does not."""
    import jsonschema

    schema = load_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    objects = []

    def walk(node, where):
        if isinstance(node, dict):
            if "properties" in node and not where.endswith(("/then", "/if")):
                objects.append(where)
                assert node.get("additionalProperties") is False, where
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(schema, "#")
    assert len(objects) >= 10  # root, stages, dask, scan and the six stage objects
    example = yaml.safe_load(INTERFACE_EXAMPLE)
    jsonschema.validate(example, schema)
    example["stages"]["hexitec"]["treshold_adu"] = 300
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)
    assert SCHEMA_PATH.is_file()


def test_dict_config_and_base_dir(tmp_path):
    (tmp_path / "c.zarr").mkdir()
    (tmp_path / "g.yaml").write_text("e0_kev: 115\n")
    cfg = load_config({"study": "s", "out": "o", "scans": [{"id": "a", "kind": "xcs", "cube": "c.zarr",
                                                              "geometry": "g.yaml"}],
                       "run": ["compton", "report"], "dask": {"scheduler": "tcp://h:8786"}}, base_dir=tmp_path)
    assert cfg.out == tmp_path.resolve() / "o"
    assert cfg.run == ("compton", "report")
    assert cfg.scheduler == "tcp://h:8786"
    assert cfg.to_dict()["scans"][0]["cube"] == str((tmp_path / "c.zarr").resolve())
