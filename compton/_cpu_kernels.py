"""Numba CPU kernels for HEXITEC frame processing (see :func:`compton.process_frames`).

One call of :func:`process_chunk` handles a chunk of frames: the frames are split into
``n_blocks`` contiguous ranges run in parallel (``prange``), each block writing into its own
partial histogram and per-pixel counters, merged once at the very end of a run. Everything is
float64 and evaluated in a fixed order, so the CUDA kernel in ``_cuda_kernels.py`` gives the
same cube bit for bit.

Frames arrive as ``[n, rows * cols]`` in *storage order*: storage position ``s`` of a row holds
pixel column ``colmap[s]`` (identity for de-interleaved frames; the HEXITEC ``.bin`` column
interleave otherwise), so the de-interleave costs nothing. Per-pixel arrays (``cut``, ``dark``,
``gain``, ``icpt``) are given in storage order too; hits are recorded with their true pixel
index ``row * cols + col``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

MODE_NONE = 0
MODE_DISCRIMINATE = 1
MODE_ADD = 2
_KEY_BUFFER = 1 << 15  # histogram cells buffered per block before they are added


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
def _block(
    t, f0, f1, frames, prev, has_prev, rows, cols, colmap, cut, fast_cut, dark, gain, icpt, calibrate,
    next_frame, mode, half, edges, inv_bw, hist, found, rejected, accepted,
):
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
                    r = i // cols
                    c = colmap[i - r * cols]
                    p = r * cols + c
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
                        q = (r + 2) * w + c + 2
                        hitmap[q] = nh
                        hit_pix[nh] = p
                        hit_pad[nh] = q
                        hit_e[nh] = v
                        nh += 1
        if nh == 0:
            continue
        if mode == MODE_NONE:
            for k in range(nh):
                nk = _record(t, hit_pix[k], hit_e[k], edges, inv_bw, keys, nk, accepted)
        elif mode == MODE_DISCRIMINATE:
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
        else:  # MODE_ADD: 8-connected clusters summed into their largest pixel
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


@njit(cache=True, nogil=True, parallel=True)
def process_chunk(
    frames, prev, has_prev, rows, cols, colmap, cut, fast_cut, dark, gain, icpt, calibrate, next_frame,
    mode, half, edges, inv_bw, hist, found, rejected, accepted,
):
    """Process ``frames`` [n, rows * cols] (storage order) into the partial accumulators.

    ``hist`` [n_blocks, rows * cols, bins] (uint16 is enough while a block handles at most
    65535 frames between merges: a pixel records at most one event per frame) and
    ``found``/``rejected``/``accepted`` [n_blocks, rows * cols] are added to; block ``t`` handles frames ``t * n // n_blocks`` to
    ``(t + 1) * n // n_blocks``. ``prev`` is the storage-order frame before ``frames[0]``
    (used by the next-frame correction when ``has_prev``). ``cut`` is the exact per-pixel
    event test ``raw >= cut``; ``fast_cut`` (in the frames' dtype, ``fast_cut <= cut`` wherever
    a value can pass) only skips rows without candidates and may be SIMD-compared.
    """
    n = frames.shape[0]
    n_blocks = hist.shape[0]
    for t in prange(n_blocks):
        f0 = t * n // n_blocks
        f1 = (t + 1) * n // n_blocks
        _block(
            t, f0, f1, frames, prev, has_prev, rows, cols, colmap, cut, fast_cut, dark, gain, icpt,
            calibrate, next_frame, mode, half, edges, inv_bw, hist, found, rejected, accepted,
        )


@njit(cache=True, nogil=True, parallel=True)
def merge_blocks(hist, out):
    """Add partial histograms ``hist`` [n_blocks, npix, bins] into ``out`` [npix, bins] and
    zero them."""
    nb = hist.shape[0]
    for p in prange(hist.shape[1]):
        for b in range(hist.shape[2]):
            s = out[p, b]
            for t in range(nb):
                s += hist[t, p, b]
                hist[t, p, b] = 0
            out[p, b] = s


def n_threads() -> int:
    """Number of numba threads used for the frame blocks."""
    return numba.get_num_threads()
