"""Reconstruction speed and accuracy: ours (direct Fourier, FBP; CPU and GPU) against peers.

One modified Shepp-Logan slice (1024 px, 900 angles; quick: 256 px, 180 angles) from exact
analytic line integrals. Every tool reconstructs the same sinogram with a ramp filter; each row
gives the best wall time of a few repeats (``seconds``), the RMSE against the phantom inside the
reconstruction circle (``accuracy``), and for peers ``ratio`` = peer seconds / our direct-Fourier
seconds on the same device class. Peers whose image orientation differs from ours are scored after
the best of the 8 flips/transposes (their orientation convention is not what is measured here).
Geometry tables of every tool are built before timing (ours are cached per geometry). The
machine may be shared: each row also gives the process CPU time of the timed run
(``cpu_seconds``; all threads), and the note the CPU-time ratio against ours.

A figure of the reconstructions and their error maps is written to
``benchmarks/results/recon_shepp_logan_<n>.png``.

With a GPU, one more row estimates a 2048 x 2048 x 2048 volume end to end (2048 projections of
2048 x 2048 pixels: host->GPU copy, reconstruction, GPU->host copy) from a timed chunk of slices.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from recon._backend import gpu_available
from recon.algorithms import reconstruct
from recon.simulate import shepp_logan, shepp_logan_sinogram


_CPU_SECONDS: dict[int, float] = {}


def _best_time(fn, repeats: int):
    """Best wall time of ``repeats`` runs after a warm-up; the process CPU time of that run is kept."""
    out = fn()  # warm-up: JIT, plans, FFT plans
    best, cpu = np.inf, np.nan
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    _CPU_SECONDS[id(out)] = cpu
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


def _figure(images: dict, truth: np.ndarray, mask: np.ndarray, path) -> None:
    """Reconstructions (top) and their errors against the phantom (bottom), zoomed on the centre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = truth.shape[0]
    zoom = slice(n // 4, 3 * n // 4)
    names = list(images)
    fig, axes = plt.subplots(2, len(names) + 1, figsize=(3.2 * (len(names) + 1), 6.6))
    axes[0, 0].imshow(truth[zoom, zoom], cmap="gray", vmin=0, vmax=0.4)
    axes[0, 0].set_title("phantom (a.u./px)")
    axes[1, 0].axis("off")
    for j, name in enumerate(names, start=1):
        img = np.asarray(images[name], np.float64)
        err = np.where(mask, img - truth, 0.0)
        axes[0, j].imshow(img[zoom, zoom], cmap="gray", vmin=0, vmax=0.4)
        axes[0, j].set_title(name, fontsize=9)
        im = axes[1, j].imshow(err[zoom, zoom], cmap="RdBu_r", vmin=-0.1, vmax=0.1)
        axes[1, j].set_title(f"error, RMSE {np.sqrt(np.mean(err[mask] ** 2)):.4f}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1, 1:].tolist(), shrink=0.8, label="reconstruction - phantom")
    fig.suptitle(f"Shepp-Logan {n} px, centre half of the slice; row 0 at the top")
    fig.savefig(path, dpi=80)
    plt.close(fig)


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

    cpu_ours = {}

    def row(tool, seconds, img, ours_s=None, align=False, note=""):
        cpu = _CPU_SECONDS.pop(id(img), float("nan"))
        if ours_s is None:
            cpu_ours["s"] = cpu
        else:
            note = (note + "; " if note else "") + f"CPU-time ratio {cpu / cpu_ours['s']:.1f}"
        note = (note + "; " if note else "") + f"process CPU {cpu:.3g} s"
        r = {
            "benchmark": "recon",
            "case": case,
            "tool": tool,
            "seconds": seconds,
            "throughput": 1.0 / seconds,
            "unit": "slices/s",
            "accuracy": _rmse(img, truth, mask, align),
            "cpu_seconds": cpu,
        }
        if ours_s is not None:
            r["ratio"] = seconds / ours_s
        if note:
            r["note"] = note
        rows.append(r)

    import numba

    threads = f"{numba.get_num_threads()} threads"
    shown = {}
    t_four, img = _best_time(lambda: reconstruct(sino, theta, algorithm="fourier", device="cpu"), repeats)
    shown["anodescope fourier"] = img
    row("anodescope fourier (CPU)", t_four, img, note=f"RMSE vs phantom; {threads}")
    t_fbp, img = _best_time(lambda: reconstruct(sino, theta, algorithm="fbp", device="cpu"), max(1, repeats // 2))
    shown["anodescope fbp"] = img
    row("anodescope fbp (CPU)", t_fbp, img, t_four, note="ratio vs our fourier")

    try:
        run_astra = _astra_runner(sino, theta, n)
    except ImportError:
        pass
    else:
        t, img = _best_time(run_astra, 1 if not quick else 2)
        shown["ASTRA FBP (CPU)"] = img
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
    shown["scikit-image iradon"] = img

    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    _figure(shown, truth, mask, out_dir / f"recon_shepp_logan_{n}.png")

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
