"""The design card's rules: one-way dependencies and a public API that resolves."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = ("recon", "segment", "compton")
PACKAGES = CORE + ("pipelines",)


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", CORE)
def test_core_packages_do_not_import_each_other_or_pipelines(package):
    forbidden = set(PACKAGES) - {package}
    for path in (REPO / package).rglob("*.py"):
        bad = _imported_top_levels(path) & forbidden
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", CORE)
def test_public_names_resolve(package):
    mod = importlib.import_module(package)
    assert mod.__all__, f"{package} lists no public API"
    for name in mod.__all__:
        try:
            getattr(mod, name)
        except (ImportError, AttributeError) as exc:  # pragma: no cover - reported below
            pytest.fail(f"{package}.{name} does not resolve: {exc}")


@pytest.mark.parametrize("package", CORE)
def test_import_is_light(package):
    """Importing a package must not pull in CuPy (GPU stays optional)."""
    import subprocess
    import sys

    code = f"import sys, {package}; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
