"""Chunked reconstruction of a whole scan into an OME-Zarr volume, with resume.

The scan is split into slabs of detector rows sized from a memory limit. Each slab runs
the chain read -> normalise -> (zingers) -> (Paganin, with a halo of rows) -> -log ->
(360 -> 180 degrees) -> (stripe removal) -> reconstruct -> write, as one Dask task, so
that reading, computing and writing of different slabs overlap (threaded scheduler by
default; a running ``dask.distributed`` client is used when there is one).

Output layout (NGFF 0.4 on Zarr format 2, see ``recon._omezarr``)::

    OUT.zarr/            multiscale volume, axes z, y, x in micrometres
    OUT_slice.png        quick-look of the middle slice with a colour bar
    OUT_center.png       centre quick-look (only when the centre was found automatically)

where ``OUT`` is the output path without its ``.zarr`` suffix. Each finished slab is
recorded by a marker file written after its data; rerunning the same call after an
interruption computes only the missing slabs.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np

from . import _omezarr
from ._backend import resolve_device
from ._chunk_plan import paganin_halo, parse_memory, plan_chunks, row_bytes
from ._chunk_tasks import ZINGER_HALO, _execute, _find_geometry, _Job, _replace, _with_context
from ._errors import InputError

__all__ = ["reconstruct_to_zarr", "open_volume"]

ALGORITHMS = ("fourier", "fbp")
FILTER_NAMES = ("ramp", "shepp", "cosine", "hann", "parzen")
RINGS = (None, "sorting", "all", "fw")
FLAT_METHODS = ("mean", "median")
#: values are line integrals per detector pixel (see docs/architecture.md)
UNITS = "attenuation per pixel (line integral in detector-pixel units; divide by voxel_size_um for 1/um)"


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {tuple(c for c in choices)}, got {value!r}")


def _check_phase(phase) -> dict | None:
    if phase is None:
        return None
    if not isinstance(phase, dict):
        raise InputError(
            "phase must be None or a dict with 'distance_mm' and 'delta_beta' "
            f"(and optional 'energy_kev', 'pixel_size_um'), got {phase!r}"
        )
    allowed = {"distance_mm", "delta_beta", "energy_kev", "pixel_size_um"}
    unknown = set(phase) - allowed
    if unknown:
        raise InputError(f"phase has unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
    out = {}
    for key in ("distance_mm", "delta_beta"):
        if key not in phase:
            raise InputError(f"phase needs {key!r} (Paganin filter), got keys {sorted(phase)}")
    for key, value in phase.items():
        if value is None and key in ("energy_kev", "pixel_size_um"):
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"phase[{key!r}] must be a positive number, got {value!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"phase[{key!r}] must be a positive number, got {value!r}")
        out[key] = value
    return out


def _resolve_rows(rows, n_rows: int, source: str) -> tuple[int, int]:
    if rows is None:
        return 0, n_rows
    if isinstance(rows, str):
        parts = rows.split(":")
        if len(parts) != 2:
            raise InputError(f"rows {rows!r} must be START:STOP (detector rows)")
        try:
            rows = tuple(int(p) if p.strip() else None for p in parts)
        except ValueError:
            raise InputError(f"rows {rows!r} must be START:STOP with integers") from None
    try:
        start, stop = rows
    except (TypeError, ValueError):
        raise InputError(f"rows must be (start, stop) or 'START:STOP', got {rows!r}") from None
    for value in (start, stop):
        if value is not None and not -n_rows <= value <= n_rows:
            raise InputError(f"rows {rows!r} lie outside the {n_rows} detector rows of {source}")
    start, stop, _ = slice(start, stop).indices(n_rows)
    if stop <= start:
        raise InputError(f"rows {rows!r} select no detector rows of {source} (it has {n_rows} rows)")
    return start, stop


def _open_source(source, read_kwargs: dict | None):
    """Return (Projections, input path or None, label for messages)."""
    if isinstance(source, (str, os.PathLike)):
        from .io import read_projections

        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return read_projections(path, **(read_kwargs or {})), path, str(path)
    if not all(hasattr(source, a) for a in ("data", "flats", "darks", "theta_rad")):
        raise InputError(
            f"source must be a path or a recon.Projections, got {type(source).__name__}"
        )
    src = getattr(source, "source", None)
    path = Path(src) if src and Path(str(src)).exists() else None
    return source, path, str(src or "<in-memory projections>")


def _check_projections(proj, label: str) -> None:
    data = proj.data
    if getattr(data, "ndim", 0) != 3:
        raise InputError(
            f"{label}: projections have shape {tuple(getattr(data, 'shape', ()))}; "
            "expected (n_angles, n_rows, n_cols)"
        )
    if proj.flats is None:
        raise InputError(f"{label}: no flat fields; they are needed to normalise the projections")
    for name in ("flats", "darks"):
        ref = getattr(proj, name)
        if ref is None:
            continue
        if ref.ndim != 3 or tuple(ref.shape[1:]) != tuple(data.shape[1:]):
            raise InputError(
                f"{label}: {name} have shape {tuple(ref.shape)} but projections have "
                f"{tuple(data.shape)}; expected ({name[:-1]} images, {data.shape[1]}, {data.shape[2]})"
            )
    theta = np.asarray(proj.theta_rad, dtype=np.float64)
    if theta.shape != (data.shape[0],):
        raise InputError(
            f"{label}: {theta.size} rotation angles for {data.shape[0]} projections; "
            "expected one angle per projection"
        )
    if not np.all(np.isfinite(theta)):
        raise InputError(f"{label}: rotation angles contain NaN or inf")


def _is_360(theta: np.ndarray, extended) -> bool:
    if extended in (True, False):
        return bool(extended)
    if extended != "auto":
        raise InputError(f"extended must be 'auto', True or False, got {extended!r}")
    span = float(np.max(theta) - np.min(theta))
    return span > 1.5 * math.pi


def _input_identity(path: Path | None, label: str, proj) -> dict:
    """Identity of the input for the resume check: a file's path, size and mtime, or for
    projections in memory their shape and Dask token (content-based for NumPy arrays)."""
    if path is None:
        from dask.base import tokenize

        shape = [int(s) for s in proj.data.shape]
        token = tokenize(proj.data, proj.flats, proj.darks, np.asarray(proj.theta_rad))
        return {"path": label, "shape": shape, "token": token}
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=float))



# ----------------------------------------------------------------------------- public API
def _check_ring_options(rings, options) -> dict:
    """Validate the stripe remover's keyword options against its signature."""
    import inspect

    from . import stripes

    if not options:
        return {}
    if rings is None:
        raise InputError("ring options were given without a ring removal method (rings=None)")
    func = {"sorting": stripes.remove_stripes_sorting, "all": stripes.remove_all_stripes,
            "fw": stripes.remove_stripes_fw}[rings]
    allowed = [name for name, par in inspect.signature(func).parameters.items()
               if par.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"ring option(s) {unknown} are not options of {func.__name__}; "
                         f"expected some of {allowed}")
    return dict(options)


