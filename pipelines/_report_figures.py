"""Study-level figures of the HTML reports (matplotlib, Agg backend, imported inside each function).

Each helper draws one PNG from plain arrays and numbers, so it can be tested without a study.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save through a temporary name, so a reader never sees half a PNG."""
    import os
    import uuid

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        _plt().close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _extent(shape, pixel_size_um: float | None):
    """imshow extent in um (pixels when the size is unknown) and the axis unit label."""
    ny, nx = shape
    if pixel_size_um:
        return (0, nx * pixel_size_um, 0, ny * pixel_size_um), "µm"
    return (0, nx, 0, ny), "pixels"


def thickness_states(maps: dict, out_png, *, pixel_size_um: dict | None = None, truths: dict | None = None,
                     title: str = "Li thickness") -> Path:
    """Thickness maps of several scans side by side with one shared µm colour bar, and their difference.

    Parameters
    ----------
    maps : dict
        Scan id -> measured thickness map (y, x) in um (NaN outside the cell), in display order.
    out_png : str or Path
        Output PNG.
    pixel_size_um : dict, optional
        Scan id -> lateral pixel size in um (axes in um; pixels when missing).
    truths : dict, optional
        Scan id -> true thickness map in um: a second row with the truth and a third with the
        error (measured - truth, um) of each scan.
    title : str
        Figure title.

    Returns
    -------
    Path
        The PNG. When the first and last maps have the same shape, a last column shows
        ``last - first`` (um), for the measurement and for the truth.
    """
    plt = _plt()
    ids = list(maps)
    if not ids:
        raise ValueError("thickness_states: no map to draw")
    pixel_size_um = pixel_size_um or {}
    truths = {k: v for k, v in (truths or {}).items() if k in maps and v is not None and v.shape == maps[k].shape}
    diff = len(ids) >= 2 and maps[ids[0]].shape == maps[ids[-1]].shape
    rows = [("measured", maps)] + ([("true", truths)] if truths else [])
    finite = [m[np.isfinite(m)] for m in list(maps.values()) + list(truths.values())]
    finite = np.concatenate([f for f in finite if f.size]) if any(f.size for f in finite) else np.zeros(1)
    vmin, vmax = 0.0, float(np.percentile(finite, 99.5)) or 1.0
    ncols = len(ids) + (1 if diff else 0)
    nrows = len(rows) + (1 if truths else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 1.2, 3.2 * nrows + 0.6), squeeze=False,
                             constrained_layout=True)
    shared = None
    for r, (label, group) in enumerate(rows):
        for c, sid in enumerate(ids):
            ax = axes[r, c]
            m = group.get(sid)
            if m is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no truth", ha="center", va="center", transform=ax.transAxes)
                continue
            ext, unit = _extent(m.shape, pixel_size_um.get(sid))
            shared = ax.imshow(m, cmap="viridis", origin="lower", extent=ext, vmin=vmin, vmax=vmax)
            ax.set_title(f"{sid}: {label}, mean {np.nanmean(m):.1f} µm", fontsize=9)
            ax.set_xlabel(f"x ({unit})")
            ax.set_ylabel(f"y ({unit})")
        if diff:
            ax = axes[r, -1]
            a, b = group.get(ids[0]), group.get(ids[-1])
            if a is None or b is None:
                ax.set_axis_off()
                continue
            d = b - a
            lim = float(np.nanpercentile(np.abs(d), 99)) if np.isfinite(d).any() else 1.0
            ext, unit = _extent(d.shape, pixel_size_um.get(ids[-1]))
            im = ax.imshow(d, cmap="RdBu_r", origin="lower", extent=ext, vmin=-lim or -1, vmax=lim or 1)
            ax.set_title(f"{ids[-1]} − {ids[0]} ({label}), mean {np.nanmean(d):.1f} µm", fontsize=9)
            ax.set_xlabel(f"x ({unit})")
            fig.colorbar(im, ax=ax, label="thickness difference (µm)", shrink=0.85)
    if truths:
        r = nrows - 1
        errs = {sid: maps[sid] - truths[sid] for sid in ids if sid in truths}
        vals = np.concatenate([np.abs(e[np.isfinite(e)]) for e in errs.values()] + [np.zeros(1)])
        lim = float(np.percentile(vals, 99)) or 1.0
        im = None
        for c, sid in enumerate(ids):
            ax = axes[r, c]
            if sid not in errs:
                ax.set_axis_off()
                continue
            e = errs[sid]
            ext, unit = _extent(e.shape, pixel_size_um.get(sid))
            im = ax.imshow(e, cmap="RdBu_r", origin="lower", extent=ext, vmin=-lim, vmax=lim)
            ax.set_title(f"{sid}: error, MAE {np.nanmean(np.abs(e)):.2f} µm", fontsize=9)
            ax.set_xlabel(f"x ({unit})")
            ax.set_ylabel(f"y ({unit})")
        if diff:
            axes[r, -1].set_axis_off()
        if im is not None:
            fig.colorbar(im, ax=axes[r, :len(ids)].tolist(), label="measured − true (µm)", shrink=0.85)
    fig.colorbar(shared, ax=axes[:len(rows), :len(ids)].ravel().tolist(), label="Li thickness (µm)", shrink=0.85)
    fig.suptitle(title)
    return _save(fig, out_png)


