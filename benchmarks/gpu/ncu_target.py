"""A small GPU workload for Nsight Compute: one FBP slice (``backproject_linear``) or one direct
Fourier slice (``grid_polar``) through :func:`recon.reconstruct` on the GPU.

Usage (``session.sh`` runs it under ``ncu --kernel-name ...``)::

    python3 benchmarks/gpu/ncu_target.py [--algorithm fbp|fourier] [--size 1024] [--angles 900]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=["fbp", "fourier"], default="fbp")
    parser.add_argument("--size", type=int, default=1024, help="detector width and slice size, pixels")
    parser.add_argument("--angles", type=int, default=900, help="projections over 180 degrees")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import cupy as cp
    import numpy as np

    import recon

    rng = np.random.default_rng(0)
    sino = rng.random((args.angles, args.size), dtype=np.float32)
    theta = np.linspace(0.0, np.pi, args.angles, endpoint=False)
    out = recon.reconstruct(cp.asarray(sino), theta, algorithm=args.algorithm, device="gpu")
    cp.cuda.Device().synchronize()
    print(f"{args.algorithm} slice {out.shape} on the GPU, mean {float(out.mean()):.4g} 1/pixel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
