"""Slab tasks of ``reconstruct_to_zarr``: the per-slab chain, its Dask execution and the
one-row geometry pass (360-degree overlap, centre, reconstructed width).

Each slab task reads its detector rows (plus a halo), runs read -> normalise -> (zingers)
-> (Paganin) -> -log -> (360 -> 180) -> (stripes) -> reconstruct, writes the slab into
level 0 of the OME-Zarr store and its 2x mean-pooled rows into the pyramid levels that the
slab height allows (``_Job.task_levels``), and then writes the slab's marker file.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import _omezarr
from ._backend import to_device
from ._errors import InputError

#: rows of halo for the 3 x 3 zinger median window (1 needed, 1 spare)
ZINGER_HALO = 2
ZINGER_SIZE = 3


@dataclass(frozen=True)
class _Job:
    """Everything one slab task needs (picklable, for dask.distributed)."""

    proj: object
    out: str
    source: str
    plan: object
    theta_rad: np.ndarray
    center: float
    algorithm: str
    filter_name: str
    rings: str | None
    ring_options: dict
    zingers: bool
    phase: dict | None
    flat_method: str
    device: str
    extended: dict | None = None
    task_levels: int = 0
    dtype: str = "float32"
    hook: object = field(default=None, compare=False)


# ----------------------------------------------------------------------------- one slab
def _load_rows(proj, read0: int, read1: int):
    """Read rows ``[read0, read1)`` of data, flats and darks into NumPy arrays."""
    import dask

    parts = [proj.data[:, read0:read1], proj.flats[:, read0:read1]]
    has_darks = proj.darks is not None
    if has_darks:
        parts.append(proj.darks[:, read0:read1])
    # each slab task is already one unit of parallel work: read synchronously inside it
    arrays = dask.compute(*parts, scheduler="synchronous")
    return arrays[0], arrays[1], arrays[2] if has_darks else None


def _sinograms(job: _Job, row0: int, row1: int, *, overlap_only: bool = False):
    """Processed sinograms ``(n_angles, row1 - row0, width)`` and their angles (radians).

    With ``overlap_only`` the 360-to-180 conversion is skipped (used to find the overlap).
    """
    from .prep import minus_log, normalize

    n_rows = job.proj.data.shape[1]
    halo = job.plan.halo
    read0, read1 = max(0, row0 - halo), min(n_rows, row1 + halo)
    data, flats, darks = _load_rows(job.proj, read0, read1)
    if job.device == "gpu":
        data, flats = to_device(data, "gpu"), to_device(flats, "gpu")
        darks = None if darks is None else to_device(darks, "gpu")
    t = normalize(data, flats, darks, method=job.flat_method)
    del data, flats, darks
    if job.zingers:
        from .prep import remove_zingers

        t = remove_zingers(t, size=ZINGER_SIZE)
    if job.phase is not None:
        from ._backend import array_module
        from .phase import paganin_filter

        # at the detector's top and bottom edges, replicate edge rows up to the full halo so
        # that every slab sees the same surroundings as the whole detector would
        top, bottom = halo - (row0 - read0), halo - (read1 - row1)
        if top > 0 or bottom > 0:
            xp = array_module(t)
            t = xp.pad(t, ((0, 0), (max(top, 0), max(bottom, 0)), (0, 0)), mode="edge")
            read0 -= max(top, 0)
        t = paganin_filter(
            t,
            pixel_size_um=job.phase["pixel_size_um"],
            distance_mm=job.phase["distance_mm"],
            energy_kev=job.phase["energy_kev"],
            delta_beta=job.phase["delta_beta"],
        )
    t = t[:, row0 - read0 : row1 - read0]
    sino = minus_log(t)
    del t
    theta = job.theta_rad
    if job.extended is not None and not overlap_only:
        from .extended import sino_360_to_180

        sino, theta, _ = sino_360_to_180(
            sino, theta, overlap=job.extended["overlap"], side=job.extended["side"]
        )
    if job.rings is not None and not overlap_only:
        from . import stripes

        remover = {
            "sorting": stripes.remove_stripes_sorting,
            "all": stripes.remove_all_stripes,
            "fw": stripes.remove_stripes_fw,
        }[job.rings]
        sino = remover(sino, **(job.ring_options or {}))
    return sino, np.asarray(theta, dtype=np.float64)


def _reconstruct_rows(job: _Job, row0: int, row1: int):
    """The slab's slices, float32, on the job's device (CuPy on a GPU)."""
    from ._backend import array_module
    from .algorithms import reconstruct

    sino, theta = _sinograms(job, row0, row1)
    vol = reconstruct(
        sino,
        theta,
        job.center,
        algorithm=job.algorithm,
        filter_name=job.filter_name,
        device=job.device,
    )
    return vol.astype(array_module(vol).float32, copy=False)


def _with_context(exc: InputError, job: _Job, row0: int, row1: int) -> InputError:
    msg = str(exc)
    if job.source in msg:
        return exc
    return InputError(f"{job.source}: detector rows {row0}:{row1}: {msg}")


class _Opaque:
    """Hides a job from ``dask.delayed``, which would otherwise compute the lazy dask arrays
    inside it (whole scan in memory) before the task runs."""

    __slots__ = ("job",)

    def __init__(self, job: _Job):
        self.job = job


def _stored(block, job: _Job, row0: int, row1: int):
    """``block`` (float32, NumPy or CuPy) in the stored value type; float16 overflow is an
    InputError rather than silent infinities."""
    from ._backend import array_module

    xp = array_module(block)
    if job.dtype == "float32":
        return block.astype(xp.float32, copy=False)
    half = block.astype(xp.float16)
    if bool(xp.isinf(half).any()) and bool((xp.isinf(half) & xp.isfinite(block)).any()):
        peak = float(xp.abs(block[xp.isfinite(block)]).max())
        raise InputError(
            f"{job.source}: rows {row0}:{row1}: reconstructed values up to {peak:.4g} overflow "
            f"float16 (largest 65504); store float32 (dtype='float32', --dtype float32)"
        )
    return half


_THREAD = threading.local()


def _slab_stream(device: str):
    """Context in which the calling thread's GPU work runs on the thread's own non-blocking
    CUDA stream (made once per worker thread and reused, so CuPy's per-stream memory pool is
    reused too): the slabs in flight then overlap one slab's host-device copies with another
    slab's kernels instead of queueing on the legacy default stream. A null context on the
    CPU or without CuPy."""
    if device != "gpu":
        return contextlib.nullcontext()
    from ._backend import cupy_or_none

    cp = cupy_or_none()
    if cp is None:
        return contextlib.nullcontext()
    stream = getattr(_THREAD, "stream", None)
    if stream is None:
        stream = _THREAD.stream = cp.cuda.Stream(non_blocking=True)
    return stream


def _run_chunk(job: _Job | _Opaque, index: int) -> int:
    """Reconstruct slab ``index``, write it into level 0, then record it as finished."""
    if isinstance(job, _Opaque):
        job = job.job

    row0, row1 = job.plan.bounds(index)
    z0 = row0 - job.plan.row_start
    with _slab_stream(job.device):
        try:
            vol = _reconstruct_rows(job, row0, row1)
        except InputError as exc:
            raise _with_context(exc, job, row0, row1) from exc
        # this slab's rows of the pyramid, pooled where the slab is (on the GPU before the copy)
        levels = [vol]
        for _ in range(job.task_levels):
            levels.append(_omezarr.mean_pool2(levels[-1]))
        del vol
        # cast where the slab is (a float16 copy to the host moves half the bytes)
        levels = [_stored(block, job, row0, row1) for block in levels]
        for level, block in enumerate(levels):
            array = _omezarr.open_level(job.out, level)
            start = z0 >> level
            # the copy to the host waits for this stream's kernels only
            array[start : start + block.shape[0]] = np.asarray(to_device(block, "cpu"))
        del levels
    _omezarr.mark_done(_omezarr.chunk_marker(job.out, index), rows=[row0, row1])
    if job.hook is not None:
        job.hook(index)
    return index


# ----------------------------------------------------------------------------- execution
def _distributed_client():
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _execute(job: _Job, todo: list[int], *, workers: int, bar) -> None:
    """Run the slab tasks with Dask; the bar advances as slabs finish."""
    import dask

    if not todo:
        return
    from dask.base import tokenize

    boxed = _Opaque(job)
    # keys unique per output store and run: several volumes may be reconstructed at once on
    # one distributed cluster, and equal keys would make the scheduler share their results
    token = tokenize(str(job.out), uuid.uuid4().hex)
    tasks = [dask.delayed(_run_chunk, pure=False)(boxed, i, dask_key_name=f"slab-{i}-{token}") for i in todo]
    client = _distributed_client()
    if client is not None:
        from distributed import as_completed

        for fut in as_completed(client.compute(tasks)):
            fut.result()
            bar.update(1)
        return

    from dask.callbacks import Callback

    lock = threading.Lock()

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            with lock:
                bar.update(1)

    with _Bar():
        dask.compute(*tasks, scheduler="threads", num_workers=workers)


#: rows around the middle used by the automatic centre (median of per-row estimates)
CENTER_BAND_ROWS = 9


def _find_geometry(job: _Job, mid_row: int, *, center, extended: bool, out_stem: Path,
                   row_range: tuple[int, int] | None = None):
    """Overlap (360 scans) and centre around the middle row; returns (job, center, info).

    The automatic centre is the median of the per-row estimates over a band of up to
    ``CENTER_BAND_ROWS`` contiguous rows (read once), which tames the noise of a single row
    (about a quarter pixel on small, noisy sinograms) and ignores an outlier row.
    """
    info: dict = {}
    sino360 = None
    if extended:
        from .extended import find_overlap_360

        sino, theta = _sinograms(job, mid_row, mid_row + 1, overlap_only=True)
        sino360 = np.asarray(to_device(sino[:, 0], "cpu"), dtype=np.float32)
        found = find_overlap_360(sino360, theta)
        overlap, side = found[0], found[1]
        job = _replace(job, extended={"overlap": float(overlap), "side": _side(side)})
        info["overlap_360"] = {"overlap_pixels": float(overlap), "side": _side(side)}
    sino, theta = _sinograms(job, mid_row, mid_row + 1)
    sino2d = np.asarray(to_device(sino[:, 0], "cpu"), dtype=np.float32)
    if center == "auto":
        if extended:
            from .extended import sino_360_to_180

            _, _, center_value = sino_360_to_180(
                sino360, job.theta_rad, overlap=job.extended["overlap"], side=job.extended["side"]
            )
            center_value = float(center_value)
            info["center_method"] = "360-to-180 stitching"
        else:
            from .center import find_center

            lo, hi = row_range if row_range is not None else (mid_row, mid_row + 1)
            band0 = max(lo, mid_row - CENTER_BAND_ROWS // 2)
            band1 = min(hi, band0 + CENTER_BAND_ROWS)
            band, band_theta = _sinograms(job, band0, band1)
            band = np.asarray(to_device(band, "cpu"), dtype=np.float32)
            per_row = [float(find_center(band[:, i], band_theta)) for i in range(band.shape[1])]
            center_value = float(np.median(per_row))
            info["center_method"] = (f"median of find_center(method='auto') over rows {band0}-{band1 - 1}")
            info["center_per_row"] = per_row
        from .center import center_quicklook

        png = Path(f"{out_stem}_center.png")
        centers = np.clip(center_value + np.arange(-4, 5, 2, dtype=np.float64), 0, sino2d.shape[1] - 1)
        center_quicklook(sino2d, theta, centers, png, algorithm=job.algorithm)
        info["center_png"] = str(png)
    else:
        center_value = float(center)
        info["center_method"] = "given"
    info["center_row"] = int(mid_row)
    job = _replace(job, center=center_value)
    # the middle slice through the whole chain gives the reconstructed width
    from .algorithms import reconstruct

    width = reconstruct(
        sino, theta, center_value, algorithm=job.algorithm, filter_name=job.filter_name, device=job.device
    ).shape[-1]
    return job, center_value, width, info


def _side(side):
    if isinstance(side, (np.integer, np.floating)):
        return side.item()
    return side


def _replace(job: _Job, **changes) -> _Job:
    return replace(job, **changes)
