"""Shared test configuration: GPU marker handling and paths to shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def gpu_available() -> tuple[bool, str]:
    """Whether CuPy can run on a CUDA device, and why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or CUDA libraries missing
        return False, f"CuPy not importable ({type(exc).__name__})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no CUDA device ({type(exc).__name__})"
    if n < 1:
        return False, "no CUDA device"
    return True, ""


def pytest_collection_modifyitems(config, items):
    ok, why = gpu_available()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"GPU test skipped: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tooth_path() -> Path:
    """The real DXchange scan shipped in ../shared/data (181 projections, 2 rows)."""
    path = SHARED_DATA / "tooth.h5"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path
