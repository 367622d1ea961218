"""Report the Python environment of a GPU session: versions, where packages load from, the CUDA device.

Run from the repository root (``python3 benchmarks/gpu/check_env.py [--json FILE]``). It never fails
on a missing package or GPU: it says so in the report, so that the same report is made on a
machine without one (the session's dry mode). The exit status is 1 only when one of anodescope's
four packages (or a name they export) cannot be imported.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

#: (import name, distribution name) of what anodescope and its tests use
MODULES = [
    ("numpy", "numpy"), ("scipy", "scipy"), ("numba", "numba"), ("numba.cuda", "numba-cuda"),
    ("cupy", None), ("llvmlite", "llvmlite"), ("dask", "dask"), ("distributed", "distributed"),
    ("zarr", "zarr"), ("numcodecs", "numcodecs"), ("h5py", "h5py"), ("skimage", "scikit-image"),
    ("sklearn", "scikit-learn"), ("tifffile", "tifffile"), ("matplotlib", "matplotlib"), ("pywt", "PyWavelets"),
    ("xraylib", "xraylib"), ("jsonschema", "jsonschema"), ("yaml", "pyyaml"), ("lazy_loader", "lazy-loader"),
    ("tqdm", "tqdm"), ("psutil", "psutil"), ("pytest", "pytest"), ("pytest_timeout", "pytest-timeout"),
    ("astra", "astra-toolbox"), ("algotom", "algotom"), ("tomopy", "tomopy"), ("dask_cuda", "dask-cuda"),
]
#: optional peers slow to import (Qt, workflow engine): only their installed version is read
PEERS = ["snakemake", "napari"]
PACKAGES = ("recon", "segment", "compton", "pipelines")


def module_report(name: str, dist: str | None) -> dict:
    """Version and origin of one module, or the error importing it."""
    row: dict = {"module": name}
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken binary / missing CUDA library
        row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return row
    row["seconds"] = round(time.perf_counter() - t0, 3)
    version = None
    if dist:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if version is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            version = getattr(mod, "__version__", None)
    row["version"] = str(version) if version is not None else "?"
    row["from"] = str(Path(getattr(mod, "__file__", "") or "?").parent)
    return row


def peer_report(dist: str) -> dict:
    """Installed version of a distribution, without importing it."""
    try:
        return {"module": dist, "version": metadata.version(dist), "from": "(not imported)"}
    except metadata.PackageNotFoundError:
        return {"module": dist, "error": "not installed"}


def anodescope_report() -> dict:
    """Import the four packages and resolve every name they export (lazy submodules included)."""
    out = {}
    for top in PACKAGES:
        try:
            pkg = importlib.import_module(top)
            names = list(getattr(pkg, "__all__", []))
            failed = []
            for n in names:
                try:
                    getattr(pkg, n)
                except Exception as exc:
                    failed.append(f"{n}: {type(exc).__name__}: {exc}"[:200])
            out[top] = {"from": str(Path(pkg.__file__).parent), "exports": len(names), "failed": failed}
        except Exception as exc:
            out[top] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def cuda_report() -> dict:
    """CuPy's view of the GPU: name, compute capability, CUDA runtime and driver, memory, a kernel run."""
    rep: dict = {}
    try:
        import cupy as cp
    except Exception as exc:
        return {"error": f"CuPy not importable: {type(exc).__name__}: {exc}"[:300]}
    rep["cupy"] = cp.__version__
    try:
        rt = cp.cuda.runtime
        rep["device_count"] = rt.getDeviceCount()
        props = rt.getDeviceProperties(0)
        name = props["name"]
        rep["device"] = name.decode() if isinstance(name, bytes) else str(name)
        rep["compute_capability"] = f"{props['major']}.{props['minor']}"
        rep["multiprocessors"] = props["multiProcessorCount"]
        rep["cuda_runtime"] = rt.runtimeGetVersion()
        rep["cuda_driver"] = rt.driverGetVersion()
        free, total = rt.memGetInfo()
        rep["memory_free_gib"] = round(free / 2**30, 2)
        rep["memory_total_gib"] = round(total / 2**30, 2)
    except Exception as exc:
        rep["error"] = f"no CUDA device: {type(exc).__name__}: {exc}"[:300]
        return rep
    try:  # compiles through NVRTC: the path anodescope's RawKernels take
        square = cp.ElementwiseKernel("float32 x", "float32 y", "y = x * x", "anodescope_check_square")
        x = cp.arange(1024, dtype=cp.float32)
        ok = bool(cp.allclose(square(x), x * x))
        rep["kernel_compiles_and_runs"] = ok
        rep["nvrtc"] = ".".join(map(str, cp.cuda.nvrtc.getVersion()))
    except Exception as exc:
        rep["kernel_error"] = f"{type(exc).__name__}: {exc}"[:300]
    try:
        from numba import cuda as ncuda

        rep["numba_cuda_available"] = bool(ncuda.is_available())
    except Exception as exc:
        rep["numba_cuda_available"] = f"{type(exc).__name__}: {exc}"[:200]
    return rep


def collect() -> dict:
    """The whole report as a dict."""
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "modules": [module_report(m, d) for m, d in MODULES] + [peer_report(d) for d in PEERS],
        "anodescope": anodescope_report(),
        "cuda": cuda_report(),
    }


def to_text(rep: dict) -> str:
    """Human-readable lines of the report."""
    lines = [f"python {rep['python']} ({rep['executable']}), {rep['platform']}, {rep['cpus']} CPUs",
             f"PYTHONPATH={rep['pythonpath']}", "", "modules:"]
    for row in rep["modules"]:
        if "error" in row:
            lines.append(f"  {row['module']:<16} MISSING  {row['error']}")
        else:
            lines.append(f"  {row['module']:<16} {row['version']:<14} {row['from']}")
    lines += ["", "anodescope:"]
    for top, r in rep["anodescope"].items():
        if "error" in r:
            lines.append(f"  {top:<10} IMPORT FAILED  {r['error']}")
        else:
            state = "ok" if not r["failed"] else "FAILED: " + "; ".join(r["failed"])
            lines.append(f"  {top:<10} {r['exports']} exports {state}  ({r['from']})")
    lines += ["", "cuda:"] + [f"  {k}: {v}" for k, v in rep["cuda"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
    rep = collect()
    sys.stdout.write(to_text(rep))
    if args.json:
        args.json.write_text(json.dumps(rep, indent=2))
    bad = [t for t, r in rep["anodescope"].items() if "error" in r or r["failed"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
