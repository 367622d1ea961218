"""The command-line skeleton: help, version and the user-error contract."""

from __future__ import annotations

import subprocess
import sys

from pipelines import __version__
from pipelines.cli import EXIT_USER_ERROR, is_user_error, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_usage():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "usage: anodescope" in out.stdout


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"anodescope {__version__}"


def test_unknown_verb_is_an_argparse_error():
    out = run_cli("no-such-verb")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_user_error_classification():
    import recon

    assert is_user_error(recon.InputError("x"))
    assert is_user_error(FileNotFoundError(2, "No such file", "a.h5"))
    assert not is_user_error(ZeroDivisionError())
    assert not is_user_error(ValueError("plain bug"))


def test_main_without_verb_prints_help(capsys):
    assert main([]) == 0
    assert "usage: anodescope" in capsys.readouterr().out


def test_exit_code_constant():
    assert EXIT_USER_ERROR == 2
