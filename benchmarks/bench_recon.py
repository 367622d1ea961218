"""Reconstruction speed and accuracy: ours (direct Fourier, FBP; CPU and GPU) against peers.

One modified Shepp-Logan slice (1024 px, 900 angles; quick: 256 px, 180 angles) from exact
analytic line integrals. Every tool reconstructs the same sinogram with a ramp filter; each row
gives the best wall time of a few repeats (``seconds``), the RMSE against the phantom inside the
reconstruction circle (``accuracy``), and for peers ``ratio`` = peer seconds / our direct-Fourier
seconds on the same device class. Peers whose image orientation differs from ours are scored after
the best of the 8 flips/transposes (their orientation convention is not what is measured here).
Geometry tables of every tool are built before timing (ours are cached per geometry).

With a GPU, one more row estimates a 2048 x 2048 x 2048 volume end to end (2048 projections of
2048 x 2048 pixels: host->GPU copy, reconstruction, GPU->host copy) from a timed chunk of slices.
"""

from __future__ import annotations

import time

import numpy as np

from recon._backend import gpu_available
from recon.algorithms import reconstruct
from recon.simulate import shepp_logan, shepp_logan_sinogram


def _best_time(fn, repeats: int):
    out = fn()  # warm-up: JIT, plans, FFT plans
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _rmse(img, truth, mask, align: bool = False) -> float:
    img = np.asarray(img, np.float64)
    cands = [img]
    if align:
        t = img.T
        cands = [img, img[::-1], img[:, ::-1], img[::-1, ::-1], t, t[::-1], t[:, ::-1], t[::-1, ::-1]]
    return min(float(np.sqrt(np.mean((c - truth)[mask] ** 2))) for c in cands)


def _astra_runner(sino, theta, n):
    import astra

    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, sino.shape[1], -theta)  # our orientation
    pid = astra.create_projector("linear", proj_geom, vol_geom)
    sid = astra.data2d.create("-sino", proj_geom, sino)
    rid = astra.data2d.create("-vol", vol_geom)
    cfg = astra.astra_dict("FBP")
    cfg.update(ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=pid)
    cfg["option"] = {"FilterType": "ram-lak"}
    aid = astra.algorithm.create(cfg)

    def run():
        astra.algorithm.run(aid)
        return astra.data2d.get(rid)

    return run


def _gpu_volume_estimate(n: int = 2048, n_angles: int = 2048, chunk: int = 16) -> dict:
    import cupy as cp

    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    one = shepp_logan_sinogram(n, theta).astype(np.float32)
    block = np.ascontiguousarray(np.repeat(one[:, None, :], chunk, axis=1))  # (angles, chunk, width)

    def run():
        out = reconstruct(cp.asarray(block), theta, algorithm="fourier")
        host = cp.asnumpy(out)
        cp.cuda.Device().synchronize()
        return host

    seconds, _ = _best_time(run, 2)
    total = seconds * n / chunk
    return {
        "benchmark": "recon",
        "case": f"{n}x{n}x{n} volume ({n_angles} angles), estimate from {chunk}-slice chunks",
        "tool": "anodescope fourier (GPU, end to end incl. transfers)",
        "seconds": total,
        "throughput": n / total,
        "unit": "slices/s",
        "note": f"measured {seconds:.3f} s per {chunk}-slice chunk",
    }


def run(quick: bool = False) -> list[dict]:
    n, n_angles = (256, 180) if quick else (1024, 900)
    repeats = 3 if quick else 5
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    sino = shepp_logan_sinogram(n, theta).astype(np.float32)
    truth = shepp_logan(n)
    c = np.arange(n) - (n - 1) / 2
    mask = np.add.outer(c**2, c**2) < (n / 2 - 1) ** 2
    case = f"shepp-logan {n}px x {n_angles} angles, one slice"
    rows: list[dict] = []

    def row(tool, seconds, img, ours_s=None, align=False, note=""):
        r = {
            "benchmark": "recon",
            "case": case,
            "tool": tool,
            "seconds": seconds,
            "throughput": 1.0 / seconds,
            "unit": "slices/s",
            "accuracy": _rmse(img, truth, mask, align),
        }
        if ours_s is not None:
            r["ratio"] = seconds / ours_s
        if note:
            r["note"] = note
        rows.append(r)

    import numba

    threads = f"{numba.get_num_threads()} threads"
    t_four, img = _best_time(lambda: reconstruct(sino, theta, algorithm="fourier", device="cpu"), repeats)
    row("anodescope fourier (CPU)", t_four, img, note=f"RMSE vs phantom; {threads}")
    t_fbp, img = _best_time(lambda: reconstruct(sino, theta, algorithm="fbp", device="cpu"), max(1, repeats // 2))
    row("anodescope fbp (CPU)", t_fbp, img, t_four, note="ratio vs our fourier")

    try:
        run_astra = _astra_runner(sino, theta, n)
    except ImportError:
        pass
    else:
        t, img = _best_time(run_astra, 1 if not quick else 2)
        row("ASTRA FBP (CPU, linear, ram-lak)", t, img, t_four)

    try:
        from algotom.rec.reconstruction import dfi_reconstruction, fbp_reconstruction
    except ImportError:
        pass
    else:
        ctr = (n - 1) / 2
        t, img = _best_time(
            lambda: fbp_reconstruction(sino, ctr, angles=theta, ratio=1.0, filter_name=None, apply_log=False, gpu=False),
            1,
        )
        row("algotom FBP (CPU, numba)", t, img, t_four, align=True)
        t, img = _best_time(
            lambda: dfi_reconstruction(sino, ctr, angles=theta, ratio=1.0, filter_name=None, apply_log=False), 1
        )
        row("algotom DFI (CPU)", t, img, t_four, align=True)

    from skimage.transform import iradon

    t, img = _best_time(
        lambda: iradon(sino.T, theta=np.rad2deg(-theta), filter_name="ramp", circle=True, preserve_range=True),
        1 if not quick else 2,
    )
    row("scikit-image iradon (CPU)", t, img, t_four)

    if gpu_available():
        import cupy as cp

        def gpu(alg):
            def f():
                out = reconstruct(sino, theta, algorithm=alg, device="gpu")
                cp.cuda.Device().synchronize()
                return out

            return f

        t_gpu, img = _best_time(gpu("fourier"), repeats)
        row("anodescope fourier (GPU, host in/out)", t_gpu, img, note=f"{t_four / t_gpu:.1f}x our CPU fourier")
        t, img = _best_time(gpu("fbp"), repeats)
        row("anodescope fbp (GPU, host in/out)", t, img, t_gpu, note="ratio vs our GPU fourier")
        rows.append(_gpu_volume_estimate(*((256, 256, 8) if quick else (2048, 2048, 16))))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
