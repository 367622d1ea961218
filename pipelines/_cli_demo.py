"""``anodescope demo``: run the whole chain on embedded simulated sample data."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole chain on embedded simulated sample data",
        description="Simulate an anode-free cell scan, reconstruct it and write figures and metrics. "
        "Rerunning reuses completed stages.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated sample (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args) -> int:
    from pipelines.demo import run_demo

    run_demo(args.out, seed=args.seed, quiet=args.quiet)
    return 0
