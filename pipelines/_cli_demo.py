"""``anodescope demo``: the whole study workflow on embedded simulated sample data."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole study workflow on embedded simulated sample data",
        description="Write the sample study (an anode-free cell after plating and after stripping, XCS "
        "acquisitions at three states of charge, HEXITEC frames), run every stage and write the HTML "
        "reports with the errors against the truth. Rerunning reuses completed stages.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--size", choices=("demo", "test"), default="demo",
                   help="sample size: demo (1.7 um voxels, ~2 min) or test (3.4 um voxels, seconds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated samples (default: 0)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask.distributed scheduler address (default: local threads)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args) -> int:
    from pipelines.demo import run_demo

    run_demo(args.out, size=args.size, seed=args.seed, quiet=args.quiet, scheduler=args.scheduler)
    return 0
