"""Virtual stripping of a lithium thickness map: active area, current multiplier and islands.

Lithium is removed at a uniform rate over the area where it remains: after stripping depth
``d`` (um) everywhere lithium is left (SCIENCE.md section 4),

- stripped fraction ``S(d) = sum(min(T, d)) / sum(T)``,
- active fraction ``A(d) = #{T > d} / #valid`` (fraction of the electrode area still covered),
- current multiplier ``1 / A(d)`` (the applied current flows through the remaining area),
- islands = connected components (8- or 4-connected) of ``{T > d}``.

"Valid" pixels are finite and inside ``mask``: NaN marks areas outside the electrode or never
covered; pixels with ``T == 0`` inside the electrode are bare from the start and count as
inactive. The curves are exact at every depth of the grid (sums from a single binning pass)
and the island counts come from one union-find pass over the pixels from thickest to
thinnest (:mod:`segment._cpu_kernels`), so a 4096 x 4096 map with hundreds of depths takes
well under a second.

Reading side of ``MAPS.zarr`` (written by the segmentation maps stage): a zarr group with a
2-D float array ``thickness_um`` [y, x] (NaN = never covered / outside the electrode), the
attribute ``pixel_size_um`` on that array or on the group, and an optional boolean array
``mask`` [y, x] (True = part of the electrode). See ``pipelines/_maps_io.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._backend import is_gpu_array
from ._errors import InputError

#: um of lithium metal per mAh cm^-2 (molar volume 13.02 cm^3/mol, F = 96485 C/mol)
LI_UM_PER_MAH_CM2 = 13.02 * 3.6 / 96485.0 * 1e4

__all__ = ["StrippingResult", "virtual_stripping", "synthetic_thickness_map", "LI_UM_PER_MAH_CM2"]


_TILE = 256  # pixels; a tile's union-find arrays stay in the CPU cache
_MIN_TILE = 4


def _tile_edges(n: int) -> np.ndarray:
    n_tiles = max(1, n // _TILE)
    return np.linspace(0, n, n_tiles + 1).round().astype(np.int64)


def _structure(connectivity: int) -> np.ndarray:
    return np.ones((3, 3), bool) if connectivity == 8 else np.array(
        [[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool
    )


@dataclass
class StrippingResult:
    """Curves of a virtual stripping run, one entry per stripping depth.

    Attributes
    ----------
    depth_um : (m,) ndarray
        Stripped depth (um), increasing from 0 to the largest thickness.
    stripped_fraction : (m,) ndarray
        Fraction of the plated capacity removed, ``S(d)``.
    active_fraction : (m,) ndarray
        Fraction of the valid electrode area still holding lithium, ``A(d)``.
    current_multiplier : (m,) ndarray
        ``1 / A(d)`` (inf once no lithium is left).
    n_islands : (m,) ndarray of int
        Connected components of the remaining lithium.
    mean_island_um2 : (m,) ndarray
        Mean island area (um^2; active area over island count), 0 without islands. Exact
        size distributions at chosen fractions come from :meth:`islands` / :meth:`summary`.
    largest_island_um2 : (m,) ndarray or None
        Area of the largest island (um^2) when ``largest_island=True`` was asked for.
    stripped_capacity_mah_cm2 : (m,) ndarray
        Stripped areal capacity (mAh cm^-2 of electrode area).
    time_h : (m,) ndarray or None
        Time (hours) at the applied current density, when one was given.
    local_current_density_ma_cm2 : (m,) ndarray or None
        Applied current density times the multiplier (mA cm^-2), when one was given.
    pixel_size_um : float
        Pixel size (um).
    connectivity : int
        4 or 8.
    n_valid : int
        Number of valid electrode pixels.
    mean_thickness_um : float
        Mean thickness over the valid area (um).
    capacity_mah_cm2 : float
        Plated areal capacity (mAh cm^-2).
    current_density_ma_cm2 : float or None
        Applied (geometric) current density (mA cm^-2).
    """

    depth_um: np.ndarray
    stripped_fraction: np.ndarray
    active_fraction: np.ndarray
    current_multiplier: np.ndarray
    n_islands: np.ndarray
    mean_island_um2: np.ndarray
    largest_island_um2: np.ndarray | None
    stripped_capacity_mah_cm2: np.ndarray
    time_h: np.ndarray | None
    local_current_density_ma_cm2: np.ndarray | None
    pixel_size_um: float
    connectivity: int
    n_valid: int
    mean_thickness_um: float
    capacity_mah_cm2: float
    current_density_ma_cm2: float | None
    _thickness: np.ndarray = field(repr=False)
    _valid: np.ndarray = field(repr=False)
    _sum_le: np.ndarray = field(repr=False)
    _n_active: np.ndarray = field(repr=False)

    # ------------------------------------------------------------------ exact look-ups
    def depth_at(self, fraction: float) -> float:
        """Exact depth (um) at which the stripped fraction reaches ``fraction`` (0 to 1)."""
        f = _check_fraction(fraction, allow_ends=True)
        total = self._sum_le[-1] + self.depth_um[-1] * self._n_active[-1]
        if f <= 0.0 or total <= 0.0:
            return 0.0
        if f >= 1.0:
            return float(np.nanmax(np.where(self._valid, self._thickness, np.nan)))
        target = f * total
        s_abs = self.stripped_fraction * total
        j = int(np.searchsorted(s_abs, target, side="left"))
        if j == 0:
            return float(self.depth_um[0])
        if j >= s_abs.size:  # beyond the grid: only pixels thicker than the last depth remain
            lo, hi = float(self.depth_um[-1]), np.inf
            base_sum, n_act = self._sum_le[-1], self._n_active[-1]
        else:
            lo, hi = float(self.depth_um[j - 1]), float(self.depth_um[j])
            base_sum, n_act = self._sum_le[j - 1], self._n_active[j - 1]
        from ._cpu_kernels import bracket_values

        u = np.sort(bracket_values(self._thickness.ravel(), self._valid.ravel(), lo, hi))
        # F(d) = base + sum(u <= d) + d * (n_act - #(u <= d)) is piecewise linear and increasing
        csum = np.concatenate(([0.0], np.cumsum(u)))
        f_at_u = base_sum + csum[1:] + u * (n_act - np.arange(1, u.size + 1))
        i = int(np.searchsorted(f_at_u, target, side="left"))
        left = lo if i == 0 else float(u[i - 1])
        right = hi if i == u.size else float(u[i])
        slope = n_act - i
        if slope <= 0:
            return left
        d = (target - (base_sum + csum[i])) / slope
        return float(min(max(d, left), right))

    def snapshot(self, fraction: float) -> np.ndarray:
        """Remaining-lithium mask (bool [y, x]) after stripping ``fraction`` of the capacity.

        Examples
        --------
        >>> import numpy as np
        >>> from segment import virtual_stripping
        >>> r = virtual_stripping(np.array([[1.0, 3.0], [3.0, 1.0]]), 1.0)
        >>> r.snapshot(0.5).astype(int)
        array([[0, 1],
               [1, 0]])
        """
        d = self.depth_at(fraction)
        with np.errstate(invalid="ignore"):
            return self._valid & (self._thickness > d)

    def islands(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Label the islands at a stripped fraction.

        Returns
        -------
        labels : (y, x) ndarray of int32
            0 = no lithium, 1..n = island number.
        areas_um2 : (n,) ndarray
            Area of each island (um^2), in label order.
        """
        import scipy.ndimage as ndi

        labels, n = ndi.label(self.snapshot(fraction), structure=_structure(self.connectivity))
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:] * self.pixel_size_um**2
        return labels.astype(np.int32), areas.astype(float)

    def summary(self, fractions) -> list[dict]:
        """Exact values at chosen stripped fractions (0 to 1), one dict per fraction."""
        rows = []
        for f in np.atleast_1d(np.asarray(fractions, dtype=float)):
            d = self.depth_at(float(f))
            remain = self.snapshot(float(f))
            active = float(remain.sum() / self.n_valid) if self.n_valid else 0.0
            _, areas = self.islands(float(f))
            row = {
                "stripped_fraction": float(f),
                "depth_um": d,
                "active_fraction": active,
                "current_multiplier": (1.0 / active) if active > 0 else float("inf"),
                "n_islands": int(areas.size),
                "largest_island_um2": float(areas.max()) if areas.size else 0.0,
                "median_island_um2": float(np.median(areas)) if areas.size else 0.0,
                "stripped_capacity_mah_cm2": float(f) * self.capacity_mah_cm2,
            }
            if self.current_density_ma_cm2:
                row["time_h"] = row["stripped_capacity_mah_cm2"] / self.current_density_ma_cm2
                row["local_current_density_ma_cm2"] = (
                    self.current_density_ma_cm2 * row["current_multiplier"]
                )
            rows.append(row)
        return rows

    def curves(self) -> dict[str, np.ndarray]:
        """The per-depth curves as named columns (for CSV/JSON output)."""
        cols = {
            "depth_um": self.depth_um,
            "stripped_fraction": self.stripped_fraction,
            "active_fraction": self.active_fraction,
            "current_multiplier": self.current_multiplier,
            "n_islands": self.n_islands,
            "mean_island_um2": self.mean_island_um2,
            "stripped_capacity_mah_cm2": self.stripped_capacity_mah_cm2,
        }
        if self.largest_island_um2 is not None:
            cols["largest_island_um2"] = self.largest_island_um2
        if self.time_h is not None:
            cols["time_h"] = self.time_h
            cols["local_current_density_ma_cm2"] = self.local_current_density_ma_cm2
        return cols


