"""Run every benchmark in this folder and write ``benchmarks/results/<machine>.json`` and ``.md``.

Usage::

    python benchmarks/run.py            # full sizes
    python benchmarks/run.py --quick    # small sizes, a smoke run
    python benchmarks/run.py recon      # only bench_recon.py

Each ``bench_<topic>.py`` defines ``run(quick: bool = False) -> list[dict]``; a row has the keys
``benchmark``, ``case``, ``tool``, ``seconds`` and optionally ``throughput``, ``unit``,
``accuracy``, ``ratio`` (a peer's seconds over ours, measured in the same run) and ``note``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import re
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine_info() -> dict:
    """Describe the machine: host, CPU count, Python, and the GPU when CuPy sees one."""
    info = {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gpu": None,
    }
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        info["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
    except Exception:
        pass
    return info


def machine_name(info: dict) -> str:
    """File name for a machine's results: the GPU model (e.g. ``NVIDIA-H100-80GB-HBM3``), which
    names the machine class better than a cloud host name, else the host name."""
    name = info.get("gpu") or info["host"]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "machine"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_markdown(info: dict, rows: list[dict]) -> str:
    gpu = info["gpu"] or "none"
    if info.get("gpu") and info.get("cuda_runtime"):
        gpu += f", CUDA runtime {info['cuda_runtime']}"
    head = (f"# Benchmarks on {info['host']} ({info['cpus']} CPUs, GPU: {gpu}), last run {info['date']}\n\n"
            "Rows kept from earlier partial runs (`run.py TOPIC`) keep their own `measured` time.\n\n")
    cols = ["benchmark", "case", "tool", "seconds", "throughput", "unit", "accuracy", "ratio", "note", "measured"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topics", nargs="*", help="benchmark topics (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--machine", help="results file name (default: the GPU model when there is one, "
                        "else the host name)")
    args = parser.parse_args(argv)
    files = sorted(HERE.glob("bench_*.py"))
    if args.topics:
        files = [f for f in files if f.stem.removeprefix("bench_") in args.topics]
    info = machine_info()
    rows: list[dict] = []
    for f in files:
        print(f"== {f.stem}", flush=True)
        got = load(f).run(quick=args.quick)
        for row in got:
            row.setdefault("measured", info["date"])
        for row in got:
            print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        rows.extend(got)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = (args.machine or machine_name(info)) + ("-quick" if args.quick else "")
    target = args.out / f"{stem}.json"
    if args.topics and target.exists():  # a partial run keeps the other topics' rows
        ran = {row.get("benchmark") for row in rows}
        kept = [r for r in json.loads(target.read_text()).get("results", []) if r.get("benchmark") not in ran]
        rows = kept + rows
    target.write_text(json.dumps({"machine": info, "results": rows}, indent=2))
    (args.out / f"{stem}.md").write_text(to_markdown(info, rows))
    print(f"wrote {args.out / (stem + '.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
