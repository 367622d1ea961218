"""PNG figures of virtual stripping and local current maps (matplotlib, no pyplot state).

Matplotlib is imported inside the functions; figures are drawn on an Agg canvas so the
functions work without a display and leave the global pyplot state alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(width_in, height_in):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_curves(result, path, *, fractions=()) -> Path:
    """Active area, current multiplier and island count against the stripped capacity.

    Parameters
    ----------
    result : StrippingResult
        Output of :func:`segment.virtual_stripping`.
    path : str or Path
        PNG file to write.
    fractions : sequence of float
        Stripped fractions (0 to 1) to mark with vertical lines.
    """
    fig = _figure(11, 3.6)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    s = 100 * result.stripped_fraction
    ax1.plot(s, 100 * result.active_fraction, color="C0")
    ax1.set_xlabel("stripped capacity (%)")
    ax1.set_ylabel("active area (%)")
    ax1.set_xlim(0, 100)
    ax1.set_ylim(0, 102)
    ax1.set_title("active area")
    mult = np.where(np.isfinite(result.current_multiplier), result.current_multiplier, np.nan)
    ax2.semilogy(s, mult, color="C3")
    ax2.set_xlabel("stripped capacity (%)")
    ax2.set_ylabel("current multiplier 1 / A")
    ax2.set_xlim(0, 100)
    finite = mult[np.isfinite(mult)]
    ax2.set_ylim(0.9, max(2.0, min(float(finite.max()) if finite.size else 2.0, 100.0)))
    ax2.set_title("effective current density")
    ax3.plot(s, result.n_islands, color="C2", drawstyle="steps-post")
    ax3.set_xlabel("stripped capacity (%)")
    ax3.set_ylabel(f"islands ({result.connectivity}-connected)")
    ax3.set_xlim(0, 100)
    ax3.set_title("isolated lithium islands")
    if result.largest_island_um2 is not None:
        ax3b = ax3.twinx()
        area_um2 = result.n_valid * result.pixel_size_um**2
        ax3b.plot(s, 100 * result.largest_island_um2 / area_um2, color="C4", lw=1)
        ax3b.set_ylabel("largest island (% of area)", color="C4")
        ax3b.set_ylim(0, 102)
    for f in fractions:
        for ax in (ax1, ax2, ax3):
            ax.axvline(100 * f, color="k", lw=0.8, ls="--", alpha=0.6)
        a = np.interp(f, result.stripped_fraction, result.active_fraction)
        ax1.annotate(f"{100 * f:.0f}% -> {100 * a:.0f}%", (100 * f, 100 * a), fontsize=8,
                     xytext=(4, 4), textcoords="offset points")
    if result.time_h is not None:
        top = ax1.secondary_xaxis(
            "top", functions=(lambda x: x / 100 * result.time_h[-1], lambda t: t / result.time_h[-1] * 100)
        )
        top.set_xlabel(f"time at {result.current_density_ma_cm2:g} mA cm$^{{-2}}$ (h)")
    fig.savefig(path)
    return Path(path)


def plot_snapshots(result, fractions, path) -> Path:
    """Snapshot panels: remaining Li white, depleted black, stripped % above, active % below.

    Areas outside the electrode (NaN or masked) are grey.
    """
    fractions = list(fractions)
    n = len(fractions)
    ny, nx = result._thickness.shape
    ext = [0, nx * result.pixel_size_um, ny * result.pixel_size_um, 0]
    fig = _figure(3.2 * n, 3.6)
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, f in zip(axes, fractions):
        snap = result.snapshot(f)
        img = np.where(result._valid, snap.astype(float), 0.5)
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=ext, interpolation="nearest")
        active = snap.sum() / result.n_valid
        ax.set_title(f"{100 * f:.0f}% stripped", fontsize=11)
        ax.set_xlabel(f"{100 * active:.0f}% active", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    bar_um = _scale_bar(nx * result.pixel_size_um)
    axes[0].plot([0.05 * ext[1], 0.05 * ext[1] + bar_um], [0.95 * ext[2]] * 2, color="C1", lw=3)
    axes[0].text(0.05 * ext[1], 0.93 * ext[2], f"{bar_um:g} um", color="C1", fontsize=8)
    fig.savefig(path)
    return Path(path)


def _scale_bar(width_um: float) -> float:
    target = width_um / 4
    mag = 10 ** np.floor(np.log10(target))
    for m in (5, 2, 1):
        if m * mag <= target:
            return float(m * mag)
    return float(mag)


def plot_current_maps(currents, fractions, path) -> Path:
    """Local current density maps (relative to the applied current density), log colour scale."""
    from matplotlib.colors import LogNorm

    n = len(currents)
    fig = _figure(3.6 * n, 3.8)
    axes = np.atleast_1d(fig.subplots(1, n))
    vmax = max(c.max_rel for c in currents)
    norm = LogNorm(vmin=0.3, vmax=max(vmax, 1.0))
    im = None
    for ax, c, f in zip(axes, currents, fractions):
        rel = np.asarray(c.current_rel.get() if hasattr(c.current_rel, "get") else c.current_rel)
        ny, nx = rel.shape
        ext = [0, nx * c.pixel_size_um, ny * c.pixel_size_um, 0]
        shown = np.ma.masked_where(~(rel > 0), rel)
        ax.set_facecolor("black")  # depleted (no current)
        outside = np.isnan(rel)
        if outside.any():
            ax.imshow(np.where(outside, 0.5, np.nan), cmap="gray", vmin=0, vmax=1, extent=ext,
                      interpolation="nearest")
        im = ax.imshow(shown, cmap="inferno", norm=norm, extent=ext, interpolation="nearest")
        ax.set_title(f"{100 * f:.0f}% stripped: max {c.max_rel:.1f}x", fontsize=10)
        ax.set_xlabel(
            f"{100 * c.active_fraction:.0f}% active, 1/A = {1 / c.active_fraction:.2f}, "
            f"p99 {c.percentiles[99]:.1f}x",
            fontsize=9,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    cb = fig.colorbar(im, ax=list(axes), shrink=0.85)
    cb.set_label("local / applied current density")
    fig.savefig(path)
    return Path(path)
