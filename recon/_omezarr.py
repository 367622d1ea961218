"""OME-Zarr writing for reconstructed volumes: layout, NGFF metadata, pyramid, resume markers.

Layout chosen (NGFF 0.4 on Zarr format 2, the most widely read combination today)::

    out.zarr/
      .zgroup  .zattrs         multiscales (NGFF 0.4) + anodescope attributes
      0/  1/  2/ ...           levels: full resolution, then 2x mean-pooled in z, y, x
      .anodescope/             resume markers (ignored by Zarr readers)
        chunk-000000.json      one per finished level-0 slab, written after its data
        level-1.json           one per finished pyramid level

Arrays use "/" as dimension separator (NGFF 0.4), float32 (or float16 on request, see
``DTYPES``), Blosc (LZ4 by default, see ``COMPRESSIONS``). Level ``k`` has shape ``ceil(shape_{k-1} / 2)``; a voxel of level ``k`` is the mean of the (up to 2x2x2)
voxels of level ``k-1`` it covers (partial blocks at odd edges average what exists), so its
scale is ``2**k`` times the voxel size and its translation ``(2**k - 1) / 2`` voxels.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from ._errors import InputError

MARKER_DIR = ".anodescope"
NGFF_VERSION = "0.4"
#: attribute naming the program that wrote the store, used to recognise our outputs
WRITER = "anodescope.recon.reconstruct_to_zarr"


# ----------------------------------------------------------------------------- store state
def is_zarr_store(path: Path) -> bool:
    """Whether ``path`` is a Zarr group or array directory (format 2 or 3)."""
    path = Path(path)
    return path.is_dir() and any(
        (path / name).exists() for name in (".zgroup", ".zarray", "zarr.json")
    )


def read_attrs(path: Path) -> dict | None:
    """The group attributes of an existing store, or None when unreadable."""
    try:
        with open(Path(path) / ".zattrs", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def remove_store(path: Path) -> None:
    """Delete an existing output (a Zarr directory or a plain file).

    Raises
    ------
    InputError
        When ``path`` is a directory that is not a Zarr store: never delete such a folder.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        if not is_zarr_store(path):
            raise InputError(
                f"{path}: exists and is not a Zarr store; refusing to delete it even with "
                "--overwrite (choose another output path)"
            )
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ----------------------------------------------------------------------------- markers
def _atomic_write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def chunk_marker(out: Path, index: int) -> Path:
    """Path of the marker that records level-0 slab ``index`` as finished."""
    return Path(out) / MARKER_DIR / f"chunk-{index:06d}.json"


def level_marker(out: Path, level: int) -> Path:
    """Path of the marker that records pyramid ``level`` as finished."""
    return Path(out) / MARKER_DIR / f"level-{level}.json"


