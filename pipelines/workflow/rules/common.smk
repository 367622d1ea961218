# Helpers of the anodescope workflow: the study, its scans, paths and per-stage settings.
# Functions only (Snakemake's lint wants them apart from the rules).

import json
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

def study_yaml():
    """The study YAML given with --configfile (absolute path)."""
    files = list(workflow.configfiles)
    if not files:
        raise WorkflowError(
            "anodescope workflow: no study config; run `anodescope workflow study.yaml` "
            "or pass `--configfile study.yaml` to snakemake"
        )
    return Path(files[-1])


def load_study():
    """The study (pipelines.config.StudyConfig) of the config file, input files not checked.

    Input files are Snakemake inputs: a missing one is reported by Snakemake for the
    job that needs it.
    """
    from pipelines._errors import InputError
    from pipelines.config import load_config

    try:
        return load_config(study_yaml(), check_inputs=False)
    except InputError as exc:
        raise WorkflowError(f"anodescope workflow: {exc}") from None


def study_path(path):
    """A path as this workflow names it: relative to the working folder when below it."""
    path = Path(path)
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def ids_of(kind, stage=None):
    """Scan ids of one kind (whose chain includes `stage` when given)."""
    return [
        s.id
        for s in STUDY.scans
        if s.kind == kind and (stage is None or stage in s.chain)
    ]


def only(ids):
    """A wildcard constraint matching exactly these scan ids (nothing when empty)."""
    import re

    return "|".join(re.escape(i) for i in ids) if ids else "(?!)"


def stage_json(scan, stage):
    """<out>/<scan>/<stage>/stage.json, the mark of a completed stage."""
    return f"{OUT}/{scan}/{stage}/stage.json"


def upstream_of(stage):
    """Input function: stage.json of the stages that `stage` reads.

    The same upstream stages as `anodescope run` requires (pipelines.config.ScanConfig.upstream):
    the previous stage of the chain, and for the report every other stage of the scan. They
    are made even when `run:` leaves them out.
    """

    def inputs(wildcards):
        scan = STUDY.scan(wildcards.scan)
        return [stage_json(scan.id, up) for up in scan.upstream(stage)]

    return inputs


def raw_inputs(*keys):
    """Input function: the scan's input files named by `keys` (absent keys left out)."""

    def inputs(wildcards):
        scan = STUDY.scan(wildcards.scan)
        return {
            key: study_path(getattr(scan, key))
            for key in keys
            if getattr(scan, key) is not None
        }

    return inputs


def parameters(stage):
    """The stage's parameters as JSON (a params entry: a change reruns the stage)."""
    return json.dumps(STUDY.stages[stage], sort_keys=True)


def uses_gpu(stage):
    """1 when the stage asks for the GPU (`device: gpu`), else 0 (Snakemake resource)."""
    return 1 if STUDY.stages[stage].get("device") == "gpu" else 0


def memory_mb(stage, base_mb):
    """mem_mb resource: `base_mb` (MB), plus twice the slab memory for the reconstruction,
    doubled on each retry."""
    extra = 0
    if stage == "reconstruct":
        from recon.chunked import parse_memory

        extra = 2 * parse_memory(STUDY.stages["reconstruct"]["memory_limit"]) // 1_000_000

    def mem(wildcards, attempt):
        return int((base_mb + extra) * attempt)

    return mem


def log_of(stage):
    return f"{OUT}/logs/{{scan}}.{stage}.log"


def benchmark_of(stage):
    return f"{OUT}/benchmarks/{{scan}}.{stage}.tsv"


def all_targets():
    """Every selected stage of every scan, and the study report."""
    targets = [
        stage_json(scan.id, stage)
        for scan in STUDY.scans
        for stage in STUDY.stages_for(scan)
    ]
    if "report" in STUDY.run:
        targets.append(f"{OUT}/report.html")
    return targets
