"""``argparse`` value types shared by the command-line verbs."""

from __future__ import annotations

import argparse
import math


def positive_float(value: str) -> float:
    """A finite number > 0 (argparse type); anything else is a usage error naming the value."""
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not (x > 0 and math.isfinite(x)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return x
