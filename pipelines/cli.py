"""The ``anodescope`` command line: a thin layer over the Python API.

Each verb lives in its own module ``pipelines._cli_<verb>`` exposing
``register(subparsers)``, which adds an ``argparse`` sub-parser and sets its
``func(args) -> int``. User errors (exceptions carrying ``user_error = True`` and
missing/existing-file errors) print one line and exit with code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

#: verb modules, in the order shown by ``--help``
VERB_MODULES = (
    "pipelines._cli_demo",
    "pipelines._cli_recon",
    "pipelines._cli_segment",
    "pipelines._cli_strip",
    "pipelines._cli_hexitec",
    "pipelines._cli_compton",
    "pipelines._cli_run",
    "pipelines._cli_workflow",
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

_USER_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's mistake (bad file, dataset or value) rather than a bug."""
    return bool(getattr(exc, "user_error", False)) or isinstance(exc, _USER_OS_ERRORS)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available verb."""
    parser = argparse.ArgumentParser(
        prog="anodescope",
        description=(
            "Tomography and X-ray Compton scattering pipeline for lithium-metal and "
            "anode-free solid-state batteries."
        ),
    )
    parser.add_argument("--version", action="version", version=f"anodescope {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback on errors"
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # verb not built yet
                continue
            raise
        module.register(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, _USER_OS_ERRORS) and getattr(exc, "filename", None):
        reason = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {reason}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("anodescope: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs below
        if args.debug or not is_user_error(exc):
            raise
        print(f"anodescope {args.verb}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
