"""The GPU session kit (benchmarks/gpu): wheel pins, dependency coverage, session.sh, make test-gpu.

No network and no GPU: the wheel set is checked against pyproject.toml, the device's package list
and the installed distributions' own requirements; session.sh runs in its dry mode.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "benchmarks" / "gpu"
PACKAGES = ("recon", "segment", "compton", "pipelines")
#: optional parts whose imports are their own extra's business (pyproject: napari)
OPTIONAL_SUBPACKAGES = ("pipelines/napari",)


def _load_wheels_module():
    spec = importlib.util.spec_from_file_location("gpu_wheels", KIT / "wheels.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


wheels = _load_wheels_module()


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    return wheels.parse_pins(KIT / "wheels.txt")


@pytest.fixture(scope="module")
def device() -> set[str]:
    return wheels.parse_device(KIT / "device_packages.txt")


def test_wheels_txt_pins_one_version_per_package(pins):
    raw = [ln.split("#", 1)[0].strip() for ln in (KIT / "wheels.txt").read_text().splitlines()]
    raw = [ln for ln in raw if ln]
    assert len(pins) == len(raw) >= 10
    names = [wheels.normalize(ln.split("==")[0]) for ln in raw]
    assert len(set(names)) == len(names)
    for name, version in pins.items():
        assert version[0].isdigit(), f"{name}=={version}"


def test_parse_pins_rejects_duplicates_and_ranges(tmp_path):
    dup = tmp_path / "dup.txt"
    dup.write_text("zarr==3.1.6\n# comment\nZarr==3.1.5\n")
    with pytest.raises(ValueError, match=r"dup.txt:3: Zarr pinned twice"):
        wheels.parse_pins(dup)
    rng = tmp_path / "range.txt"
    rng.write_text("dask>=2024.1\n")
    with pytest.raises(ValueError, match=r"range.txt:1: expected 'name==version'"):
        wheels.parse_pins(rng)


def test_device_list_matches_what_the_image_is_known_to_have(device):
    # a few packages named in the device notes, and a few that are known to be absent there
    for name in ("numpy", "scipy", "numba", "cupy-cuda13x", "h5py", "scikit-image", "lazy-loader", "pytest"):
        assert name in device
    for name in ("dask", "zarr", "numcodecs", "xraylib", "jsonschema", "pywavelets"):
        assert name not in device


def test_pins_do_not_shadow_device_packages(pins, device):
    """A carried wheel of a package already on the device would replace the image's build."""
    assert not set(pins) & device


def test_requirement_markers_are_evaluated_for_python_312():
    assert wheels.needed('importlib_metadata>=4.13.0; python_version < "3.12"') is None
    assert wheels.needed("typing-extensions>=4.4.0; python_version < '3.13'") == "typing-extensions"
    assert wheels.needed('numpy>=1.24; extra == "array"') is None
    assert wheels.needed('numpy>=1.24; extra == "array"', frozenset({"array"})) == "numpy"
    assert wheels.needed('pywin32; sys_platform == "win32"') is None
    assert wheels.needed("Jinja2>=2.10.3") == "jinja2"


def _pyproject_requirements() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def test_wheels_cover_every_runtime_dependency_and_their_needs(pins, device):
    """pyproject's dependencies, and everything they need on Python 3.12 (read from the installed
    distributions' metadata), are on the device or pinned in wheels.txt."""
    from packaging.requirements import Requirement

    have = device | set(pins)
    todo = [(Requirement(r).name, frozenset(Requirement(r).extras), "pyproject.toml") for r in _pyproject_requirements()]
    seen: set[str] = set()
    missing = []
    while todo:
        name, extras, why = todo.pop()
        norm = wheels.normalize(name)
        if norm not in have:
            missing.append(f"{name} (needed by {why})")
            continue
        if norm in device or norm in seen:
            continue  # the device resolves its own packages' needs
        seen.add(norm)
        dist = metadata.distribution(name)  # every runtime dependency is installed in the dev venv
        for req in dist.requires or []:
            sub = wheels.needed(req, extras)
            if sub is not None:
                todo.append((sub, frozenset(), f"{name} {dist.version}"))
    assert not missing, missing
    # and every pinned package is reached: nothing carried for nothing (dev-only peers listed)
    dev_only = {"distributed", "tblib", "tornado", "zict", "algotom"}
    assert set(pins) - seen <= dev_only, set(pins) - seen - dev_only


