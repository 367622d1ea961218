"""Segmentation benchmark: median + layer classification + maps of a layered cell volume.

Full size is 256 x 1024 x 1024 voxels (z, y, x); ``quick=True`` uses 64 x 192 x 192. The volume
is a collector | Li | electrolyte stack with realistic 25.5 keV attenuation per voxel (1.7 um),
Li thickness from a smooth random field (10-50 um), blur and Gaussian noise, so the thickness
accuracy against the truth is reported with the speed. Peers in the same run: plain
``scipy.ndimage.median_filter`` (in memory), and a plain scipy/scikit-image chain (median,
``skimage.filters.threshold_multiotsu`` classes, Li voxels counted per column). With CuPy and a
GPU the same chain runs on the GPU and ``cupyx.scipy.ndimage.median_filter`` is the peer.
"""

from __future__ import annotations

import os
import time

import numpy as np

MU_PER_PX = {"collector": 5.72e-5, "li": 1.55e-5, "electrolyte": 7.9e-4}  # 25.5 keV, 1.7 um voxels
PX_UM = 1.7


def make_volume(shape, *, seed=0, noise=6e-5):
    from scipy import ndimage

    from pipelines.samples import smooth_field

    nz, ny, nx = shape
    f = smooth_field((ny, nx), 40.0 / PX_UM * nx / 1024 * 4, seed=seed)
    thick_um = np.clip(30.0 + 10.0 * f, 10.0, 50.0).astype(np.float32)
    collector = max(4, nz // 16)
    top = collector + thick_um / PX_UM
    vol = np.empty(shape, np.float32)
    for z in range(nz):  # slab by slab to keep the peak memory at one volume
        zc = z + 0.5
        vol[z] = np.where(zc < collector, MU_PER_PX["collector"],
                          np.where(zc < top, MU_PER_PX["li"], MU_PER_PX["electrolyte"]))
    rng = np.random.default_rng(seed)
    for z0 in range(0, nz, 16):
        sl = vol[z0:z0 + 16]
        sl += rng.normal(0, noise, sl.shape).astype(np.float32)
    vol = ndimage.gaussian_filter(vol, 0.7, output=np.float32)
    return vol, thick_um, collector


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _ours(vol, *, device, chunks):
    import dask

    import segment

    def run():
        den = segment.denoise(vol, median_size=3, chunks=chunks, device=device)
        with dask.config.set(scheduler="threads", num_workers=min(2, os.cpu_count() or 1) if device == "cpu" else 1):
            den = den.compute()
        lab, info = segment.segment_layers(den, ("collector", "li", "electrolyte"), device=device, return_info=True)
        maps = segment.layer_maps(lab, voxel_size_um=PX_UM, interfaces_px=info["interfaces_px"],
                                  mask=info["footprint"])
        return den, maps

    return _timed(run)


def _plain_cpu(vol):
    from scipy import ndimage
    from skimage.filters import threshold_multiotsu

    def run():
        den = ndimage.median_filter(vol, size=3)
        t = threshold_multiotsu(den[::2, ::2, ::2], classes=3)
        cls = np.digitize(den, t)
        return (cls == 0).sum(axis=0) * PX_UM  # Li = darkest class, counted per column

    return _timed(run)


def run(quick: bool = False) -> list[dict]:
    import segment

    shape = (64, 192, 192) if quick else (256, 1024, 1024)
    chunks = (64, 256, 256) if not quick else (32, 96, 96)
    vol, truth, _ = make_volume(shape)
    nvox = float(np.prod(shape))
    case = "x".join(map(str, shape))
    rows = []

    from scipy import ndimage

    # warm-up: load the compiled Numba kernels (JIT cache) outside the timings
    _ours(np.ascontiguousarray(vol[:, :48, :48]), device="cpu", chunks=(32, 48, 48))
    _, t_med_plain = _timed(lambda: ndimage.median_filter(vol, size=3))
    import dask

    with dask.config.set(scheduler="threads", num_workers=min(2, os.cpu_count() or 1)):
        _, t_med = _timed(lambda: segment.denoise(vol, median_size=3, chunks=chunks, device="cpu").compute())
    rows.append(dict(benchmark="segment", case=f"median3 {case}", tool="segment.denoise (dask, 2 threads)",
                     seconds=t_med, throughput=nvox / t_med, unit="voxel/s", ratio=t_med_plain / t_med))
    rows.append(dict(benchmark="segment", case=f"median3 {case}", tool="scipy.ndimage.median_filter",
                     seconds=t_med_plain, throughput=nvox / t_med_plain, unit="voxel/s"))

    (den, maps), t_ours = _ours(vol, device="cpu", chunks=chunks)
    err = np.abs(maps.thickness_um - truth)[maps.mask]
    plain_t, t_plain = _plain_cpu(vol)
    perr = np.abs(plain_t - truth)
    rows.append(dict(benchmark="segment", case=f"median+classify+maps {case}", tool="anodescope segment (CPU)",
                     seconds=t_ours, throughput=nvox / t_ours, unit="voxel/s", accuracy=float(err.mean()),
                     ratio=t_plain / t_ours, note="accuracy = thickness MAE in um vs truth"))
    rows.append(dict(benchmark="segment", case=f"median+classify+maps {case}",
                     tool="scipy median + skimage multi-Otsu + column count", seconds=t_plain,
                     throughput=nvox / t_plain, unit="voxel/s", accuracy=float(perr.mean()),
                     note="accuracy = thickness MAE in um vs truth"))

    if segment._backend.gpu_available():
        import cupy as cp
        import cupyx.scipy.ndimage as cndi

        g = cp.asarray(vol)
        cndi.median_filter(g[:8], size=3)
        cp.cuda.Device().synchronize()

        def gmed():
            out = cndi.median_filter(g, size=3)
            cp.cuda.Device().synchronize()
            return out

        _, t_gmed = _timed(gmed)
        rows.append(dict(benchmark="segment", case=f"median3 {case}", tool="cupyx.scipy.ndimage.median_filter",
                         seconds=t_gmed, throughput=nvox / t_gmed, unit="voxel/s", ratio=t_med_plain / t_gmed,
                         note="ratio vs scipy.ndimage on the CPU"))

        segment.median_filter(g[:8], size=3)  # compile the CUDA kernel outside the timing

        def omed():
            out = segment.median_filter(g, size=3)
            cp.cuda.Device().synchronize()
            return out

        mine, t_omed = _timed(omed)
        same = bool(cp.array_equal(mine, gmed()))
        del mine
        rows.append(dict(benchmark="segment", case=f"median3 {case}", tool="segment.median_filter (CUDA kernel)",
                         seconds=t_omed, throughput=nvox / t_omed, unit="voxel/s", ratio=t_gmed / t_omed,
                         note=f"ratio vs cupyx on the same GPU; bitwise equal to cupyx: {same}"))

        def gclassify(vol=g):
            den = segment.median_filter(vol, size=3)
            lab = segment.apply_thresholds(den, segment.threshold_values(den, classes=3))
            cp.cuda.Device().synchronize()
            return lab

        gclassify(g[:8])  # warm-up: CuPy compiles its elementwise and search kernels
        lab, t_cls = _timed(gclassify)
        cpu_lab = segment.apply_thresholds(den, segment.threshold_values(den, classes=3))
        agree = float((cp.asnumpy(lab) == cpu_lab).mean())
        del lab
        rows.append(dict(benchmark="segment", case=f"median3+classify {case}",
                         tool="segment median_filter + threshold_values + apply_thresholds (GPU)",
                         seconds=t_cls, throughput=nvox / t_cls, unit="voxel/s", accuracy=agree,
                         note="target >= 1e9 voxel/s (issue 9); accuracy = fraction of voxels labelled as on the CPU"))

        def gpu_chain():
            den = segment.denoise(g, median_size=3, device="gpu")
            lab, info = segment.segment_layers(den, ("collector", "li", "electrolyte"), device="gpu",
                                               return_info=True)
            return segment.layer_maps(lab, voxel_size_um=PX_UM, interfaces_px=info["interfaces_px"],
                                      mask=info["footprint"])

        gmaps, t_gpu = _timed(gpu_chain)
        gerr = np.abs(gmaps.thickness_um - truth)[gmaps.mask]
        rows.append(dict(benchmark="segment", case=f"median+classify+maps {case}", tool="anodescope segment (GPU)",
                         seconds=t_gpu, throughput=nvox / t_gpu, unit="voxel/s", accuracy=float(gerr.mean()),
                         ratio=t_plain / t_gpu, note="ratio vs plain scipy/skimage chain on the CPU"))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
