"""``anodescope workflow``: run a study's scans as a Snakemake workflow (local or SLURM).

The packaged Snakefile (``pipelines/workflow/Snakefile``) runs one job per scan and stage,
each calling ``anodescope run STUDY.yaml --scan ID --stage NAME``; Snakemake runs
independent scans side by side, skips completed stages and resumes after a failure.
This verb finds the Snakefile and the profile and runs Snakemake from the same Python
interpreter, with the working folder set to the study YAML's folder (the paths in the YAML
are relative to it). Snakemake's exit code is passed through.

Snakemake is optional: ``pip install "snakemake>=8"`` (and
``snakemake-executor-plugin-slurm`` for ``--profile slurm``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from ._errors import InputError

#: the packaged workflow
WORKFLOW_DIR = Path(__file__).resolve().parent / "workflow"
SNAKEFILE = WORKFLOW_DIR / "Snakefile"
#: profiles shipped with the workflow, by name
PROFILES = {"local": WORKFLOW_DIR / "profiles" / "local", "slurm": WORKFLOW_DIR / "profiles" / "slurm"}

INSTALL_HINT = 'pip install "anodescope[workflow]"  (snakemake 9 and its SLURM executor plugin)'
SLURM_HINT = 'pip install "anodescope[workflow]"  (or: pip install snakemake-executor-plugin-slurm)'


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "workflow",
        help="run a study as a Snakemake workflow (local machine or SLURM cluster)",
        description="Run every scan of a study (anodescope run semantics, one job per scan and "
        "stage) with Snakemake: parallel scans, resume after failures, per-job logs and benchmark "
        "files under <out>/logs and <out>/benchmarks. Arguments after `--` go to snakemake "
        "unchanged, e.g. `anodescope workflow study.yaml -- --forcerun segment`. "
        f"Needs Snakemake ({INSTALL_HINT}).",
        usage="anodescope workflow [-h] [--cores N] [--profile local|slurm|PATH] [--dry-run] [--lint] "
        "CONFIG.yaml [-- SNAKEMAKE_ARGS ...]",
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="study config (YAML; paths relative to it)")
    p.add_argument("--cores", type=_cores, default=None, metavar="N",
                   help="CPU cores to use at most ('all' or a number; default: the profile's, local: all)")
    p.add_argument("--profile", default="local", metavar="local|slurm|PATH",
                   help="Snakemake profile: the packaged 'local' (default) or 'slurm' one, or a profile folder")
    p.add_argument("--dry-run", "-n", action="store_true", help="only show the jobs that would run")
    p.add_argument("--lint", action="store_true", help="check the workflow with `snakemake --lint`")
    p.set_defaults(func=run, snakemake_args=[])
    _pass_through_after_double_dash(p)


def _cores(text: str) -> str:
    if text == "all":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'all' or a positive number of cores")
    return str(n)


def _pass_through_after_double_dash(parser) -> None:
    """Make ``parser`` keep every argument after the first ``--`` in ``snakemake_args``.

    argparse cannot give a positional list after options by itself, so the arguments are
    split before it parses the rest.
    """
    parse = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        extra: list[str] = []
        if "--" in args:
            i = args.index("--")
            args, extra = args[:i], args[i + 1:]
        ns, rest = parse(args, namespace)
        ns.snakemake_args = extra
        return ns, rest

    parser.parse_known_args = parse_known_args


def resolve_profile(profile: str) -> Path:
    """The profile folder of ``profile`` (a packaged name or a folder holding config.yaml).

    Parameters
    ----------
    profile : str
        ``"local"``, ``"slurm"`` or a path to a Snakemake profile folder.

    Returns
    -------
    Path
        Absolute path of the profile folder.
    """
    if profile in PROFILES:
        path = PROFILES[profile]
    else:
        path = Path(profile).expanduser().resolve()
        if not path.is_dir():
            raise InputError(f"--profile {profile}: not 'local', 'slurm' or a profile folder")
    if not any((path / name).is_file() for name in ("config.yaml", "config.v8+.yaml")):
        raise InputError(f"--profile {profile}: {path} has no config.yaml (a Snakemake profile folder expected)")
    return path


def _uses_slurm(profile_dir: Path) -> bool:
    import yaml

    for name in ("config.v8+.yaml", "config.yaml"):
        f = profile_dir / name
        if f.is_file():
            doc = yaml.safe_load(f.read_text()) or {}
            return isinstance(doc, dict) and doc.get("executor") == "slurm"
    return False


def snakemake_command(config, *, cores=None, profile="local", dry_run=False, lint=False,
                      extra=()) -> list[str]:
    """The Snakemake command line that runs a study's workflow.

    Parameters
    ----------
    config : str or Path
        Study YAML; Snakemake runs in its folder (relative paths in it refer to it).
    cores : str or int, optional
        ``--cores`` (a number or ``"all"``); None leaves it to the profile.
    profile : str
        ``"local"``, ``"slurm"`` or a profile folder.
    dry_run, lint : bool
        Add ``--dry-run`` / ``--lint``.
    extra : sequence of str
        More Snakemake arguments, appended unchanged.

    Returns
    -------
    list of str
        ``[python, -m, snakemake, ...]`` with the interpreter running this code.

    Examples
    --------
    >>> cmd = snakemake_command("study.yaml", cores=2, dry_run=True)
    >>> cmd[1:3], "--dry-run" in cmd
    (['-m', 'snakemake'], True)
    """
    config = Path(config).resolve()
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--configfile", str(config),
           "--directory", str(config.parent), "--profile", str(resolve_profile(profile))]
    if cores is not None:
        cmd += ["--cores", str(cores)]
    if dry_run:
        cmd.append("--dry-run")
    if lint:
        cmd.append("--lint")
    cmd += list(extra)
    return cmd


def run(args) -> int:
    if importlib.util.find_spec("snakemake") is None:
        raise InputError(f"snakemake is not installed in {sys.executable}: {INSTALL_HINT} "
                         f"(and {SLURM_HINT} for SLURM clusters)")
    config = Path(args.config)
    if not config.is_file():
        raise InputError(f"{config}: study config not found")
    profile_dir = resolve_profile(args.profile)
    if _uses_slurm(profile_dir) and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        raise InputError(f"--profile {args.profile}: the SLURM executor plugin is not installed: {SLURM_HINT}")
    if not args.lint:
        # the same checks as `anodescope run`, with one-line messages, before Snakemake starts
        from .config import load_config

        load_config(config, check_inputs=True)
    cmd = snakemake_command(config, cores=args.cores, profile=str(profile_dir), dry_run=args.dry_run,
                            lint=args.lint, extra=args.snakemake_args)
    env = dict(os.environ)
    # the jobs call `anodescope`: the one installed beside this interpreter comes first
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return subprocess.run(cmd, env=env).returncode