def _check_fraction(fraction, *, allow_ends: bool) -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"stripped fraction must be a number, got {fraction!r}") from None
    ok = (0.0 <= f <= 1.0) if allow_ends else (0.0 < f < 1.0)
    if not ok:
        rng = "[0, 1]" if allow_ends else "(0, 1)"
        raise InputError(f"stripped fraction must lie in {rng}, got {fraction!r}")
    return f


def _prepare(thickness_um, pixel_size_um, mask):
    if is_gpu_array(thickness_um):
        thickness_um = thickness_um.get()
    t = np.asarray(thickness_um, dtype=np.float64)
    if t.ndim != 2:
        raise InputError(f"thickness_um must be a 2-D map [y, x], got shape {t.shape}")
    if t.size == 0:
        raise InputError("thickness_um is empty")
    try:
        px = float(pixel_size_um)
    except (TypeError, ValueError):
        raise InputError(f"pixel_size_um must be a positive number, got {pixel_size_um!r}") from None
    if not np.isfinite(px) or px <= 0:
        raise InputError(f"pixel_size_um must be a positive number (um), got {pixel_size_um!r}")
    use_mask = mask is not None
    if use_mask:
        if is_gpu_array(mask):
            mask = mask.get()
        mask = np.asarray(mask)
        if mask.shape != t.shape:
            raise InputError(f"mask shape {mask.shape} does not match thickness_um shape {t.shape}")
        mflat = np.ascontiguousarray(mask, dtype=bool).ravel()
    else:
        mflat = np.ones(1, bool)
    t = np.ascontiguousarray(t)
    from ._cpu_kernels import valid_range

    valid, n_valid, tmin, tmax = valid_range(t.ravel(), mflat, use_mask)
    valid = valid.reshape(t.shape)
    if n_valid == 0:
        raise InputError("thickness_um has no valid pixel (all NaN or masked out)")
    if tmin < 0:
        raise InputError(f"thickness_um has negative values (min {tmin:.4g} um); expected >= 0")
    if not tmax > 0:
        raise InputError("thickness_um holds no lithium (every valid pixel is 0 um): nothing to strip")
    return t, valid, px, float(tmax)


