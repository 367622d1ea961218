"""Numba CPU kernels for HEXITEC frame processing (see :func:`compton.process_frames`).

One call of :func:`process_block` handles a range of frames for block ``t``, writing into
that block's partial histogram and per-pixel counters. It releases the GIL, so
``CpuAccumulator`` in :mod:`compton.frames` runs one Python worker thread per block, each
pulling small frame ranges from a shared list (dynamic balancing, no spinning threads when
the cores are shared); the partial histograms are merged by :func:`merge_block`. Everything is
float64 and evaluated in a fixed order, so the CUDA kernel in ``_cuda_kernels.py`` gives the
same cube bit for bit.

Per frame, a SIMD pass flags the candidate pixels (``raw >= fast_cut``) of the whole frame as
bytes; the non-zero 8-byte words are compacted without branches, and only their set bytes
become hits (a compact per-frame list), so charge sharing works on the sparse list with a
padded frame-sized map that is cleared at the hit positions only. Histogram cells are
buffered and added in a tight loop, so their cache misses overlap.

Frames arrive as ``[n, rows * cols]`` in *storage order*: storage position ``s`` of a row holds
pixel column ``colmap[s]`` (identity for de-interleaved frames; the HEXITEC ``.bin`` column
interleave otherwise), so the de-interleave costs nothing. Per-pixel arrays (``cut``, ``dark``,
``gain``, ``icpt``) are given in storage order too; hits are recorded with their true pixel
index ``row * cols + col``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

MODE_NONE = 0
MODE_DISCRIMINATE = 1
MODE_ADD = 2
_KEY_BUFFER = 1 << 15  # histogram cells buffered per block before they are added


try:  # numba's count-trailing-zeros intrinsic (one instruction)
    from numba.cpython.unsafe.numbers import trailing_zeros
except ImportError:  # pragma: no cover - moved in another numba version: portable loop

    @njit(cache=True, nogil=True, inline="always")
    def trailing_zeros(x):
        n = 0
        while (x & np.uint64(1)) == 0:
            x >>= np.uint64(1)
            n += 1
        return n


@njit(cache=True, nogil=True, inline="always")
def _bin_index(e, edges, inv_bw):
    """Index of the half-open bin [edges[b], edges[b + 1]) holding ``e``, or -1 outside."""
    nb = edges.shape[0] - 1
    if not (e >= edges[0] and e < edges[nb]):
        return -1
    b = int((e - edges[0]) * inv_bw)
    if b > nb - 1:
        b = nb - 1
    if b < 0:
        b = 0
    while b > 0 and e < edges[b]:
        b -= 1
    while b < nb - 1 and e >= edges[b + 1]:
        b += 1
    return b


@njit(cache=True, nogil=True)
def _record(t, q, e, edges, inv_bw, keys, nk, accepted):
    """Accept an event of energy ``e`` at pixel ``q``; its histogram cell goes to ``keys``."""
    accepted[t, q] += 1
    b = _bin_index(e, edges, inv_bw)
    if b >= 0:
        keys[nk] = np.int64(q) * (edges.shape[0] - 1) + b
        nk += 1
    return nk


@njit(cache=True, nogil=True)
def _flush(hist_t, keys, nk):
    """Add the buffered histogram cells ``keys[:nk]`` to ``hist_t`` (flat [npix * bins]).

    A tight loop of independent increments: the cache misses of the large histogram overlap
    instead of stalling the event logic one by one.
    """
    for k in range(nk):
        hist_t[keys[k]] += 1
    return 0


@njit(cache=True, nogil=True)
def process_block(
    t, f0, f1, frames, prev, has_prev, rows, cols, colmap, cut, fast_cut, dark, gain, icpt, calibrate,
    next_frame, mode, half, edges, inv_bw, hist, found, rejected, accepted,
):
    """Process frames ``f0`` to ``f1`` of ``frames`` [n, rows * cols] (storage order) into block ``t``.

    ``hist`` [n_blocks, rows * cols, bins] (uint16 is enough while a block handles at most
    65535 frames between merges: a pixel records at most one event per frame) and
    ``found``/``rejected``/``accepted`` [n_blocks, rows * cols] are added to at index ``t``
    only, so blocks with different ``t`` may run at the same time (the GIL is released).
    ``prev`` is the storage-order frame before ``frames[0]`` (used by the next-frame correction
    when ``has_prev``). ``cut`` is the exact per-pixel event test ``raw >= cut``; ``fast_cut`` (in
    the frames' dtype, ``fast_cut <= cut`` wherever a value can pass) is compared over the
    whole frame at once (SIMD) to find the few candidate pixels.
    """
    w = cols + 4  # hit map padded by 2 pixels on every side: no bounds checks in windows
    npix = rows * cols  # a multiple of 6400, so of 8: whole 8-byte words, never across rows
    hitmap = np.full((rows + 4) * w, -1, np.int32)  # padded pixel -> index in the hit list
    hit_pix = np.empty(npix, np.int32)  # true pixel index of each hit
    hit_pad = np.empty(npix, np.int32)  # padded pixel index of each hit
    hit_e = np.empty(npix, np.float64)  # energy (keV) or ADU of each hit
    stack = np.empty(npix, np.int32)
    members = np.empty(npix, np.int32)
    above = np.zeros(npix, np.uint8)  # candidate flags of one frame (storage order)
    words = above.view(np.uint64)  # ... read 8 at a time
    nzw = np.empty(npix // 8, np.int32)  # indices of the non-zero words of a frame
    hist_t = hist[t].reshape(-1)  # this block's partial histogram, flat [npix * bins]
    keys = np.empty(max(_KEY_BUFFER, 2 * npix), np.int64)  # buffered histogram cells
    nk = 0
    nbr = np.array([-w - 1, -w, -w + 1, -1, 1, w - 1, w, w + 1], np.int32)
    pix_of = np.empty(npix, np.int32)  # storage index -> true pixel index (no division per hit)
    pad_of = np.empty(npix, np.int32)  # storage index -> padded hit-map index
    for r in range(rows):
        for s in range(cols):
            pix_of[r * cols + s] = r * cols + colmap[s]
            pad_of[r * cols + s] = (r + 2) * w + colmap[s] + 2
    for f in range(f0, f1):
        # pass 1 (SIMD): candidate flags ``raw >= fast_cut`` of the whole frame
        for i in range(npix):
            above[i] = frames[f, i] >= fast_cut[i]
        # pass 2: the few non-zero 8-pixel words -> compact hit list (exact test ``raw >= cut``)
        nw = 0
        for j in range(npix // 8):  # branch-free compaction of the non-zero words
            nzw[nw] = j
            nw += words[j] != 0
        nh = 0
        for jj in range(nw):
            j = nzw[jj]
            word = words[j]
            while word != 0:
                i = 8 * j + (trailing_zeros(word) >> 3)
                word &= word - np.uint64(1)  # clear this flag's bit
                raw = frames[f, i]
                if raw >= cut[i]:
                    p = pix_of[i]
                    found[t, p] += 1
                    before = False
                    if next_frame:
                        if f > 0:
                            before = frames[f - 1, i] >= cut[i]
                        else:
                            before = has_prev and prev[i] >= cut[i]
                    if before:
                        rejected[t, p] += 1
                    else:
                        v = np.float64(raw) - dark[i]
                        if calibrate:
                            v = gain[i] * v + icpt[i]
                        if mode == MODE_NONE:  # accepted at once: no hit list needed
                            nk = _record(t, p, v, edges, inv_bw, keys, nk, accepted)
                            continue
                        q = pad_of[i]
                        hitmap[q] = nh
                        hit_pix[nh] = p
                        hit_pad[nh] = q
                        hit_e[nh] = v
                        nh += 1
        if mode == MODE_DISCRIMINATE:
            for k in range(nh):
                q0 = hit_pad[k]
                n_in = 0
                for dr in range(-half, half + 1):
                    row0 = q0 + dr * w
                    for dc in range(-half, half + 1):
                        n_in += hitmap[row0 + dc] >= 0
                if n_in == 1:  # only itself
                    nk = _record(t, hit_pix[k], hit_e[k], edges, inv_bw, keys, nk, accepted)
                else:
                    rejected[t, hit_pix[k]] += 1
        elif mode == MODE_ADD:  # 8-connected clusters summed into their largest pixel
            for k in range(nh):
                q0 = hit_pad[k]
                if hitmap[q0] < 0:
                    continue  # already in an earlier cluster
                stack[0] = q0
                top = 1
                members[0] = k
                n = 1
                hitmap[q0] = -2  # visited
                while top > 0:
                    top -= 1
                    q = stack[top]
                    for j in range(8):
                        qq = q + nbr[j]
                        m = hitmap[qq]
                        if m >= 0:
                            members[n] = m
                            n += 1
                            hitmap[qq] = -2
                            stack[top] = qq
                            top += 1
                if n == 1:
                    nk = _record(t, hit_pix[k], hit_e[k], edges, inv_bw, keys, nk, accepted)
                    continue
                # sort members by true pixel index (insertion sort: clusters are small)
                for a in range(1, n):
                    m = members[a]
                    b = a - 1
                    while b >= 0 and hit_pix[members[b]] > hit_pix[m]:
                        members[b + 1] = members[b]
                        b -= 1
                    members[b + 1] = m
                total = 0.0
                best = members[0]
                for a in range(n):
                    m = members[a]
                    total += hit_e[m]
                    if hit_e[m] > hit_e[best]:
                        best = m
                for a in range(n):
                    m = members[a]
                    if m != best:
                        rejected[t, hit_pix[m]] += 1
                nk = _record(t, hit_pix[best], total, edges, inv_bw, keys, nk, accepted)
        for k in range(nh):
            hitmap[hit_pad[k]] = -1
        if nk > keys.shape[0] - npix:  # room for one more frame (at most one event per pixel)
            nk = _flush(hist_t, keys, nk)
    _flush(hist_t, keys, nk)


@njit(cache=True, nogil=True)
def merge_block(hist_t, out):
    """Add one block's partial histogram ``hist_t`` [npix, bins] into ``out`` and zero it."""
    for p in range(hist_t.shape[0]):
        for b in range(hist_t.shape[1]):
            out[p, b] += hist_t[p, b]
            hist_t[p, b] = 0


def n_threads() -> int:
    """Number of worker threads for the frame blocks (numba's thread count)."""
    return numba.get_num_threads()