def _module_level_imports(path: Path) -> set[str]:
    """Top-level module names imported when ``path`` is imported (not inside functions or classes)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return found


def test_import_time_dependencies_are_on_the_device_or_carried(pins, device):
    have = device | set(pins)
    dists = metadata.packages_distributions()
    problems = []
    for top in PACKAGES:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(OPTIONAL_SUBPACKAGES):
                continue
            for mod in _module_level_imports(path):
                if mod in sys.stdlib_module_names or mod in PACKAGES or mod == "__future__":
                    continue
                owners = {wheels.normalize(d) for d in dists.get(mod, [])}
                if not owners:
                    problems.append(f"{rel}: imports {mod}, which no installed distribution provides")
                elif not owners & have:
                    problems.append(f"{rel}: imports {mod} ({', '.join(sorted(owners))}) at import time")
    assert not problems, "\n".join(problems)


def test_session_script_parses():
    bash = shutil.which("bash")
    assert bash
    res = subprocess.run([bash, "-n", str(KIT / "session.sh")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _gpu_test_names(folder: Path) -> set[str]:
    """Names of the test functions marked ``pytest.mark.gpu`` in a folder (read from the source)."""
    names = set()
    for path in folder.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for dec in node.decorator_list:
                    if "mark.gpu" in ast.unparse(dec):
                        names.add(node.name)
    return names


def test_dry_session_writes_env_report_and_collects_gpu_tests(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, GPU_SESSION_DRY="1", GPU_PYTHON=sys.executable, GPU_SKIP_WHEELS="1",
               GPU_PYTEST_PATHS="tests/compton", TMPDIR=str(tmp_path))
    env.pop("OUT", None)
    res = subprocess.run(["bash", str(KIT / "session.sh"), str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    env_txt = (out / "env.txt").read_text()
    assert f"python {sys.version.split()[0]} ({sys.executable})" in env_txt
    for top in PACKAGES:
        assert any(line.split()[:1] == [top] and " exports ok " in line for line in env_txt.splitlines()), top
    assert "== nvidia-smi" in env_txt and "cuda:" in env_txt

    log = (out / "pytest-gpu.log").read_text()
    expected = _gpu_test_names(REPO / "tests" / "compton")
    assert expected
    for name in expected:
        assert f"::{name}" in log, name
    assert "-m gpu" in log and "--collect-only" in log

    summary = (out / "summary.md").read_text()
    rows = {c[1].strip(): c[2].strip() for c in (ln.split("|") for ln in summary.splitlines()) if len(c) > 4}
    assert rows["wheels"] == "skipped" and rows["env"] == "ok" and rows["tests"] == "ok"
    assert rows["bench"] == rows["profile"] == rows["ncu"] == "skipped"

    with tarfile.open(out / "session.tgz") as tf:
        report = json.load(tf.extractfile("./env.json"))
    assert report["python"] == sys.version.split()[0]
    assert "error" in report["cuda"] or "device_count" in report["cuda"]

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert not list(tmp_path.glob("gpu-session.*")), "the work folder is removed"


def _fake_cupy(root: Path) -> Path:
    """A stand-in CuPy package that imports but sees no device."""
    pkg = root / "fakecupy" / "cupy"
    (pkg / "cuda").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import cuda\n")
    (pkg / "cuda" / "__init__.py").write_text("from . import runtime\n")
    (pkg / "cuda" / "runtime.py").write_text(
        "class CUDARuntimeError(RuntimeError):\n    pass\n\n\n"
        "def getDeviceCount():\n    return 1\n")
    return root / "fakecupy"


def _make_project(root: Path) -> None:
    """The Makefile beside a one-test project whose GPU test needs ``import cupy``."""
    shutil.copy(REPO / "Makefile", root / "Makefile")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_one.py").write_text(
        "import pytest\n\n\n@pytest.mark.gpu\ndef test_cupy():\n    import cupy\n    assert cupy.cuda.runtime.getDeviceCount() == 1\n")
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: gpu\n")


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_test_gpu_offline_with_cupy_installs_nothing(tmp_path):
    _make_project(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(_fake_cupy(tmp_path)))
    env.pop("GPU_PYTHON", None)
    # no .venv: the interpreter that imports CuPy runs the tests as they are
    res = subprocess.run(["make", "test-gpu", f"PYTHON={sys.executable}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"GPU tests with {sys.executable}" in res.stdout and "1 passed" in res.stdout
    assert not (tmp_path / ".venv" / "bin").exists()

    # a venv that imports CuPy and is up to date is used as it is: no pip install
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").symlink_to(sys.executable)
    (tmp_path / ".venv" / ".installed-dev").touch()
    os.utime(tmp_path / "pyproject.toml", (1, 1))
    res = subprocess.run(["make", "test-gpu"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "GPU tests with .venv/bin/python" in res.stdout and "1 passed" in res.stdout
    assert "pip install" not in res.stdout + res.stderr