def virtual_stripping(
    thickness_um,
    pixel_size_um: float,
    *,
    step_um: float | None = None,
    n_steps: int = 500,
    mask=None,
    connectivity: int = 8,
    current_density_ma_cm2: float | None = None,
    largest_island: bool = False,
) -> StrippingResult:
    """Strip a thickness map layer by layer at a uniform rate over the remaining lithium.

    Parameters
    ----------
    thickness_um : (y, x) array_like
        Lithium thickness map (um); NaN = outside the electrode / never covered.
        A CuPy array is copied to the host (the union-find runs on the CPU).
    pixel_size_um : float
        Lateral pixel size (um).
    step_um : float, optional
        Depth step (um); the grid runs from 0 to (at least) the largest thickness.
    n_steps : int
        Number of depth steps when ``step_um`` is not given (grid ``linspace(0, max, n_steps+1)``).
    mask : (y, x) array_like of bool, optional
        Electrode area (True); False excludes pixels never covered or outside the cell.
    connectivity : {8, 4}
        Neighbourhood of the island labelling (pixels).
    current_density_ma_cm2 : float, optional
        Applied (geometric) current density (mA cm^-2); adds the time axis (hours) and the
        local current density on the remaining area.
    largest_island : bool
        Also record the largest island area per depth (a single, untiled union-find pass:
        about three times slower on large maps).

    Returns
    -------
    StrippingResult
        Curves per depth plus exact look-ups (``depth_at``, ``snapshot``, ``islands``,
        ``summary``).

    Examples
    --------
    >>> import numpy as np
    >>> from segment import virtual_stripping
    >>> t = np.array([[10.0, 10.0, 0.0], [30.0, 0.0, 30.0]])
    >>> r = virtual_stripping(t, 1.0, step_um=10.0, connectivity=4)
    >>> r.depth_um.tolist(), r.active_fraction.tolist(), r.n_islands.tolist()
    ([0.0, 10.0, 20.0, 30.0], [0.6666666666666666, 0.3333333333333333, 0.3333333333333333, 0.0], [2, 2, 2, 0])
    """
    t, valid, px, tmax = _prepare(thickness_um, pixel_size_um, mask)
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8 (pixels), got {connectivity!r}")
    if current_density_ma_cm2 is not None and not (
        np.isfinite(current_density_ma_cm2) and current_density_ma_cm2 > 0
    ):
        raise InputError(
            f"current_density_ma_cm2 must be a positive number (mA cm^-2), got {current_density_ma_cm2!r}"
        )
    if step_um is not None:
        if not (np.isfinite(step_um) and step_um > 0):
            raise InputError(f"step_um must be a positive number (um), got {step_um!r}")
        m = int(np.ceil(tmax / step_um - 1e-12)) + 1 if tmax > 0 else 1
        depths = np.arange(max(m, 1), dtype=np.float64) * float(step_um)
    else:
        if int(n_steps) < 1:
            raise InputError(f"n_steps must be >= 1, got {n_steps!r}")
        depths = np.linspace(0.0, tmax, int(n_steps) + 1)

    from ._cpu_kernels import depth_bins, superlevel_components, superlevel_components_tiled

    flat = np.ascontiguousarray(t).ravel()
    vflat = np.ascontiguousarray(valid).ravel()
    k, counts, sums = depth_bins(flat, vflat, depths)
    n_valid = int(counts.sum())
    total = float(sums.sum())
    # pixels with k > j hold lithium at depth j
    n_active = (n_valid - np.cumsum(counts)[:-1]).astype(np.int64)
    sum_le = np.cumsum(sums)[:-1]
    stripped_abs = sum_le + depths * n_active
    stripped = stripped_abs / total if total > 0 else np.ones_like(depths)
    active = n_active / n_valid
    with np.errstate(divide="ignore"):
        multiplier = 1.0 / active
    ny, nx = t.shape
    largest = None
    if largest_island:
        ncomp, largest_px = superlevel_components(k, counts, ny, nx, int(connectivity))
        largest = largest_px * px * px
    elif min(ny, nx) >= 2 * _MIN_TILE:
        ncomp = superlevel_components_tiled(
            k, ny, nx, depths.size, int(connectivity), _tile_edges(ny), _tile_edges(nx)
        )
    else:
        ncomp = superlevel_components(k, counts, ny, nx, int(connectivity))[0]
    del k
    area_px = px * px
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_island = np.where(ncomp > 0, n_active / np.maximum(ncomp, 1), 0.0) * area_px
    mean_t = total / n_valid
    capacity = mean_t / LI_UM_PER_MAH_CM2
    stripped_cap = stripped_abs / n_valid / LI_UM_PER_MAH_CM2
    time_h = local_j = None
    if current_density_ma_cm2 is not None:
        time_h = stripped_cap / float(current_density_ma_cm2)
        local_j = float(current_density_ma_cm2) * multiplier
    return StrippingResult(
        depth_um=depths,
        stripped_fraction=stripped,
        active_fraction=active,
        current_multiplier=multiplier,
        n_islands=ncomp,
        largest_island_um2=largest,
        mean_island_um2=mean_island,
        stripped_capacity_mah_cm2=stripped_cap,
        time_h=time_h,
        local_current_density_ma_cm2=local_j,
        pixel_size_um=px,
        connectivity=int(connectivity),
        n_valid=n_valid,
        mean_thickness_um=mean_t,
        capacity_mah_cm2=capacity,
        current_density_ma_cm2=None if current_density_ma_cm2 is None else float(current_density_ma_cm2),
        _thickness=t,
        _valid=valid,
        _sum_le=sum_le,
        _n_active=n_active,
    )


