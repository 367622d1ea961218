"""End-to-end reconstruction of an N x N x N scan: read, correct, reconstruct, write.

A DXchange HDF5 scan of N projections of N rows x N columns (uint16, flats and darks) is made
from exact Shepp-Logan line integrals; row ``r`` is the phantom scaled by ``1 + r / (2 N)``, so
the true volume is known. Each tool then runs the whole job from the file on disk to a volume on
disk, timed from the call to the last byte written:

* anodescope ``recon.reconstruct_to_zarr`` (what ``anodescope recon`` runs): slab reads,
  flat/dark correction, -log, direct-Fourier reconstruction, OME-Zarr (LZ4) with its pyramid,
  quick-look PNG; on the CPU and, when CuPy sees a GPU, on the GPU, there once with a float32
  and once with a float16 volume (``dtype="float16"``: half the bytes copied and written);
* the hand-written pipeline people build from the peers: h5py reads of the same slabs, algotom's
  flat-field correction and direct-Fourier reconstruction (``dfi_reconstruction``) slice by
  slice, written to Zarr (zstd, as a tifffile/HDF5 writer would cost about the same).

``accuracy`` is the RMSE (attenuation per pixel) against the true volume inside the
reconstruction circle over 8 evenly spaced slices; ``ratio`` is the peer's seconds over ours on
the same device class. The GPU row also compares with tomocupy's published figure for 2048^3 on
an A100 (7.5 s end to end, Nikitin 2023, J. Synchrotron Rad. 30, 179): set the GPU size with
``ANODESCOPE_BENCH_E2E_GPU_N`` (default 2048; the scan is written to /dev/shm when it fits).

Environment: ``ANODESCOPE_BENCH_E2E_N`` sets the CPU size (default 384, quick 128).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from recon._backend import gpu_available
from recon.simulate import shepp_logan, shepp_logan_sinogram

FLAT, DARK = 40000.0, 100.0
#: tomocupy, 2048^3 end to end (read, reconstruct, write) on one A100 with a PCIe 4.0 NVMe SSD
TOMOCUPY_2048_S = 7.5


def row_scale(n: int) -> np.ndarray:
    """Attenuation scale of each detector row (the phantom changes along z)."""
    return 1.0 + np.arange(n) / (2.0 * n)


def write_scan(path: Path, n: int, *, groups: int = 16) -> Path:
    """Write an N^3 DXchange scan (uint16) whose reconstruction is the scaled phantom.

    Rows are written in ``groups`` bands that share one uint16 sinogram each (scale of the
    band's first row), so that an N = 2048 scan (16 GiB) is written in seconds; the truth
    uses the same per-band scale.
    """
    import h5py

    theta = np.linspace(0, np.pi, n, endpoint=False)
    sino = (shepp_logan_sinogram(n, theta) * (2.0 / n)).astype(np.float32)  # per-pixel line integrals
    scale = band_scale(n, groups)
    with h5py.File(path, "w") as f:
        f.create_dataset("implements", data="exchange:measurement")
        ex = f.create_group("exchange")
        data = ex.create_dataset("data", (n, n, n), np.uint16, chunks=(1, min(n, 64), n))
        bounds = np.linspace(0, n, groups + 1).astype(int)
        for g in range(groups):
            r0, r1 = bounds[g], bounds[g + 1]
            if r1 <= r0:
                continue
            counts = np.rint(DARK + FLAT * np.exp(-sino * scale[r0])).astype(np.uint16)
            data[:, r0:r1, :] = np.broadcast_to(counts[:, None, :], (n, r1 - r0, n))
        ex.create_dataset("data_white", data=np.full((4, n, n), FLAT + DARK, np.uint16))
        ex.create_dataset("data_dark", data=np.full((4, n, n), DARK, np.uint16))
        ex.create_dataset("theta", data=np.rad2deg(theta)).attrs["units"] = "degrees"
    return path


def band_scale(n: int, groups: int = 16) -> np.ndarray:
    """Per-row scale actually written by :func:`write_scan` (constant within a band)."""
    scale = row_scale(n)
    bounds = np.linspace(0, n, groups + 1).astype(int)
    out = np.empty(n)
    for g in range(groups):
        out[bounds[g] : bounds[g + 1]] = scale[bounds[g]]
    return out


def _truth_check(read_slice, n: int, *, align: bool = False) -> float:
    """RMSE over 8 slices inside the reconstruction circle against the scaled phantom;
    ``align`` scores the best of the 8 flips/transposes (a peer's orientation convention is
    not what is measured)."""
    phantom = shepp_logan(n) * (2.0 / n)
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    mask = x**2 + y**2 < (0.45 * n) ** 2
    scale = band_scale(n)
    views = [lambda a: a]
    if align:
        views += [lambda a: a[::-1], lambda a: a[:, ::-1], lambda a: a[::-1, ::-1]]
        views += [lambda a, v=v: v(a.T) for v in list(views)]
    slices = [(np.asarray(read_slice(z), np.float64), phantom * scale[z]) for z in np.linspace(0, n - 1, 8).astype(int)]
    return min(float(np.sqrt(np.mean([np.mean((view(img) - truth)[mask] ** 2) for img, truth in slices])))
               for view in views)


def _ours(scan: Path, out: Path, device: str, memory_limit: str, dtype: str = "float32") -> tuple[float, float]:
    import zarr

    from recon import reconstruct_to_zarr

    n = int(np.sqrt(np.prod(_shape(scan)[1:])))
    t0 = time.perf_counter()
    reconstruct_to_zarr(scan, out, center=(n - 1) / 2, device=device, memory_limit=memory_limit,
                        progress=False, overwrite=True, dtype=dtype)
    seconds = time.perf_counter() - t0
    level0 = zarr.open_array(str(out / "0"), mode="r")
    return seconds, _truth_check(lambda z: level0[z], n)


def _shape(scan: Path):
    import h5py

    with h5py.File(scan, "r") as f:
        return f["exchange/data"].shape


def _algotom(scan: Path, out: Path, slab: int = 32) -> tuple[float, float]:
    import h5py
    import zarr
    from algotom.prep.correction import flat_field_correction
    from algotom.rec.reconstruction import dfi_reconstruction
    from numcodecs import Blosc

    t0 = time.perf_counter()
    with h5py.File(scan, "r") as f:
        data = f["exchange/data"]
        n_angles, n_rows, n = data.shape
        flat = np.mean(f["exchange/data_white"][:], axis=0, dtype=np.float32)
        dark = np.mean(f["exchange/data_dark"][:], axis=0, dtype=np.float32)
        theta = np.deg2rad(f["exchange/theta"][:])
        g = zarr.open_group(str(out), mode="w", zarr_format=2)
        vol = g.create_array("0", shape=(n_rows, n, n), chunks=(slab, min(512, n), min(512, n)), dtype="float32",
                             compressor=Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE))
        for r0 in range(0, n_rows, slab):
            r1 = min(n_rows, r0 + slab)
            block = np.asarray(data[:, r0:r1, :], np.float32)
            slices = np.empty((r1 - r0, n, n), np.float32)
            for i in range(r1 - r0):
                sino = flat_field_correction(block[:, i, :], flat[r0 + i], dark[r0 + i], use_dark=True)
                sino = -np.log(np.clip(sino, 1e-6, None))
                slices[i] = dfi_reconstruction(sino, (n - 1) / 2, angles=theta, apply_log=False,
                                               ratio=1.0, filter_name=None)
            vol[r0:r1] = slices
    seconds = time.perf_counter() - t0
    level0 = zarr.open_array(str(out / "0"), mode="r")
    return seconds, _truth_check(lambda z: level0[z], n, align=True)


def _workdir(nbytes: int) -> Path:
    """A scratch folder in RAM (/dev/shm) when ``nbytes`` (scan + volume + pyramid) fit there."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 1.1 * nbytes:
        return Path(tempfile.mkdtemp(prefix="anodescope-e2e-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="anodescope-e2e-"))


def _row(case, tool, seconds, n, accuracy, ratio=None, note=""):
    row = {
        "benchmark": "e2e",
        "case": case,
        "tool": tool,
        "seconds": seconds,
        "throughput": n**3 / seconds / 1e6,
        "unit": "Mvoxel/s",
        "accuracy": accuracy,
        "note": note,
    }
    if ratio is not None:
        row["ratio"] = ratio
    return row


def _case(n: int, device: str, memory_limit: str, peers, dtypes=("float32",)) -> list[dict]:
    """Write an N^3 scan in a scratch folder, time ours on ``device`` once per stored value
    type in ``dtypes`` (the first is the reference run), then ``peers(scan, work, case,
    ours_seconds)`` (rows); the folder is removed afterwards."""
    case = f"{n}^3 DXchange uint16 -> OME-Zarr (read, flat/dark, -log, reconstruct, write)"
    work = _workdir(n**3 * (2 + 4 * 8 / 7))
    try:
        t0 = time.perf_counter()
        scan = write_scan(work / "scan.h5", n)
        made = time.perf_counter() - t0
        note = f"{os.cpu_count()} CPUs; scan written to {work.parent} in {made:.1f} s (not timed)"
        rows = []
        for dtype in dtypes:
            out = work / f"ours-{dtype}.zarr"
            seconds, accuracy = _ours(scan, out, device, memory_limit, dtype)
            shutil.rmtree(out, ignore_errors=True)  # room for the next run in /dev/shm
            tool = f"anodescope reconstruct_to_zarr ({device.upper()})"
            rows.append(_row(case, tool if dtype == "float32" else f"{tool}, {dtype} volume", seconds, n,
                             accuracy, note=note))
            # in the log at once: a run stopped at its time limit still leaves what it measured
            print(f"  measured: {rows[-1]['tool']}: {n}^3 in {seconds:.2f} s, RMSE {accuracy:.3g}", flush=True)
        return rows + peers(scan, work, case, rows[0]["seconds"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _algotom_rows(scan, work, case, ours_s) -> list[dict]:
    n = _shape(scan)[0]
    try:
        peer_s, peer_acc = _algotom(scan, work / "algotom.zarr")
    except ImportError as exc:
        return [{"benchmark": "e2e", "case": case, "tool": "algotom pipeline", "seconds": float("nan"),
                 "note": f"skipped: {exc}"}]
    return [_row(case, "h5py + algotom flat-field + DFI + zarr, per slice (CPU)", peer_s, n, peer_acc,
                 ratio=peer_s / ours_s, note="ratio = peer seconds / ours; accuracy after the best flip/transpose")]


def run(quick: bool = False) -> list[dict]:
    """The GPU case first (when CuPy sees a GPU: the acceptance target), then the CPU case and
    its peer."""
    n = int(os.environ.get("ANODESCOPE_BENCH_E2E_N", 128 if quick else 384))
    rows = []
    if gpu_available():
        ng = int(os.environ.get("ANODESCOPE_BENCH_E2E_GPU_N", 256 if quick else 2048))
        # float32, then float16 (half the bytes written, as tomocupy's 16-bit runs)
        gpu_rows = _case(ng, "gpu", "32GB", lambda *a: [], dtypes=("float32", "float16"))
        for row in gpu_rows:
            if ng == 2048:  # tomocupy's published figure is for this size
                row["ratio"] = TOMOCUPY_2048_S / row["seconds"]
                row["note"] += f"; tomocupy published {TOMOCUPY_2048_S} s on an A100: ratio = that / ours"
        rows.extend(gpu_rows)
    return _case(n, "cpu", "2GB", _algotom_rows) + rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
