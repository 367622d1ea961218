"""Virtual stripping (curves + island counts) and the local current solver.

Rows:

- ``virtual_stripping`` on a 4096 x 4096 synthetic map with 250 depth steps (quick: 1024 x 1024),
  accuracy = largest deviation of the active fraction from a direct count at 5 depths, and
  the island counts checked against ``scipy.ndimage.label`` at 5 depths; the peer is one
  ``scipy.ndimage.label`` per depth (timed on 5 depths and scaled to all steps).
- ``current_distribution``: disk-electrode check (accuracy = largest relative deviation of the
  radially averaged current from ``1 / (2 sqrt(1 - (r/r0)^2))`` for r <= 0.8 r0) and the
  85 %-stripped synthetic map.
"""

from __future__ import annotations

import time

import numpy as np


def _timed(fn, repeat=3, cpu=None):
    """Best wall time (s) over ``repeat`` runs; ``cpu`` (a list) receives the process CPU time."""
    best = np.inf
    out = None
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best = wall
            if cpu is not None:
                cpu[:] = [time.process_time() - c0]
    return best, out


def run(quick: bool = False) -> list[dict]:
    import scipy.ndimage as ndi

    from segment import current_distribution, synthetic_thickness_map, virtual_stripping

    rows = []
    n = 1024 if quick else 4096
    steps = 250
    px = 1.7
    t = synthetic_thickness_map((n, n), px, seed=1)
    virtual_stripping(t[:64, :64], px, n_steps=steps)  # compile the kernels
    cpu = [np.nan]
    sec, res = _timed(lambda: virtual_stripping(t, px, n_steps=steps), repeat=2 if quick else 3, cpu=cpu)
    probe = np.linspace(0, steps, 7).astype(int)[1:-1]
    err = 0.0
    labels_ok = True
    t_label = 0.0
    for j in probe:
        d = res.depth_um[j]
        err = max(err, abs(res.active_fraction[j] - np.count_nonzero(t > d) / t.size))
        t0 = time.perf_counter()
        _, count = ndi.label(t > d, structure=np.ones((3, 3)))
        t_label += time.perf_counter() - t0
        labels_ok &= count == res.n_islands[j]
    peer = t_label / probe.size * (steps + 1)
    rows.append({
        "benchmark": "stripping", "case": f"virtual_stripping {n}x{n}, {steps} steps, 8-conn",
        "tool": "anodescope (numba, tiled union-find)", "seconds": sec,
        "throughput": t.size / sec / 1e6, "unit": "Mpixel/s", "accuracy": float(err), "ratio": peer / sec,
        "note": f"CPU time {cpu[0]:.2f} s (all threads); "
                f"islands equal ndimage.label at {probe.size} depths: {bool(labels_ok)}; "
                f"peer = ndimage.label per depth ({peer:.2f} s, scaled from {probe.size} depths)",
    })

    # disk electrode on an insulating plane (primary distribution)
    m, r0 = (256, 24) if quick else (512, 40)
    y, x = np.mgrid[:m, :m] - (m - 1) / 2
    r = np.hypot(y, x)
    act = r <= r0
    sec, cur = _timed(lambda: current_distribution(act, 1.0, 20.0 * m), repeat=2)
    rr, jj = r[act] / r0, cur.current_rel[act] / cur.current_rel[act].mean()
    idx = np.digitize(rr, np.linspace(0, 0.8, 9))
    dev = max(
        abs(jj[idx == b].mean() * 2 * np.sqrt(1 - rr[idx == b].mean() ** 2) - 1) for b in range(1, 9)
    )
    rows.append({
        "benchmark": "stripping", "case": f"current_distribution disk r0={r0} px on {m}x{m}",
        "tool": "anodescope (scipy.fft, PCG)", "seconds": sec, "throughput": act.size / sec / 1e6,
        "unit": "Mpixel/s", "accuracy": float(dev),
        "note": f"{cur.iterations} CG iterations, residual {cur.residual:.1e}; accuracy = max relative "
                "deviation from j_avg/(2 sqrt(1-(r/r0)^2)), r <= 0.8 r0",
    })

    # the local current on the 85 %-stripped published-like map
    k = 512 if quick else 1024
    tm = synthetic_thickness_map((k, k), px, seed=0)
    strip = virtual_stripping(tm, px)
    snap = strip.snapshot(0.85)
    sec, cur = _timed(lambda: current_distribution(snap, px, 50.0), repeat=2)
    rows.append({
        "benchmark": "stripping", "case": f"current_distribution 85% stripped map {k}x{k}",
        "tool": "anodescope (scipy.fft, PCG)", "seconds": sec, "throughput": snap.size / sec / 1e6,
        "unit": "Mpixel/s", "accuracy": float(cur.residual),
        "note": f"{cur.iterations} CG iterations; active {100 * cur.active_fraction:.0f}%, peak "
                f"{cur.max_rel:.1f}x, p99 {cur.percentiles[99]:.1f}x applied",
    })
    try:
        from segment._backend import gpu_available

        if gpu_available():
            import cupy as cp

            snap_g = cp.asarray(snap)
            current_distribution(snap_g, px, 50.0)

            def gpu_run():
                out = current_distribution(snap_g, px, 50.0)
                cp.cuda.Device().synchronize()
                return out

            sec_g, cur_g = _timed(gpu_run, repeat=3)
            diff = float(np.nanmax(np.abs(cp.asnumpy(cur_g.current_rel) - cur.current_rel)))
            rows.append({
                "benchmark": "stripping", "case": f"current_distribution 85% stripped map {k}x{k}",
                "tool": "anodescope (cupy.fft, PCG)", "seconds": sec_g, "throughput": snap.size / sec_g / 1e6,
                "unit": "Mpixel/s", "accuracy": diff, "ratio": sec / sec_g,
                "note": "accuracy = max |GPU - CPU| of the relative current; ratio = CPU s / GPU s",
            })
    except Exception as exc:  # pragma: no cover - GPU optional
        rows.append({"benchmark": "stripping", "case": "GPU current", "tool": "cupy", "seconds": float("nan"),
                     "note": f"GPU run failed: {type(exc).__name__}: {exc}"})
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run(quick=True):
        print(row)