def synthetic_thickness_map(
    shape: tuple[int, int] = (512, 512),
    pixel_size_um: float = 1.7,
    *,
    mean_um: float = 25.0,
    std_um: float = 7.0,
    correlation_um: float = 60.0,
    min_um: float = 0.0,
    seed: int | None = 0,
) -> np.ndarray:
    """A plated-lithium thickness map from a smooth, periodic Gaussian random field.

    Defaults follow the published plating map (SCIENCE.md sections 1 and 4): mean 25 um,
    values from below 10 um to about 50 um, thick regions hundreds of um wide over an
    800 x 800 um field (``shape=(470, 470)`` at 1.7 um).

    Parameters
    ----------
    shape : (int, int)
        Map shape [y, x] (pixels).
    pixel_size_um : float
        Pixel size (um).
    mean_um, std_um : float
        Mean and standard deviation of the thickness (um) before clipping at ``min_um``.
    correlation_um : float
        Gaussian correlation length of the field (um); blobs are a few times wider.
    min_um : float
        Lower clip (um).
    seed : int, optional
        Seed of the random generator.

    Returns
    -------
    (y, x) ndarray of float64
        Thickness (um); periodic in both directions.

    Examples
    --------
    >>> t = synthetic_thickness_map((64, 64), 5.0, seed=1)
    >>> t.shape, bool(abs(t.mean() - 25.0) < 0.5)
    ((64, 64), True)
    """
    if len(shape) != 2 or min(shape) < 2:
        raise InputError(f"shape must be two sizes >= 2 (pixels), got {shape!r}")
    if not (pixel_size_um > 0 and correlation_um > 0 and std_um >= 0):
        raise InputError(
            "pixel_size_um and correlation_um must be > 0 and std_um >= 0 (um), got "
            f"{pixel_size_um!r}, {correlation_um!r}, {std_um!r}"
        )
    rng = np.random.default_rng(seed)
    ny, nx = int(shape[0]), int(shape[1])
    noise = rng.standard_normal((ny, nx))
    ky = 2 * np.pi * np.fft.fftfreq(ny, d=pixel_size_um)
    kx = 2 * np.pi * np.fft.rfftfreq(nx, d=pixel_size_um)
    filt = np.exp(-0.5 * (correlation_um**2) * (ky[:, None] ** 2 + kx[None, :] ** 2))
    field_ = np.fft.irfft2(np.fft.rfft2(noise) * filt, s=(ny, nx))
    field_ -= field_.mean()
    sd = field_.std()
    if sd > 0:
        field_ /= sd
    return np.maximum(mean_um + std_um * field_, min_um)