def reconstruct_to_zarr(
    source,
    out_path,
    *,
    center="auto",
    algorithm: str = "fourier",
    filter_name: str = "ramp",
    rings: str | None = None,
    ring_options: dict | None = None,
    zingers: bool = False,
    phase: dict | None = None,
    flat_method: str = "mean",
    device: str = "auto",
    memory_limit="2GB",
    rows=None,
    overwrite: bool = False,
    progress: bool = True,
    pyramid_levels: int | None = None,
    extended="auto",
    pixel_size_um: float | None = None,
    energy_kev: float | None = None,
    num_workers: int | None = None,
    rows_per_chunk: int | None = None,
    read_kwargs: dict | None = None,
    compression: str = "lz4",
    dtype: str = "float32",
    on_slab_done=None,
    _chunk_hook=None,
) -> Path:
    """Reconstruct a whole scan slab by slab into a multiscale OME-Zarr volume.

    Parameters
    ----------
    source : str, Path or Projections
        A scan file or folder (read with ``recon.read_projections``) or projections already
        opened.
    out_path : str or Path
        Output Zarr directory (``.zarr`` suffix recommended). The quick-look PNGs go next
        to it as ``<stem>_slice.png`` and ``<stem>_center.png``.
    center : "auto" or float
        Rotation axis in detector columns (pixels, ``(W - 1) / 2`` is centred; for a 360
        degree scan, in the columns of the stitched 180 degree sinogram). "auto" finds it
        once on the middle row and writes the centre quick-look PNG.
    algorithm : {"fourier", "fbp"}
        Reconstruction algorithm of ``recon.reconstruct``.
    filter_name : {"ramp", "shepp", "cosine", "hann", "parzen"}
        Reconstruction filter.
    rings : {None, "sorting", "all", "fw"}
        Stripe (ring) removal on the sinograms: sorting-based, the combined method, or
        Fourier-wavelet.
    ring_options : dict, optional
        Keyword options of the stripe remover (``recon.remove_stripes_sorting``,
        ``recon.remove_all_stripes`` or ``recon.remove_stripes_fw``), e.g. ``{"size": 9}``:
        the sorting filter's default width (21 px) suits ~2k-pixel detectors and biases
        the values of small, axially symmetric samples; use a few pixels for narrow scans.
    zingers : bool
        Remove zingers with a 3 x 3 median test on the normalised projections.
    phase : dict, optional
        Paganin phase retrieval: ``{"distance_mm": D, "delta_beta": R}`` plus optional
        ``"energy_kev"`` and ``"pixel_size_um"`` (default: from the scan file).
    flat_method : {"mean", "median"}
        How the flats and darks are combined.
    device : {"auto", "cpu", "gpu"}
        Where the corrections and the reconstruction run.
    memory_limit : int or str
        Host memory for the slabs in flight (bytes or "512MB", "2GiB", ...).
    rows : (int, int) or "START:STOP", optional
        Detector rows to reconstruct (default all); the volume's z runs over them.
    overwrite : bool
        Replace an existing output. Without it an existing output is never modified,
        except to finish an interrupted run of the same call.
    progress : bool
        Show a progress bar (slabs) on stderr.
    pyramid_levels : int, optional
        Number of resolution levels including level 0 (default: halve until the slice side
        is at most 256 pixels).
    extended : "auto" or bool
        Treat the scan as an off-centre 360 degree scan and stitch it to 180 degrees
        ("auto": when the angles span more than 270 degrees).
    pixel_size_um, energy_kev : float, optional
        Override the detector pixel size (um) and the energy (keV) of the file.
    num_workers : int, optional
        Slabs processed at the same time (default: up to 4, at least 2 on a GPU; fewer
        when the memory limit requires). Their total memory follows ``memory_limit``.
    rows_per_chunk : int, optional
        Force the slab height (rows) instead of deriving it from ``memory_limit``.
    read_kwargs : dict, optional
        Extra keyword arguments for ``recon.read_projections``.
    compression : {"lz4", "zstd", "none"}
        Blosc codec of the stored arrays (bit-shuffled). Reconstructed slices compress
        little (about 1.2x); LZ4 writes about 2.5x faster than Zstandard for 3 % more
        bytes, "none" is fastest. A resumed run keeps the codec it started with.
    dtype : {"float32", "float16"}
        Value type of the stored volume and its pyramid. The computation is float32 either
        way; "float16" halves the bytes copied from the GPU, compressed and written (as
        tomocupy's 16-bit output does) at 11 significant bits (relative rounding <= 4.9e-4
        for magnitudes from 6.1e-5 to 65504 attenuation per pixel; smaller ones keep an
        absolute resolution of 6e-8). Values beyond 65504 are an InputError, not infinities.
        A resumed run keeps the type it started with.
    on_slab_done : callable, optional
        Called as ``on_slab_done(index)`` after each slab is written and marked complete
        (from the thread that ran the slab; for progress displays such as napari's). On a
        dask.distributed cluster it must be picklable and runs on the worker.

    Returns
    -------
    Path
        The output Zarr directory.

    Raises
    ------
    InputError
        Bad parameters or input data (the message names the file and what is wrong), or an
        existing output written with different parameters (use ``overwrite=True``).
    FileNotFoundError
        When ``source`` does not exist.

    Notes
    -----
    The volume stores ``reconstruct``'s values unchanged, the attenuation per pixel (see
    the ``units`` attribute); ``voxel_size_um`` converts it to 1/um. Level 0 is chunked by
    slab; pyramid levels are 2x mean-pooled copies. When the slab height is a multiple of
    ``2**k`` (the automatic plan rounds it), each slab task writes its own rows of levels
    1..k from the slab in memory; levels beyond that are pooled from the level below once
    level 0 is complete. The attributes hold every parameter and a ``provenance`` block
    (input path and SHA-256, package versions, times). Each finished slab is recorded by a
    marker written after its data, so an interrupted run (Ctrl-C, kill) resumes where it stopped when rerun with the
    same arguments; a slab without its marker is always recomputed.

    Examples
    --------
    >>> from recon import simulate_scan, shepp_logan
    >>> import numpy as np
    >>> vol = np.stack([shepp_logan(64)] * 4)                      # doctest: +SKIP
    >>> scan = simulate_scan(vol, np.linspace(0, np.pi, 90, endpoint=False))  # doctest: +SKIP
    >>> reconstruct_to_zarr(scan, "phantom.zarr", progress=False)  # doctest: +SKIP
    PosixPath('phantom.zarr')
    """
    started = time.time()
    out = Path(out_path)
    _check_choice("algorithm", algorithm, ALGORITHMS)
    _check_choice("filter_name", filter_name, FILTER_NAMES)
    _check_choice("rings", rings, RINGS)
    ring_options = _check_ring_options(rings, ring_options)
    _check_choice("flat_method", flat_method, FLAT_METHODS)
    _check_choice("compression", compression, _omezarr.COMPRESSIONS)
    try:  # numpy types too (np.float16, np.dtype("f2"))
        dtype = str(np.dtype(dtype))
    except TypeError:
        pass
    _check_choice("dtype", dtype, _omezarr.DTYPES)
    limit = parse_memory(memory_limit)
    phase = _check_phase(phase)
    if not (center == "auto" or _is_number(center)):
        raise InputError(f"center must be 'auto' or a number (detector columns), got {center!r}")
    if pyramid_levels is not None and (int(pyramid_levels) != pyramid_levels or pyramid_levels < 1):
        raise InputError(f"pyramid_levels must be an integer >= 1, got {pyramid_levels!r}")
    for name, value in (("pixel_size_um", pixel_size_um), ("energy_kev", energy_kev)):
        if value is not None and not (_is_number(value) and value > 0):
            raise InputError(f"{name} must be a positive number, got {value!r}")
    resolved_device = resolve_device(device)

    proj, in_path, label = _open_source(source, read_kwargs)
    _check_projections(proj, label)
    theta = np.asarray(proj.theta_rad, dtype=np.float64)
    n_angles, n_rows, n_cols = (int(s) for s in proj.data.shape)
    row0, row1 = _resolve_rows(rows, n_rows, label)
    is360 = _is_360(theta, extended)
    pixel = _positive_or_none(pixel_size_um if pixel_size_um is not None else proj.pixel_size_um)
    energy = _positive_or_none(energy_kev if energy_kev is not None else proj.energy_kev)
    halo = 0
    if zingers:
        halo = ZINGER_HALO
    if phase is not None:
        phase = {
            "energy_kev": phase.get("energy_kev", energy),
            "pixel_size_um": phase.get("pixel_size_um", pixel),
            **{k: phase[k] for k in ("distance_mm", "delta_beta")},
        }
        for key, what in (("energy_kev", "--energy-kev"), ("pixel_size_um", "--pixel-size-um")):
            if phase[key] is None:
                raise InputError(
                    f"{label}: Paganin phase retrieval needs {key} but the file has none; "
                    f"give it ({what} on the command line)"
                )
        halo = max(halo, paganin_halo(**phase))

    parameters = {
        "center": center if center == "auto" else float(center),
        "algorithm": algorithm,
        "filter_name": filter_name,
        "rings": rings,
        "ring_options": ring_options,
        "zingers": bool(zingers),
        "phase": phase,
        "flat_method": flat_method,
        "rows": [row0, row1],
        "extended_360": is360,
        "pixel_size_um": pixel,
        "energy_kev": energy,
        "pyramid_levels": pyramid_levels,
        "read_kwargs": read_kwargs or {},
    }
    fingerprint = _jsonable(
        {"input": _input_identity(in_path, label, proj), "parameters": parameters}
    )
    if not out.parent.is_dir():
        raise InputError(f"{out}: the output folder {out.parent} does not exist")
    stem = out.with_suffix("") if out.suffix == ".zarr" else out
    state, old_attrs = _existing_state(out, fingerprint, overwrite=overwrite)
    if state == "complete":
        return out
    if state == "new":  # quick-looks of an earlier, replaced output would be stale
        for suffix in ("_slice.png", "_center.png"):
            Path(f"{stem}{suffix}").unlink(missing_ok=True)

    # -- hash the input in the background while the slabs run
    sha_future = _background(_omezarr.sha256_of, in_path) if in_path is not None else None

    # slabs in flight overlap one slab's reading and writing with another's computing; their
    # total memory follows memory_limit whatever their number, so a GPU gets as many as a CPU
    # (at least 2, so that the host work overlaps the GPU's)
    cpus = os.cpu_count() or 1
    max_workers = num_workers or (min(4, max(2, cpus)) if resolved_device == "gpu" else min(4, cpus))
    job = _Job(
        proj=proj,
        out=str(out),
        source=label,
        plan=None,
        theta_rad=theta,
        center=float("nan"),
        algorithm=algorithm,
        filter_name=filter_name,
        rings=rings,
        ring_options=ring_options,
        zingers=bool(zingers),
        phase=phase,
        flat_method=flat_method,
        device=resolved_device,
        hook=_chunk_hook if _chunk_hook is not None else on_slab_done,
    )
    if state == "resume":
        run = old_attrs["anodescope_run"]
        geometry = run["geometry"]
        width = int(geometry["width"])
        ext = geometry.get("extended")
        job = _replace(job, center=float(old_attrs["center"]), extended=ext)
        plan = _plan_from_attrs(run["plan"])
        # the slabs stay as recorded (markers refer to them); how many run at once follows
        # this call's memory limit
        refit = plan_chunks(
            row_start=plan.row_start,
            row_stop=plan.row_stop,
            bytes_per_row=plan.bytes_per_row,
            memory_limit=limit,
            halo=plan.halo,
            max_workers=max_workers,
            rows_per_chunk=plan.rows_per_chunk,
        )
        plan = _replace_plan(plan, chunks_in_flight=refit.chunks_in_flight, memory_limit=limit)
        storage = run.get("storage", {})
        task_levels = int(storage.get("task_levels", 0))
        compression = storage.get("compression", "zstd")  # stores written before the option existed used zstd
        dtype = storage.get("dtype", "float32")
        job = _replace(job, plan=plan, task_levels=task_levels, dtype=dtype)
        center_info = old_attrs.get("center_info", {})
    else:
        # a provisional one-row plan carries the halo for the geometry pass
        job = _replace(
            job,
            plan=plan_chunks(row_start=row0, row_stop=row1, bytes_per_row=1, memory_limit=limit, halo=halo),
        )
        mid = (row0 + row1 - 1) // 2
        try:
            job, center_value, width, center_info = _find_geometry(
                job, mid, center=center, extended=is360, out_stem=stem, row_range=(row0, row1)
            )
        except InputError as exc:
            raise _with_context(exc, job, mid, mid + 1) from exc
        per_row = row_bytes(
            n_angles=n_angles,
            n_cols=n_cols,
            n_flats=int(proj.flats.shape[0]),
            n_darks=int(proj.darks.shape[0]) if proj.darks is not None else 0,
            out_width=width,
            input_itemsize=int(np.dtype(proj.data.dtype).itemsize),
            phase=phase is not None,
            extended=is360,
        )
        plan = plan_chunks(
            row_start=row0,
            row_stop=row1,
            bytes_per_row=per_row,
            memory_limit=limit,
            halo=halo,
            max_workers=max_workers,
            rows_per_chunk=rows_per_chunk,
        )
        shape = (row1 - row0, width, width)
        n_levels = int(pyramid_levels) if pyramid_levels else _omezarr.default_levels(shape)
        plan, task_levels = _align_for_pyramid(plan, n_levels, forced=rows_per_chunk is not None)
        job = _replace(job, plan=plan, task_levels=task_levels, dtype=dtype)
        attrs = _initial_attrs(
            parameters=parameters,
            fingerprint=fingerprint,
            plan=plan,
            width=width,
            extended=job.extended,
            center=job.center,
            center_info=center_info,
            pixel=pixel,
            energy=energy,
            label=label,
            in_path=in_path,
            device=resolved_device,
            memory_limit=limit,
        )
        attrs["anodescope_run"]["storage"] = {"compression": compression, "task_levels": task_levels,
                                              "dtype": dtype}
        _omezarr.create_store(out, shape, plan.rows_per_chunk, attrs, task_levels=task_levels,
                              compression=compression, dtype=dtype)

    # -- level 0, slab by slab
    done = _omezarr.done_chunks(out)
    todo = [i for i in range(plan.n_chunks) if i not in done]
    from tqdm.auto import tqdm

    with tqdm(
        total=plan.n_chunks,
        initial=plan.n_chunks - len(todo),
        desc="reconstruct",
        unit="slab",
        disable=not progress,
    ) as bar:
        _execute(job, todo, workers=plan.chunks_in_flight, bar=bar)

    # -- pyramid, quick-look and final attributes
    shape0 = (row1 - row0, width, width)
    n_levels = int(pyramid_levels) if pyramid_levels else _omezarr.default_levels(shape0)
    slab_rows = max(2, int((limit // 2) // max(1, width * width * 4 * 10)))
    for level in range(1, n_levels):
        if _omezarr.level_marker(out, level).exists():
            continue
        if level <= job.task_levels:  # filled by the slab tasks, all of which are done
            _omezarr.mark_done(_omezarr.level_marker(out, level), level=level)
        else:
            _omezarr.build_level(out, level, slab_rows=slab_rows, compression=compression)

    import zarr

    level0 = zarr.open_array(str(out / "0"), mode="r", zarr_format=2)
    mid_z = level0.shape[0] // 2
    slice_png = Path(f"{stem}_slice.png")
    _omezarr.slice_png(
        level0[mid_z],
        slice_png,
        title=f"{out.name}: slice z={mid_z} (detector row {row0 + mid_z}), centre {job.center:.2f} px",
        units="attenuation per pixel",
    )
    sha = sha_future.result() if sha_future is not None else {"sha256": None, "sha256_of": "in-memory input"}
    attrs = _omezarr.read_attrs(out)
    run = attrs["anodescope_run"]
    run["status"] = "complete"
    provenance = attrs["provenance"]
    provenance["input"].update(sha)
    provenance["finished"] = _omezarr.now_iso()
    provenance.setdefault("runs", []).append(
        {"started": _iso(started), "finished": provenance["finished"], "slabs_computed": len(todo)}
    )
    quicklook = dict(attrs.get("quicklook", {}), slice_png=str(slice_png))
    if center_info.get("center_png"):
        quicklook["center_png"] = center_info["center_png"]
    _omezarr.update_attrs(
        out,
        multiscales=_omezarr.multiscales(n_levels, pixel, name=out.stem),
        anodescope_run=run,
        provenance=provenance,
        quicklook=quicklook,
    )
    return out


def _background(func, *args) -> concurrent.futures.Future:
    """Run ``func(*args)`` in a daemon thread (an interrupted run exits without waiting)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def target():
        try:
            future.set_result(func(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller via the future
            future.set_exception(exc)

    threading.Thread(target=target, name="anodescope-sha256", daemon=True).start()
    return future


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_or_none(value):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _iso(epoch: float) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).isoformat(timespec="seconds")


def _replace_plan(plan, **changes):
    from dataclasses import replace

    return replace(plan, **changes)


def _align_for_pyramid(plan, n_levels: int, *, forced: bool):
    """Make the slab height a multiple of ``2**(n_levels - 1)`` when the plan was automatic
    (and has at least that many rows), so that each slab task can write its own rows of
    every pyramid level; returns the plan and the number of levels the tasks write."""
    top = max(0, n_levels - 1)
    rows = plan.rows_per_chunk
    if not forced and top and rows >= 2**top and plan.n_chunks > 1:
        plan = _replace_plan(plan, rows_per_chunk=rows - rows % 2**top)
        rows = plan.rows_per_chunk
    if plan.n_chunks == 1:  # one slab: it holds the whole volume
        return plan, top
    levels = 0
    while levels < top and rows % 2 ** (levels + 1) == 0:
        levels += 1
    return plan, levels


def _plan_from_attrs(d: dict):
    from ._chunk_plan import ChunkPlan

    return ChunkPlan(**d)


def _initial_attrs(*, parameters, fingerprint, plan, width, extended, center, center_info, pixel,
                   energy, label, in_path, device, memory_limit) -> dict:
    from dataclasses import asdict

    return _jsonable(
        {
            "multiscales": _omezarr.multiscales(1, pixel, name="volume"),
            "units": UNITS,
            "voxel_size_um": pixel,
            "voxel_size_known": pixel is not None,
            "voxel_size_note": None
            if pixel is not None
            else "pixel size unknown: coordinateTransformations use scale 1 (pixels) and the "
            "axes have no unit",
            "energy_kev": energy,
            "center": center,
            "center_info": center_info,
            "algorithm": parameters["algorithm"],
            "filter_name": parameters["filter_name"],
            "parameters": parameters,
            "anodescope_run": {
                "writer": _omezarr.WRITER,
                "status": "running",
                "fingerprint": fingerprint,
                "plan": asdict(plan),
                "geometry": {"width": int(width), "extended": extended},
            },
            "provenance": {
                "input": {"path": str(in_path.resolve()) if in_path else label},
                "parameters": parameters,
                "device": device,
                "memory_limit_bytes": memory_limit,
                "versions": _omezarr.package_versions(),
                "created": _omezarr.now_iso(),
                "software": "anodescope recon.reconstruct_to_zarr",
            },
        }
    )


def _existing_state(out: Path, fingerprint: dict, *, overwrite: bool):
    """Return ("new" | "resume" | "complete", attrs) for the output path."""
    if not (out.exists() or out.is_symlink()):
        return "new", None
    if overwrite:
        _omezarr.remove_store(out)
        return "new", None
    attrs = _omezarr.read_attrs(out) if _omezarr.is_zarr_store(out) else None
    run = (attrs or {}).get("anodescope_run")
    if not run or run.get("writer") != _omezarr.WRITER:
        raise InputError(
            f"{out}: output exists and is not a reconstruction written by anodescope; "
            "use --overwrite (overwrite=True) to replace it"
        )
    old = run.get("fingerprint", {})
    if old != fingerprint:
        changed = sorted(
            k for k in set(old.get("parameters", {})) | set(fingerprint["parameters"])
            if old.get("parameters", {}).get(k) != fingerprint["parameters"].get(k)
        )
        if old.get("input") != fingerprint["input"]:
            changed.insert(0, "input")
        raise InputError(
            f"{out}: output exists and was written with different parameters "
            f"({', '.join(changed) or 'unknown'}); use --overwrite (overwrite=True) to replace it"
        )
    return ("complete" if run.get("status") == "complete" else "resume"), attrs


def open_volume(path, *, level: int = 0):
    """Open a reconstructed OME-Zarr volume lazily.

    Parameters
    ----------
    path : str or Path
        The Zarr directory written by :func:`reconstruct_to_zarr`.
    level : int
        Resolution level: 0 is full resolution, level k is 2**k times coarser.

    Returns
    -------
    volume : dask.array.Array, float32, shape (z, y, x)
        Attenuation per pixel (see ``attrs["units"]``); a float16 store is promoted to
        float32 as it is read.
    attrs : dict
        The group attributes (multiscales, voxel_size_um, center, parameters, provenance).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    InputError
        When ``path`` is not a Zarr store or ``level`` does not exist.

    Examples
    --------
    >>> vol, attrs = open_volume("phantom.zarr")  # doctest: +SKIP
    >>> attrs["voxel_size_um"], vol.shape          # doctest: +SKIP
    """
    import dask.array as da

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if not _omezarr.is_zarr_store(path):
        raise InputError(f"{path}: not a Zarr store (no .zgroup / zarr.json)")
    attrs = _omezarr.read_attrs(path) or {}
    try:
        datasets = [d["path"] for d in attrs["multiscales"][0]["datasets"]]
    except (KeyError, IndexError, TypeError):
        datasets = ["0"]
    if int(level) != level or not 0 <= level < len(datasets):
        raise InputError(f"{path}: level {level!r} does not exist; levels 0..{len(datasets) - 1}")
    if not (path / datasets[level] / ".zarray").exists():
        raise InputError(f"{path}: dataset {datasets[level]!r} is missing")
    volume = da.from_zarr(str(path / datasets[level]))
    if volume.dtype == np.float16:
        volume = volume.astype(np.float32)
    return volume, attrs
