"""Numba kernels for virtual stripping: depth binning and a union-find over superlevel sets.

The island count as a function of stripping depth is the number of connected components of
the superlevel sets ``{T > d}``. Adding pixels from the thickest to the thinnest and merging
each with its already-present neighbours (union-find with union by size and path halving)
gives every count in one pass over the map, instead of one labelling per depth.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _bin_of(t, depths, d0, step, m):
    g = np.ceil((t - d0) / step)  # exact for uniform depths up to rounding, fixed below
    if g < 0.0:
        j = 0
    elif g > m:
        j = m
    else:
        j = int(g)
    while j > 0 and depths[j - 1] >= t:
        j -= 1
    while j < m and depths[j] < t:
        j += 1
    return j


@numba.njit(cache=True, parallel=True)
def depth_bins(thickness, valid, depths):
    """Bin index of each pixel: the number of depths strictly below its thickness.

    Parameters
    ----------
    thickness : (n,) float64
        Flattened thickness map (um).
    valid : (n,) bool
        Pixels that take part (finite, inside the mask).
    depths : (m,) float64
        Increasing stripping depths (um).

    Returns
    -------
    k : (n,) int32
        ``k[i] = #{j : depths[j] < thickness[i]}`` for valid pixels, ``-1`` otherwise; pixel i
        still holds lithium at depth ``depths[j]`` exactly when ``j < k[i]``.
    counts : (m + 1,) int64
        Number of valid pixels in each bin.
    sums : (m + 1,) float64
        Sum of the thickness (um) of the valid pixels in each bin.
    """
    n = thickness.size
    m = depths.size
    d0 = depths[0]
    step = (depths[m - 1] - d0) / (m - 1) if m > 1 else 1.0
    if step <= 0.0:
        step = 1.0
    k = np.empty(n, np.int32)
    nchunk = 16
    chunk = (n + nchunk - 1) // nchunk
    c_counts = np.zeros((nchunk, m + 1), np.int64)
    c_sums = np.zeros((nchunk, m + 1), np.float64)
    for c in numba.prange(nchunk):
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            if not valid[i]:
                k[i] = -1
                continue
            t = thickness[i]
            j = _bin_of(t, depths, d0, step, m)
            k[i] = j
            c_counts[c, j] += 1
            c_sums[c, j] += t
    counts = np.zeros(m + 1, np.int64)
    sums = np.zeros(m + 1, np.float64)
    for c in range(nchunk):
        for j in range(m + 1):
            counts[j] += c_counts[c, j]
            sums[j] += c_sums[c, j]
    return k, counts, sums


@numba.njit(cache=True, parallel=True)
def valid_range(thickness, mask, use_mask):
    """Valid pixels (finite and in ``mask``) and their count, minimum and maximum (um)."""
    n = thickness.size
    valid = np.empty(n, np.bool_)
    nchunk = 16
    chunk = (n + nchunk - 1) // nchunk
    cnt = np.zeros(nchunk, np.int64)
    lo = np.full(nchunk, np.inf)
    hi = np.full(nchunk, -np.inf)
    for c in numba.prange(nchunk):
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            t = thickness[i]
            v = np.isfinite(t) and (mask[i] if use_mask else True)
            valid[i] = v
            if v:
                cnt[c] += 1
                if t < lo[c]:
                    lo[c] = t
                if t > hi[c]:
                    hi[c] = t
    return valid, cnt.sum(), lo.min(), hi.max()


@numba.njit(cache=True, nogil=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True, inline="always")
def _union(parent, size, rp, q, ncomp, biggest):
    """Merge the set of q into the set whose root is (or was) rp; return the new root."""
    rq = _find(parent, q)
    rp = _find(parent, rp)
    if rq == rp:
        return rp, ncomp, biggest
    if size[rp] < size[rq]:
        rp, rq = rq, rp
    parent[rq] = rp
    size[rp] += size[rq]
    if size[rp] > biggest:
        biggest = size[rp]
    return rp, ncomp - 1, biggest


@numba.njit(cache=True, nogil=True)
def superlevel_components(k, counts, ny, nx, connectivity):
    """Count connected components of ``{k > j}`` for every depth index ``j``.

    Parameters
    ----------
    k : (ny * nx,) int32
        Bin index per pixel from :func:`depth_bins` (``-1`` = not valid).
    counts : (m + 1,) int64
        Pixels per bin.
    ny, nx : int
        Map shape (pixels).
    connectivity : int
        4 or 8.

    Returns
    -------
    n_components : (m,) int64
        Number of islands at each depth.
    largest : (m,) int64
        Size (pixels) of the largest island at each depth.
    """
    m = counts.size - 1
    n = ny * nx
    # counting sort of pixel indices by bin, thickest bins first
    start = np.zeros(m + 2, np.int64)
    for b in range(m + 1):
        start[b + 1] = start[b] + counts[b]
    fill = start[:-1].copy()
    order = np.empty(start[m + 1], np.int32)
    for i in range(n):
        b = k[i]
        if b >= 0:
            order[fill[b]] = i
            fill[b] += 1
    parent = np.full(n, -1, np.int32)
    size = np.zeros(n, np.int32)
    n_components = np.zeros(m, np.int64)
    largest = np.zeros(m, np.int64)
    ncomp = 0
    biggest = 0
    for b in range(m, 0, -1):
        for t in range(start[b], start[b + 1]):
            p = order[t]
            parent[p] = p
            size[p] = 1
            ncomp += 1
            if biggest < 1:
                biggest = 1
            y = p // nx
            x = p - y * nx
            up = y > 0
            down = y < ny - 1
            left = x > 0
            right = x < nx - 1
            n_ = up and parent[p - nx] >= 0
            s_ = down and parent[p + nx] >= 0
            w_ = left and parent[p - 1] >= 0
            e_ = right and parent[p + 1] >= 0
            rp = p
            # 8-connectivity: present orthogonal neighbours next to each other on the ring
            # N-E-S-W are diagonal neighbours, hence already in one component
            if n_:
                rp, ncomp, biggest = _union(parent, size, rp, p - nx, ncomp, biggest)
            if s_ and (connectivity == 4 or not (n_ and (w_ or e_))):
                rp, ncomp, biggest = _union(parent, size, rp, p + nx, ncomp, biggest)
            if w_ and (connectivity == 4 or not (n_ or s_)):
                rp, ncomp, biggest = _union(parent, size, rp, p - 1, ncomp, biggest)
            if e_ and (connectivity == 4 or not (n_ or s_)):
                rp, ncomp, biggest = _union(parent, size, rp, p + 1, ncomp, biggest)
            if connectivity == 8:
                # a corner needs its own union only when both orthogonals beside it are absent
                if up and left and not (n_ or w_) and parent[p - nx - 1] >= 0:
                    rp, ncomp, biggest = _union(parent, size, rp, p - nx - 1, ncomp, biggest)
                if up and right and not (n_ or e_) and parent[p - nx + 1] >= 0:
                    rp, ncomp, biggest = _union(parent, size, rp, p - nx + 1, ncomp, biggest)
                if down and left and not (s_ or w_) and parent[p + nx - 1] >= 0:
                    rp, ncomp, biggest = _union(parent, size, rp, p + nx - 1, ncomp, biggest)
                if down and right and not (s_ or e_) and parent[p + nx + 1] >= 0:
                    rp, ncomp, biggest = _union(parent, size, rp, p + nx + 1, ncomp, biggest)
        n_components[b - 1] = ncomp
        largest[b - 1] = biggest
    return n_components, largest


_ABSENT = np.int32(-(2**31) + 1)


@numba.njit(cache=True, nogil=True)
def _tfind(par, i):
    # par[i] < 0: i is a root holding -size; otherwise the parent index
    while par[i] >= 0:
        j = par[i]
        if par[j] >= 0:
            par[i] = par[j]  # path halving
        i = j
    return i


@numba.njit(cache=True, nogil=True)
def _boundary_id(ly, lx, h, w):
    """Index of a tile-border pixel along the tile perimeter, -1 for an inner pixel."""
    if ly == 0:
        return lx
    if ly == h - 1:
        return w + lx
    if lx == 0:
        return 2 * w + ly - 1
    if lx == w - 1:
        return 2 * w + (h - 2) + ly - 1
    return -1


@numba.njit(cache=True, nogil=True)
def _tile_pass(k, nx, y0, y1, x0, x1, m, conn8, off, interior_out, added_out, ev_bin, ev_a, ev_b):
    """Union-find inside one tile.

    Components that never touch the tile border are counted here (``interior_out[b - 1]``
    after bin b); merges between border-touching components become events ``(bin, a, b)``
    on global border-node ids for the global pass; ``added_out[b]`` counts the border pixels
    of bin b. Returns the number of events.
    """
    h = y1 - y0
    w = x1 - x0
    nloc = h * w
    counts = np.zeros(m + 2, np.int64)
    for ly in range(h):
        base = (y0 + ly) * nx + x0
        for lx in range(w):
            b = k[base + lx]
            if b >= 1:
                counts[b] += 1
    start = np.zeros(m + 2, np.int64)
    for b in range(1, m + 1):
        start[b + 1] = start[b] + counts[b]
    fill = start.copy()
    order = np.empty(start[m + 1], np.int32)
    for ly in range(h):
        base = (y0 + ly) * nx + x0
        for lx in range(w):
            b = k[base + lx]
            if b >= 1:
                order[fill[b]] = ly * w + lx
                fill[b] += 1
    par = np.full(nloc, _ABSENT, np.int32)
    rep = np.empty(nloc, np.int32)
    interior = 0
    nev = 0
    nbs = np.empty(8, np.int64)
    for b in range(m, 0, -1):
        for t in range(start[b], start[b + 1]):
            p = order[t]
            ly = p // w
            lx = p - ly * w
            par[p] = -1
            bid = _boundary_id(ly, lx, h, w)
            if bid >= 0:
                rep[p] = off + bid
                added_out[b] += 1
            else:
                rep[p] = -1
                interior += 1
            up = ly > 0
            down = ly < h - 1
            left = lx > 0
            right = lx < w - 1
            n_ = up and par[p - w] != _ABSENT
            s_ = down and par[p + w] != _ABSENT
            w_ = left and par[p - 1] != _ABSENT
            e_ = right and par[p + 1] != _ABSENT
            nn = 0
            # 8-connectivity: present orthogonal neighbours adjacent on the ring N-E-S-W
            # are diagonal neighbours of each other, hence already in one component
            if n_:
                nbs[nn] = p - w
                nn += 1
            if s_ and not (conn8 and n_ and (w_ or e_)):
                nbs[nn] = p + w
                nn += 1
            if w_ and not (conn8 and (n_ or s_)):
                nbs[nn] = p - 1
                nn += 1
            if e_ and not (conn8 and (n_ or s_)):
                nbs[nn] = p + 1
                nn += 1
            if conn8:
                if up and left and not (n_ or w_) and par[p - w - 1] != _ABSENT:
                    nbs[nn] = p - w - 1
                    nn += 1
                if up and right and not (n_ or e_) and par[p - w + 1] != _ABSENT:
                    nbs[nn] = p - w + 1
                    nn += 1
                if down and left and not (s_ or w_) and par[p + w - 1] != _ABSENT:
                    nbs[nn] = p + w - 1
                    nn += 1
                if down and right and not (s_ or e_) and par[p + w + 1] != _ABSENT:
                    nbs[nn] = p + w + 1
                    nn += 1
            for s in range(nn):
                ra = _tfind(par, p)
                rb = _tfind(par, nbs[s])
                if ra == rb:
                    continue
                if par[ra] > par[rb]:  # ra is the smaller set: keep rb as root
                    ra, rb = rb, ra
                par[ra] += par[rb]
                par[rb] = ra
                a_rep = rep[ra]
                b_rep = rep[rb]
                if a_rep >= 0 and b_rep >= 0:
                    ev_bin[nev] = b
                    ev_a[nev] = a_rep
                    ev_b[nev] = b_rep
                    nev += 1
                else:
                    interior -= 1
                    if a_rep < 0:
                        rep[ra] = b_rep
        interior_out[b - 1] = interior
    return nev


@numba.njit(cache=True, nogil=True)
def _gfind(par, i):
    while par[i] != i:
        par[i] = par[par[i]]
        i = par[i]
    return i


@numba.njit(cache=True, nogil=True)
def _node_id(y, x, ty, tx, y_edges, x_edges, offs, ntx):
    t = ty[y] * ntx + tx[x]
    y0 = y_edges[ty[y]]
    x0 = x_edges[tx[x]]
    h = y_edges[ty[y] + 1] - y0
    w = x_edges[tx[x] + 1] - x0
    return offs[t] + _boundary_id(y - y0, x - x0, h, w)


@numba.njit(cache=True, parallel=True)
def superlevel_components_tiled(k, ny, nx, m, connectivity, y_edges, x_edges):
    """Island counts of ``{k > j}`` for every depth index ``j``, tile by tile.

    Same result as :func:`superlevel_components` (counts only), but each tile's union-find
    stays in cache and tiles run in parallel; a small global union-find over tile-border
    pixels then joins the tiles level by level.

    Parameters
    ----------
    k : (ny * nx,) int32
        Bin index per pixel (``-1`` = not valid).
    ny, nx, m : int
        Map shape (pixels) and number of depths.
    connectivity : int
        4 or 8.
    y_edges, x_edges : (nty + 1,), (ntx + 1,) int64
        Tile boundaries (pixels); every tile at least 2 x 2.
    """
    conn8 = connectivity == 8
    nty = y_edges.size - 1
    ntx = x_edges.size - 1
    ntiles = nty * ntx
    offs = np.zeros(ntiles + 1, np.int64)
    for t in range(ntiles):
        h = y_edges[t // ntx + 1] - y_edges[t // ntx]
        w = x_edges[t % ntx + 1] - x_edges[t % ntx]
        offs[t + 1] = offs[t] + 2 * w + 2 * (h - 2)
    nnodes = offs[ntiles]
    interior = np.zeros((ntiles, m), np.int64)
    ev_bin = np.empty(nnodes, np.int32)
    ev_a = np.empty(nnodes, np.int32)
    ev_b = np.empty(nnodes, np.int32)
    nev = np.zeros(ntiles, np.int64)
    added_t = np.zeros((ntiles, m + 1), np.int64)
    for t in numba.prange(ntiles):
        ty = t // ntx
        tx = t % ntx
        o0 = offs[t]
        o1 = offs[t + 1]
        nev[t] = _tile_pass(
            k, nx, y_edges[ty], y_edges[ty + 1], x_edges[tx], x_edges[tx + 1], m, conn8,
            o0, interior[t], added_t[t], ev_bin[o0:o1], ev_a[o0:o1], ev_b[o0:o1],
        )
    # ---- global pass over tile-border nodes
    tyof = np.empty(ny, np.int64)
    for t in range(nty):
        for y in range(y_edges[t], y_edges[t + 1]):
            tyof[y] = t
    txof = np.empty(nx, np.int64)
    for t in range(ntx):
        for x in range(x_edges[t], x_edges[t + 1]):
            txof[x] = t
    # seam edges between tiles: (bin, node, node), bin = min(k) of the two pixels
    nseam = 3 * ((nty - 1) * nx + (ntx - 1) * ny)
    se_bin = np.empty(nseam, np.int32)
    se_a = np.empty(nseam, np.int32)
    se_b = np.empty(nseam, np.int32)
    ns = 0
    for ti in range(1, nty):
        y = y_edges[ti]
        for x in range(nx):
            ka = k[(y - 1) * nx + x]
            if ka < 1:
                continue
            for dx in (0, -1, 1):
                if dx != 0 and not conn8:
                    continue
                xx = x + dx
                if xx < 0 or xx >= nx:
                    continue
                kb = k[y * nx + xx]
                if kb < 1:
                    continue
                se_bin[ns] = min(ka, kb)
                se_a[ns] = _node_id(y - 1, x, tyof, txof, y_edges, x_edges, offs, ntx)
                se_b[ns] = _node_id(y, xx, tyof, txof, y_edges, x_edges, offs, ntx)
                ns += 1
    for ti in range(1, ntx):
        x = x_edges[ti]
        for y in range(ny):
            ka = k[y * nx + x - 1]
            if ka < 1:
                continue
            for dy in (0, -1, 1):
                if dy != 0 and not conn8:
                    continue
                yy = y + dy
                if yy < 0 or yy >= ny:
                    continue
                kb = k[yy * nx + x]
                if kb < 1:
                    continue
                se_bin[ns] = min(ka, kb)
                se_a[ns] = _node_id(y, x - 1, tyof, txof, y_edges, x_edges, offs, ntx)
                se_b[ns] = _node_id(yy, x, tyof, txof, y_edges, x_edges, offs, ntx)
                ns += 1
    # nodes appearing per bin
    added = np.zeros(m + 2, np.int64)
    for t in range(ntiles):
        for b in range(m + 1):
            added[b] += added_t[t, b]
    # counting sort of all unions (tile events + seam edges) by bin
    ucount = np.zeros(m + 2, np.int64)
    for t in range(ntiles):
        for e in range(offs[t], offs[t] + nev[t]):
            ucount[ev_bin[e]] += 1
    for e in range(ns):
        ucount[se_bin[e]] += 1
    ustart = np.zeros(m + 3, np.int64)
    for b in range(m + 2):
        ustart[b + 1] = ustart[b] + ucount[b]
    ufill = ustart[:-1].copy()
    ua = np.empty(ustart[m + 2], np.int32)
    ub = np.empty(ustart[m + 2], np.int32)
    for t in range(ntiles):
        for e in range(offs[t], offs[t] + nev[t]):
            b = ev_bin[e]
            ua[ufill[b]] = ev_a[e]
            ub[ufill[b]] = ev_b[e]
            ufill[b] += 1
    for e in range(ns):
        b = se_bin[e]
        ua[ufill[b]] = se_a[e]
        ub[ufill[b]] = se_b[e]
        ufill[b] += 1
    gpar = np.arange(nnodes).astype(np.int32)
    gsize = np.ones(nnodes, np.int32)
    n_components = np.zeros(m, np.int64)
    nodes = 0
    merged = 0
    for b in range(m, 0, -1):
        nodes += added[b]
        for e in range(ustart[b], ustart[b + 1]):
            ra = _gfind(gpar, ua[e])
            rb = _gfind(gpar, ub[e])
            if ra == rb:
                continue
            if gsize[ra] < gsize[rb]:
                ra, rb = rb, ra
            gpar[rb] = ra
            gsize[ra] += gsize[rb]
            merged += 1
        tot = nodes - merged
        for t in range(ntiles):
            tot += interior[t, b - 1]
        n_components[b - 1] = tot
    return n_components


@numba.njit(cache=True, nogil=True)
def bracket_values(thickness, valid, lo, hi):
    """Valid thickness values t with ``lo < t <= hi`` (um), in input order."""
    n = thickness.size
    c = 0
    for i in range(n):
        if valid[i] and thickness[i] > lo and thickness[i] <= hi:
            c += 1
    out = np.empty(c, np.float64)
    c = 0
    for i in range(n):
        if valid[i] and thickness[i] > lo and thickness[i] <= hi:
            out[c] = thickness[i]
            c += 1
    return out
