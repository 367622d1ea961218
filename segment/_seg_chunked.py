"""Lateral tiles for the layer labelling of volumes larger than memory.

The layer cut of :func:`segment.segment_layers` is local to each column along the stacking
axis (axis 0 here); only the lateral Gaussian smoothing needs neighbouring columns (a halo
of its kernel radius). A :class:`TileSource` hands out lateral tiles of the full stacking
extent, with that halo, from an in-memory array (one tile: the whole volume, smoothed copies
cached) or from a Dask / zarr-backed array (tiles read one at a time, nothing cached), so
that the same code gives bit-identical results either way:

* statistics over the whole volume are taken from samples that do not depend on the
  tiling (a regular voxel sub-sample, a regular subset of footprint columns) or summed
  exactly (:class:`ExactSum`, integer accumulation of float32 mantissas per exponent);
* connected components of inclusion voxels are merged across tile faces with a union-find
  (:class:`TileComponents`), so their sizes are the whole-volume sizes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._backend import array_module, ndimage_module, resolve_device, to_device

_EXP_OFFSET = 160  # float32 frexp exponents lie in [-148, 129]
_N_EXP = 300
_MANT_BITS = 24
MAX_COLUMN_VOXELS = 1 << 22  # voxels in the column sample used for noise, spreads and core medians


def gaussian_radius(sigma_px: float) -> int:
    """Kernel radius (voxels) of scipy's ``gaussian_filter`` (truncate 4) for ``sigma_px``."""
    return int(4.0 * float(sigma_px) + 0.5) if sigma_px and sigma_px > 0 else 0


def lateral_smooth(vol, smooth_px, device):
    """Gaussian smoothing across the layers only (axis 1 and 2), on the chosen device; host float32."""
    dev = resolve_device(device, vol)
    x = to_device(vol, dev)
    xp = array_module(x)
    x = x.astype(xp.float32)
    if smooth_px and smooth_px > 0:
        x = ndimage_module(xp).gaussian_filter(x, (0.0, float(smooth_px), float(smooth_px)), mode="reflect")
    return np.asarray(to_device(x, "cpu"))