def emf_vs_soc(points: list, out_png, *, xlabel: str = "state of charge") -> Path:
    """EMF per region against state of charge (or scan order), with 1-sigma error bars.

    Parameters
    ----------
    points : list of dict
        One per (scan, region): ``x`` (state of charge, 0 to 1, or a scan index), ``region``
        (name), ``emf`` and ``sigma`` (dimensionless), optional ``expected`` (dimensionless,
        drawn as open markers) and ``scan`` (id, used as tick label when ``x`` is an index).
    out_png : str or Path
        Output PNG.
    xlabel : str
        Label of the x axis.

    Returns
    -------
    Path
    """
    plt = _plt()
    regions = list(dict.fromkeys(p["region"] for p in points))
    if not regions:
        raise ValueError("emf_vs_soc: no point to draw")
    fig, axes = plt.subplots(1, len(regions), figsize=(3.8 * len(regions) + 0.6, 3.8), squeeze=False,
                             constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ticks = {p["x"]: p.get("scan", "") for p in points}
    for i, (reg, ax) in enumerate(zip(regions, axes[0])):
        pts = sorted((p for p in points if p["region"] == reg), key=lambda p: p["x"])
        x = np.array([p["x"] for p in pts], float)
        y = np.array([p["emf"] for p in pts], float)
        s = np.array([p.get("sigma") or 0.0 for p in pts], float)
        col = colors[i % len(colors)]
        ax.errorbar(x, y, yerr=s, fmt="o-", color=col, capsize=4, label="measured ± 1σ")
        exp = [(p["x"], p["expected"]) for p in pts if p.get("expected") is not None]
        if exp:
            ex, ey = np.array(exp, float).T
            ax.plot(ex, ey, "s--", mfc="none", color="k", alpha=0.7, label="expected")
        if all(isinstance(k, (int, np.integer)) for k in ticks):
            ax.set_xticks(sorted(ticks), [ticks[k] for k in sorted(ticks)], rotation=20)
        ax.set_xlabel(xlabel)
        ax.set_title(reg)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("EMF (valence / core window, dimensionless)")
    fig.suptitle("Electron momentum factor per region")
    return _save(fig, out_png)


def stripping_overlay(curves: dict, out_png) -> Path:
    """Virtual-stripping curves of several scans: active area and current multiplier.

    Parameters
    ----------
    curves : dict
        Scan id -> dict of 1-D arrays ``stripped_fraction`` and ``active_fraction`` (0 to 1),
        optional ``current_multiplier`` (x applied).
    out_png : str or Path

    Returns
    -------
    Path
    """
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for sid, c in curves.items():
        s = np.asarray(c["stripped_fraction"], float)
        a1.plot(100 * s, 100 * np.asarray(c["active_fraction"], float), label=sid)
        if c.get("current_multiplier") is not None:
            a2.plot(100 * s, np.asarray(c["current_multiplier"], float), label=sid)
    a1.set_xlabel("stripped capacity (%)")
    a1.set_ylabel("active area (%)")
    a1.set_title("Active area while stripping")
    a2.set_xlabel("stripped capacity (%)")
    a2.set_ylabel("mean current density (x applied)")
    a2.set_yscale("log")
    a2.set_title("Current multiplier 1 / active area")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_png)
