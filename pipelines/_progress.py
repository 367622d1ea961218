"""Progress bars shared by the command-line verbs (tqdm, quiet when not a terminal)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total: int | None = None, *, desc: str = "", unit: str = "it", disable: bool | None = None):
    """Return a ``tqdm`` progress bar writing to stderr.

    Parameters
    ----------
    total : int, optional
        Number of steps.
    desc : str
        Label shown before the bar.
    unit : str
        Name of one step.
    disable : bool, optional
        Force the bar off (True) or on (False); by default it shows on a terminal only.
    """
    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True)