class TileSource:
    """Lateral tiles (full extent along axis 0) of a volume, with a halo for lateral filters.

    Parameters
    ----------
    volume : ndarray, cupy array or dask.array.Array, (z, y, x)
        Stacking axis first.
    tile_px : int or None
        Lateral tile edge in voxels; None = one tile holding the whole volume (in memory).
    device : str
        Where the smoothing runs ("auto", "cpu", "gpu").
    """

    def __init__(self, volume, tile_px, device):
        self.volume = volume
        self.shape = tuple(int(s) for s in volume.shape)
        nz, ny, nx = self.shape
        self.device = device
        self.single = tile_px is None or (int(tile_px) >= ny and int(tile_px) >= nx)
        self.tile_px = max(ny, nx) if self.single else int(tile_px)
        self._host = None
        self._cache = {}
        if self.single:
            v = volume.compute() if hasattr(volume, "dask") else volume
            self.device = resolve_device(device, v)  # a CuPy input keeps the smoothing on the GPU
            self._raw = v
            self._host = np.asarray(to_device(v, "cpu"))

    def tiles(self):
        """Lateral tile bounds (y0, y1, x0, x1), row by row."""
        _, ny, nx = self.shape
        t = self.tile_px
        for y0 in range(0, ny, t):
            for x0 in range(0, nx, t):
                yield y0, min(y0 + t, ny), x0, min(x0 + t, nx)

    @property
    def n_tiles(self) -> int:
        _, ny, nx = self.shape
        return -(-ny // self.tile_px) * -(-nx // self.tile_px)

    def read(self, bounds, sigmas=(), raw=False):
        """Interior of tile ``bounds`` = (y0, y1, x0, x1): the raw voxels (``raw``) and the copies
        smoothed laterally with each of ``sigmas`` (voxels; float32), identical for any tiling.

        The tile is read once, grown by the largest kernel radius (clipped at the volume).
        """
        y0, y1, x0, x1 = bounds
        keys = [round(float(s), 6) for s in sigmas]
        if self.single:
            for k in keys:
                if k not in self._cache:
                    self._cache[k] = lateral_smooth(self._raw, k, self.device)
            sm = [self._cache[k][:, y0:y1, x0:x1] for k in keys]
            return (self._host[:, y0:y1, x0:x1] if raw else None), sm
        _, ny, nx = self.shape
        halo = max([gaussian_radius(k) for k in keys], default=0)
        ya, yb, xa, xb = max(0, y0 - halo), min(ny, y1 + halo), max(0, x0 - halo), min(nx, x1 + halo)
        blk = self.volume[:, ya:yb, xa:xb]
        blk = blk.compute() if hasattr(blk, "compute") else blk
        blk = np.asarray(to_device(blk, "cpu"))
        inner = (slice(None), slice(y0 - ya, y1 - ya), slice(x0 - xa, x1 - xa))
        done = {}
        for k in keys:
            if k not in done:
                done[k] = np.ascontiguousarray(lateral_smooth(blk, k, self.device)[inner])
        return (np.ascontiguousarray(blk[inner]) if raw else None), [done[k] for k in keys]

    def full_smoothed(self, sigma_px):
        """The whole smoothed volume (in-memory source only), else None."""
        return self.read((0, self.shape[1], 0, self.shape[2]), (sigma_px,))[1][0] if self.single else None


def strided_sample(src: TileSource, sigma_px, steps) -> np.ndarray:
    """``volume[::sz, ::sy, ::sx]`` (``sigma_px`` None) or the same points of the laterally
    smoothed volume (float32), gathered tile by tile in C order; ``steps`` = (sz, sy, sx)."""
    nz, ny, nx = src.shape
    sz, sy, sx = (int(s) for s in steps)
    out = None
    for y0, y1, x0, x1 in src.tiles():
        oy, ox = (-y0) % sy, (-x0) % sx
        if oy >= y1 - y0 or ox >= x1 - x0:
            continue
        if sigma_px is None:
            if src.single:
                part = src._host[::sz, y0 + oy:y1:sy, x0 + ox:x1:sx]
            else:  # read only the sampled planes and rows of the tile
                part = src.volume[::sz, y0 + oy:y1:sy, x0 + ox:x1:sx]
                part = np.asarray(to_device(part.compute() if hasattr(part, "dask") else part, "cpu"))
        else:
            part = src.read((y0, y1, x0, x1), (sigma_px,))[1][0][::sz, oy::sy, ox::sx]
        if out is None:
            out = np.empty((-(-nz // sz), -(-ny // sy), -(-nx // sx)), part.dtype)
        gy, gx = (y0 + oy) // sy, (x0 + ox) // sx
        out[:, gy:gy + part.shape[1], gx:gx + part.shape[2]] = part
    return out


@numba.njit(cache=True, nogil=True)
def _accumulate(v, mask, acc):
    """acc[z, e] += integer mantissa of every masked float32 voxel with frexp exponent e."""
    nz, ny, nx = v.shape
    scale = float(1 << 24)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    val = float(v[z, y, x])
                    if val != 0.0 and math.isfinite(val):
                        m, e = math.frexp(val)
                        acc[z, e + 160] += np.int64(m * scale)


class ExactSum:
    """Exact sums of float32 values per row, independent of the order they arrive in.

    Each value m * 2**e (24-bit integer mantissa m) is added to an int64 bucket of its
    exponent; the total is formed with Python integers and rounded once, so the mean of a
    set of voxels does not depend on how the volume was split into tiles.
    """

    def __init__(self, n_rows: int):
        self.acc = np.zeros((int(n_rows), _N_EXP), np.int64)
        self.count = 0

    def add(self, values, mask):
        """Add the float32 ``values`` (rows, ...) where ``mask`` (same shape) is True, row by row."""
        v = np.ascontiguousarray(values, np.float32)
        m = np.ascontiguousarray(np.broadcast_to(mask, v.shape))
        v3 = v.reshape(v.shape[0], 1, -1)
        _accumulate(v3, m.reshape(v3.shape), self.acc)

    def totals(self) -> list[int]:
        """Per row: the exact sum times 2**(_EXP_OFFSET + 24) as a Python integer."""
        out = []
        for row in self.acc:
            nz = np.flatnonzero(row)
            out.append(sum(int(row[b]) << int(b) for b in nz))
        return out

    def means(self, counts) -> np.ndarray:
        """Correctly rounded means per row (float64): exact sum / ``counts`` (int or per row)."""
        den = 1 << (_EXP_OFFSET + _MANT_BITS)
        counts = np.broadcast_to(np.asarray(counts, np.int64), (self.acc.shape[0],))
        return np.array([t / (den * int(c)) if c > 0 else np.nan for t, c in zip(self.totals(), counts)])

    def total_mean(self, count) -> float:
        """Correctly rounded mean over all rows together."""
        den = 1 << (_EXP_OFFSET + _MANT_BITS)
        return sum(self.totals()) / (den * int(count)) if count > 0 else float("nan")


def sample_columns(fp: np.ndarray, nz: int, max_voxels: int | None = None, max_cols: int = 65536) -> np.ndarray:
    """Flat indices (sorted) of a regular subset of the footprint columns, for statistics.

    At most ``max_cols`` columns and about ``max_voxels`` (default ``MAX_COLUMN_VOXELS``)
    voxels (columns times ``nz``), at least 1024 columns; all of them when there are few.
    """
    if max_voxels is None:
        max_voxels = MAX_COLUMN_VOXELS
    idx = np.flatnonzero(np.asarray(fp).ravel())
    cap = max(1024, min(int(max_cols), int(max_voxels) // max(int(nz), 1)))
    if idx.size > cap:
        idx = idx[:: int(np.ceil(idx.size / cap))]
    return idx


class ColumnSample:
    """Values along axis 0 at a fixed set of columns (flat (y, x) indices), filled tile by tile."""

    def __init__(self, cols: np.ndarray, shape):
        self.cols = np.asarray(cols, np.int64)
        self.nz = shape[0]
        self.cy, self.cx = np.divmod(self.cols, shape[2])
        self.values = None

    def put(self, bounds, tile):
        """Copy the tile's (interior, (nz, y1-y0, x1-x0)) values at the sample columns inside it."""
        y0, y1, x0, x1 = bounds
        sel = np.flatnonzero((self.cy >= y0) & (self.cy < y1) & (self.cx >= x0) & (self.cx < x1))
        if self.values is None:
            self.values = np.empty((self.nz, self.cols.size), tile.dtype)
        if sel.size:
            self.values[:, sel] = tile[:, self.cy[sel] - y0, self.cx[sel] - x0]


class _UnionFind:
    def __init__(self):
        self.parent = np.zeros(0, np.int64)
        self.size = np.zeros(0, np.int64)

    def extend(self, sizes):
        n0 = self.parent.size
        self.parent = np.concatenate([self.parent, np.arange(n0, n0 + sizes.size)])
        self.size = np.concatenate([self.size, sizes.astype(np.int64)])
        return n0

    def find(self, a):
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:
            p[a], a = root, p[a]
        return root

    def union_pairs(self, a, b):
        for i, j in set(zip(a.tolist(), b.tolist())):
            ri, rj = self.find(i), self.find(j)
            if ri != rj:
                if self.size[ri] < self.size[rj]:
                    ri, rj = rj, ri
                self.parent[rj] = ri
                self.size[ri] += self.size[rj]


class TileComponents:
    """Face-connected components of a boolean mask given tile by tile, merged across tiles.

    Call :meth:`add` for every tile in :meth:`TileSource.tiles` order with the tile's mask;
    afterwards :meth:`large` tells, for a tile's local labelling, which local components
    belong to a whole-volume component of at least ``min_size`` voxels.
    """

    def __init__(self, shape):
        self.shape = shape
        self.uf = _UnionFind()
        self.offsets = {}
        self.right = {}  # (y0, x1) -> last-x face labels (global ids) of the tile ending at x1
        self.bottom = {}  # (y1, x0, x1) -> last-y face labels

    @staticmethod
    def label(mask):
        from scipy import ndimage

        return ndimage.label(mask)

    def add(self, bounds, mask):
        y0, y1, x0, x1 = bounds
        lab, n = self.label(mask)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        off = self.uf.extend(sizes)
        self.offsets[bounds] = off
        g = np.where(lab > 0, lab.astype(np.int64) + off - 1, -1)
        left = self.right.pop((y0, x0), None)
        if left is not None:  # left neighbour's last column vs this tile's first column
            both = (left >= 0) & (g[:, :, 0] >= 0)
            self.uf.union_pairs(left[both], g[:, :, 0][both])
        for key in [k for k in self.bottom if k[0] == y0 and k[1] < x1 and k[2] > x0]:
            face = self.bottom[key]
            a0, a1 = max(key[1], x0), min(key[2], x1)
            up = face[:, a0 - key[1]:a1 - key[1]]
            me = g[:, 0, a0 - x0:a1 - x0]
            both = (up >= 0) & (me >= 0)
            self.uf.union_pairs(up[both], me[both])
            if key[2] <= x1:
                del self.bottom[key]
        self.right[(y0, x1)] = g[:, :, -1].copy()
        self.bottom[(y1, x0, x1)] = g[:, -1, :].copy()

    def large(self, bounds, n_local, min_size):
        """Boolean lookup (n_local + 1,) for a tile's local labels: True for big whole components."""
        off = self.offsets[bounds]
        out = np.zeros(n_local + 1, bool)
        for k in range(n_local):
            out[k + 1] = self.uf.size[self.uf.find(off + k)] >= min_size
        return out
