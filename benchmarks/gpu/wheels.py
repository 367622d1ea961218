"""Fetch and check the wheels that travel to the GPU device (``make gpu-wheels``).

The device image (``device_packages.txt``) has Python 3.12, NumPy, SciPy, Numba, CuPy and most
of anodescope's dependencies, but no network. ``wheels.txt`` pins the rest; this script
downloads exactly those wheels (Python 3.12, manylinux x86_64) into ``.whl/``, removes stale
ones, checks that every wheel's own requirements are on the device or in the set, and fails when
the set is too large to travel with the working tree (64 MiB per call in all).

Usage::

    python benchmarks/gpu/wheels.py download [--dest .whl] [--max-mib 45]
    python benchmarks/gpu/wheels.py check [--dest .whl]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WHEELS_TXT = HERE / "wheels.txt"
DEVICE_TXT = HERE / "device_packages.txt"

#: manylinux tags pip may pick (pip matches each exactly); at most glibc 2.35 so the set also
#: installs on the Debian 12 development machines (glibc 2.36) where it is verified.
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in range(5, 36)
]
#: what the device's Python must match
TARGET_ENV = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix",
}


def normalize(name: str) -> str:
    """PEP 503 normalised project name (``PyWavelets`` -> ``pywavelets``, ``rpds_py`` -> ``rpds-py``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(path: Path = WHEELS_TXT) -> dict[str, str]:
    """Read ``name==version`` lines (``#`` comments, blank lines ignored).

    Parameters
    ----------
    path : Path
        The pin file.

    Returns
    -------
    dict
        Normalised project name -> pinned version, in file order.

    Raises
    ------
    ValueError
        On a line that is not ``name==version`` or a project pinned twice, naming file and line.
    """
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        if not m:
            raise ValueError(f"{path}:{lineno}: expected 'name==version', got {raw!r}")
        name = normalize(m.group(1))
        if name in pins:
            raise ValueError(f"{path}:{lineno}: {m.group(1)} pinned twice ({pins[name]} and {m.group(2)})")
        pins[name] = m.group(2)
    return pins


def parse_device(path: Path = DEVICE_TXT) -> set[str]:
    """Normalised names of the Python packages already on the device (one a line, ``#`` comments)."""
    names = set()
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.add(normalize(line.split()[0]))
    return names


def wheel_project(path: Path) -> tuple[str, str]:
    """Normalised project name and version from a wheel's file name."""
    name, version = Path(path).name.split("-")[:2]
    return normalize(name), version


def wheel_requires(path: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    with zipfile.ZipFile(path) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode("utf-8", "replace")
    head = text.split("\n\n", 1)[0]
    return [line.split(":", 1)[1].strip() for line in head.splitlines() if line.startswith("Requires-Dist:")]


def needed(requirement: str, extras: frozenset[str] = frozenset()) -> str | None:
    """Normalised name a requirement string asks for on the device, or None when its marker is false there."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare venv: pip's own copy
        from pip._vendor.packaging.requirements import Requirement

    req = Requirement(requirement)
    if req.marker is not None:
        envs = [dict(TARGET_ENV, extra=e) for e in (extras or {""})]
        if not any(req.marker.evaluate(env) for env in envs):
            return None
    return normalize(req.name)


def missing_requirements(dest: Path, device: set[str] | None = None) -> dict[str, list[str]]:
    """Requirements of the wheels in ``dest`` that neither the device nor the wheel set provides.

    Returns
    -------
    dict
        Wheel file name -> the names it needs that are missing (only wheels with a gap).
    """
    device = parse_device() if device is None else device
    wheels = sorted(Path(dest).glob("*.whl"))
    have = device | {wheel_project(w)[0] for w in wheels}
    gaps = {}
    for w in wheels:
        miss = sorted({n for r in wheel_requires(w) if (n := needed(r)) and n not in have})
        if miss:
            gaps[w.name] = miss
    return gaps


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of the working tree that travels to the device: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=repo, capture_output=True, check=True).stdout
    total = 0
    for rel in filter(None, out.decode().split("\0")):
        p = repo / rel
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def exclude_from_git(dest: Path, repo: Path = REPO) -> None:
    """Append ``/<dest>/`` to ``.git/info/exclude`` unless it is already there."""
    try:
        rel = Path(dest).resolve().relative_to(repo)
    except ValueError:
        return
    git_path = subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=repo,
                              capture_output=True, text=True)
    if git_path.returncode != 0:
        return
    exclude = (repo / git_path.stdout.strip()).resolve()
    line = f"/{rel.as_posix()}/"
    text = exclude.read_text() if exclude.exists() else ""
    if line not in text.split("\n"):
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line + "\n")
        print(f"added {line} to {exclude}")


def download(dest: Path, *, pins: dict[str, str], pip: list[str]) -> None:
    """Download each pinned wheel into ``dest`` that is not there yet; remove wheels not pinned."""
    dest.mkdir(parents=True, exist_ok=True)
    for w in dest.glob("*.whl"):
        name, version = wheel_project(w)
        if pins.get(name) != version:
            print(f"removing stale {w.name}")
            w.unlink()
    have = {wheel_project(w) for w in dest.glob("*.whl")}
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    for name, version in pins.items():
        if (name, version) in have:
            continue
        cmd = pip + ["download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                     "--implementation", "cp", *plat, "--dest", str(dest), f"{name}=={version}"]
        print(f"downloading {name}=={version}", flush=True)
        subprocess.run(cmd, check=True)


def copy_shared_data(dest: Path, repo: Path = REPO) -> int:
    """Copy ``../shared/data/tooth.h5`` (the real scan some tests use) into ``dest/data``; bytes copied."""
    src = repo.parent / "shared" / "data" / "tooth.h5"
    if not src.is_file():
        print(f"no {src}: tests that need it will skip on the device")
        return 0
    (dest / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest / "data" / src.name)
    return src.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["download", "check"])
    parser.add_argument("--dest", type=Path, default=REPO / ".whl", help="wheel folder (default: .whl)")
    parser.add_argument("--max-mib", type=float, default=float(os.environ.get("GPU_WHEELS_MAX_MIB", 45)),
                        help="largest wheel set allowed, MiB (default 45)")
    parser.add_argument("--max-tree-mib", type=float, default=62.0,
                        help="largest working tree plus wheels allowed, MiB (device limit 64)")
    args = parser.parse_args(argv)
    pins = parse_pins()
    if args.action == "download":
        exclude_from_git(args.dest)
        download(args.dest, pins=pins, pip=[sys.executable, "-m", "pip"])
        copy_shared_data(args.dest)
    wheels = sorted(args.dest.glob("*.whl"))
    got = {}
    for w in wheels:
        got.setdefault(wheel_project(w)[0], []).append(w.name)
    problems = [f"{n}: several wheels {v}" for n, v in got.items() if len(v) > 1]
    problems += [f"{n}=={v}: no wheel in {args.dest}" for n, v in pins.items() if n not in got]
    problems += [f"{w}: wheel not pinned in wheels.txt" for n, v in got.items() if n not in pins for w in v]
    for wheel, miss in missing_requirements(args.dest).items():
        problems.append(f"{wheel} needs {', '.join(miss)}: neither on the device nor in wheels.txt")
    mib = 2.0**20
    size = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file())
    tree = tree_bytes()
    print(f"{len(wheels)} wheels, {args.dest} holds {size / mib:.1f} MiB; working tree {tree / mib:.1f} MiB; "
          f"together {(size + tree) / mib:.1f} MiB of the 64 MiB a device call may carry")
    if size > args.max_mib * mib:
        problems.append(f"{args.dest} is {size / mib:.1f} MiB, over the {args.max_mib:g} MiB allowed")
    if size + tree > args.max_tree_mib * mib:
        problems.append(f"wheels plus working tree {(size + tree) / mib:.1f} MiB, over {args.max_tree_mib:g} MiB")
    for p in problems:
        print("ERROR:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