def mark_done(marker: Path, **info) -> None:
    """Record a finished piece (written only after its data is on disk)."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_json(marker, {"finished": now_iso(), **info})


def done_chunks(out: Path) -> set[int]:
    """Indices of the level-0 slabs recorded as finished."""
    folder = Path(out) / MARKER_DIR
    if not folder.is_dir():
        return set()
    done = set()
    for p in folder.glob("chunk-*.json"):
        try:
            done.add(int(p.stem.split("-")[1]))
        except (IndexError, ValueError):
            continue
    return done


# ----------------------------------------------------------------------------- metadata
def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def level_shapes(shape: tuple[int, int, int], n_levels: int) -> list[tuple[int, int, int]]:
    """Shapes of levels 0..n_levels-1 (each ``ceil`` half of the one before)."""
    shapes = [tuple(int(s) for s in shape)]
    for _ in range(1, n_levels):
        shapes.append(tuple(max(1, math.ceil(s / 2)) for s in shapes[-1]))
    return shapes


def default_levels(shape: tuple[int, int, int], *, min_size: int = 256) -> int:
    """Number of levels: halve until the larger in-plane side is at most ``min_size``."""
    n, side = 1, max(shape[1], shape[2])
    while side > min_size and n < 12:
        side = math.ceil(side / 2)
        n += 1
    return n


def multiscales(n_levels: int, voxel_size_um: float | None, *, name: str) -> list[dict]:
    """The NGFF 0.4 ``multiscales`` attribute for ``n_levels`` levels (axes z, y, x).

    With ``voxel_size_um=None`` (pixel size unknown) the scale is 1 per voxel and the axes
    carry no unit, rather than claiming micrometres.
    """
    known = voxel_size_um is not None
    voxel_size_um = float(voxel_size_um) if known else 1.0
    datasets = []
    for k in range(n_levels):
        factor = 2**k
        transforms = [{"type": "scale", "scale": [voxel_size_um * factor] * 3}]
        if k:
            transforms.append(
                {"type": "translation", "translation": [voxel_size_um * (factor - 1) / 2] * 3}
            )
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    return [
        {
            "version": NGFF_VERSION,
            "name": name,
            "axes": [
                {"name": ax, "type": "space", **({"unit": "micrometer"} if known else {})}
                for ax in "zyx"
            ],
            "datasets": datasets,
            "type": "mean",
            "metadata": {
                "description": "2x2x2 mean pooling of the level above; partial edge blocks "
                "average the voxels that exist",
                "method": "anodescope.recon._omezarr.mean_pool2",
            },
        }
    ]


#: output codecs: Blosc with bit-shuffle. Reconstructed float32 slices are noisy and compress
#: little (about 1.2x): LZ4 writes about 2.5x faster than Zstandard for 3 % more bytes.
COMPRESSIONS = ("lz4", "zstd", "none")

#: stored value types: float32, or float16 for half the bytes written and read (tomocupy's
#: 16-bit option; 11 significant bits, normal from 6.1e-5 to 65504). Computation is float32.
DTYPES = ("float32", "float16")


def create_store(out: Path, shape, chunk_z: int, attrs: dict, *, task_levels: int = 0,
                 compression: str = "lz4", dtype: str = "float32"):
    """Create the group, its level-0 array and the ``task_levels`` pyramid levels that the
    slab tasks fill (level ``k`` chunked by ``chunk_z / 2**k`` rows); returns the zarr group."""
    import zarr

    group = zarr.open_group(str(out), mode="w", zarr_format=2)
    create_level(group, 0, shape, chunk_z, compression=compression, dtype=dtype)
    for level, level_shape in enumerate(level_shapes(tuple(shape), task_levels + 1)[1:], start=1):
        create_level(group, level, level_shape, max(1, chunk_z >> level), compression=compression,
                     dtype=dtype)
    group.attrs.update(attrs)
    (Path(out) / MARKER_DIR).mkdir(exist_ok=True)
    return group


def _codec(compression: str) -> dict:
    from numcodecs import Blosc

    if compression == "none":
        return {"compressors": None}
    if compression == "lz4":
        return {"compressor": Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE)}
    if compression == "zstd":
        return {"compressor": Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)}
    raise InputError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")


def create_level(group, level: int, shape, chunk_z: int, *, compression: str = "lz4",
                 dtype: str = "float32"):
    """Create the array of one level (``dtype``, one of ``DTYPES``): slabs of ``chunk_z``
    rows, 512 x 512 tiles."""
    if str(np.dtype(dtype)) not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    chunks = (max(1, min(chunk_z, shape[0])), min(512, shape[1]), min(512, shape[2]))
    return _dense(group.create_array(
        str(level),
        shape=tuple(int(s) for s in shape),
        chunks=chunks,
        dtype=str(np.dtype(dtype)),
        **_codec(compression),
        fill_value=0.0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        overwrite=True,
    ))


def _dense(array):
    """``array`` with ``write_empty_chunks`` on: every chunk is written as it is, skipping
    zarr's scan of each chunk for an all-fill-value block (a reconstructed slab is never
    empty; LZ4 writes 1.38 x faster without the scan). Unchanged on a zarr without
    ``with_config``."""
    with_config = getattr(array, "with_config", None)
    if with_config is None:
        return array
    try:
        return with_config({"write_empty_chunks": True})
    except TypeError:
        return array


def open_level(out, level: int):
    """Level ``level`` of the store ``out`` opened for writing (see ``_dense``)."""
    import zarr

    return _dense(zarr.open_array(str(Path(out) / str(level)), mode="r+", zarr_format=2))


def update_attrs(out: Path, **changes) -> None:
    """Update group attributes in place (only the main thread calls this)."""
    import zarr

    group = zarr.open_group(str(out), mode="r+", zarr_format=2)
    group.attrs.update(changes)


# ----------------------------------------------------------------------------- pyramid
def mean_pool2(block):
    """2x2x2 mean pooling of a 3-D block; odd edges average the voxels that exist.

    NumPy or CuPy in, the same kind out (float32). The pairs are added in float64 along z,
    then y, then x, so the work shrinks by half at each step.

    Examples
    --------
    >>> mean_pool2(np.arange(8, dtype=np.float32).reshape(2, 2, 2)).tolist()
    [[[3.5]]]
    >>> mean_pool2(np.ones((3, 1, 1), np.float32)).shape
    (2, 1, 1)
    """
    from ._backend import array_module

    xp = array_module(block)
    block = xp.asarray(block)
    out_shape = tuple(math.ceil(s / 2) for s in block.shape)
    odd = [2 * o - s for o, s in zip(out_shape, block.shape)]  # 1 where an axis has odd length
    if any(odd):  # zero-pad, then divide by the voxels that exist
        block = xp.pad(block, [(0, p) for p in odd])
    total = xp.add(block[0::2], block[1::2], dtype=xp.float64)
    total = total[:, 0::2] + total[:, 1::2]
    total = total[:, :, 0::2] + total[:, :, 1::2]
    if not any(odd):
        return (total / 8.0).astype(xp.float32)
    # voxels per cell: 2 along each axis except 1 in a trailing odd cell
    per_axis = []
    for o, p in zip(out_shape, odd):
        c = np.full(o, 2.0)
        if o:
            c[-1] -= p
        per_axis.append(c)
    count = per_axis[0][:, None, None] * per_axis[1][None, :, None] * per_axis[2][None, None, :]
    return (total / xp.asarray(count)).astype(xp.float32)


def build_level(out: Path, level: int, *, slab_rows: int, compression: str = "lz4") -> None:
    """Write pyramid ``level`` from ``level - 1``, slab by slab (``slab_rows`` even rows), in
    the value type of ``level - 1``."""
    import zarr

    group = zarr.open_group(str(out), mode="r+", zarr_format=2)
    src = group[str(level - 1)]
    shape = tuple(math.ceil(s / 2) for s in src.shape)
    slab_rows = max(2, slab_rows - slab_rows % 2)
    dst = create_level(group, level, shape, max(1, slab_rows // 2), compression=compression,
                       dtype=str(src.dtype))
    for z0 in range(0, src.shape[0], slab_rows):
        block = src[z0 : z0 + slab_rows]
        dst[z0 // 2 : z0 // 2 + math.ceil(block.shape[0] / 2)] = mean_pool2(block).astype(src.dtype, copy=False)
    mark_done(level_marker(out, level), level=level, shape=list(shape))


# ----------------------------------------------------------------------------- provenance
def sha256_of(path: Path, *, block_bytes: int = 8 * 2**20) -> dict:
    """SHA-256 of an input: a file's content read in blocks, or a folder's listing.

    For a folder (e.g. a TIFF stack) the hash covers the sorted relative names, sizes
    (bytes) and modification times (ns) of its files, not their content.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            st = p.stat()
            digest.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"sha256": digest.hexdigest(), "sha256_of": "file list, sizes and mtimes"}
    with open(path, "rb") as fh:
        while chunk := fh.read(block_bytes):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "sha256_of": "file content"}


def package_versions() -> dict:
    """Versions of anodescope and the numerical packages (without importing them)."""
    from importlib import metadata

    versions = {}
    for name in ("anodescope", "numpy", "scipy", "dask", "zarr", "numba", "h5py", "cupy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name != "cupy":
                versions[name] = None
    for dist in ("cupy-cuda12x", "cupy-cuda11x"):
        try:
            versions["cupy"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


# ----------------------------------------------------------------------------- quick-look
def slice_png(volume_slice: np.ndarray, path: Path, *, title: str, units: str) -> Path:
    """Write a quick-look PNG of one slice with a colour bar (robust 0.5-99.5 % limits)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    img = np.asarray(volume_slice, dtype=np.float32)
    finite = img[np.isfinite(img)]
    lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    if not hi > lo:
        hi = lo + 1.0
    fig = Figure(figsize=(6.4, 5.6), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    fig.colorbar(im, ax=ax, label=units)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
