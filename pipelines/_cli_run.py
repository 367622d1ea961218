"""``anodescope run CONFIG.yaml``: run a study from its YAML config.

Example::

    anodescope run study.yaml                          # every stage of every scan
    anodescope run study.yaml --scan plated --stage segment
    anodescope run study.yaml --scheduler tcp://10.0.0.5:8786

The config is validated and every input file checked before any stage starts (a mistake
exits with code 2 and one line naming the YAML key, file or value). Complete stages with
the same inputs and parameters are skipped; an interrupted run resumes when rerun. With
``--stage`` only those stages run, and their upstream stages must already be complete.
Outputs: ``<out>/<scan>/<stage>/`` (``stage.json`` last), ``<out>/study.json``.
"""

from __future__ import annotations


def register(subparsers) -> None:
    """Add the ``run`` verb to the ``anodescope`` parser."""
    p = subparsers.add_parser(
        "run",
        help="run a study from a YAML config (stages skipped when complete, resumable)",
        description="Validate a study config and run its stages (reconstruct, segment, strip, hexitec, "
        "compton, report) for every scan, skipping complete stages with the same inputs and parameters.",
    )
    p.add_argument("config", help="study config (YAML)")
    p.add_argument("--scan", action="append", default=None, metavar="ID",
                   help="run only this scan (repeatable; default all)")
    p.add_argument("--stage", action="append", default=None, metavar="NAME",
                   help="run only this stage (repeatable); its upstream stages must be complete")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask.distributed scheduler address (default: the config's dask.scheduler, "
                   "else the local threaded scheduler)")
    p.add_argument("--force", action="store_true", help="rerun the selected stages even when complete")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def _split(values):
    if values is None:
        return None
    out = []
    for v in values:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def run(args) -> int:
    from .config import load_config
    from .stages import run_study

    cfg = load_config(args.config)
    study = run_study(cfg, scans=_split(args.scan), stages=_split(args.stage), scheduler=args.scheduler,
                      force=args.force, progress=not args.quiet)
    if not args.quiet:
        n = sum(len(s["stages"]) for s in study["scans"].values())
        print(f"{n} complete stages of {len(study['scans'])} scans; summary in {cfg.out / 'study.json'}")
    return 0
