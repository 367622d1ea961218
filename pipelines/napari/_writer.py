"""napari writer: labels layers as NGFF 0.4 label images on Zarr format 2."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .._errors import InputError

__all__ = ["write_labels"]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "labels"


def write_labels(path: str, data, attributes: dict) -> list[str]:
    """Write a labels layer (e.g. edited phase labels) as an NGFF label image.

    When ``path`` is an existing anodescope volume store (``.zarr`` with ``multiscales``) the
    labels go to ``path/labels/<layer name>`` and are registered in ``labels/.zattrs``, next
    to the volume they label; otherwise ``path`` becomes a standalone label image. The
    voxel size in um is the layer's scale; ``phases`` and ``axis`` in the layer metadata are
    kept. Dask (lazy) data are written chunk by chunk.

    Parameters
    ----------
    path : str
        Output ``.zarr`` directory (or an existing volume store).
    data : array_like or list of array_like
        Label values, integer (z, y, x) or (y, x); a multiscale list writes its level 0.
    attributes : dict
        napari layer attributes: ``name``, ``scale`` (um per voxel), ``metadata``.

    Returns
    -------
    list of str
        The written label image directory.

    Raises
    ------
    InputError
        For non-integer data or a path that is neither a ``.zarr`` name nor a Zarr store.

    Examples
    --------
    >>> import numpy as np
    >>> write_labels("edited.zarr", np.ones((4, 8, 8), np.uint8), {"name": "layers"})  # doctest: +SKIP
    ['edited.zarr']
    """
    import zarr

    if isinstance(data, (list, tuple)):
        data = data[0]
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "iub":
        raise InputError(f"labels layer {attributes.get('name')!r}: expected integer labels, got dtype {dtype}")
    if dtype.kind == "b":
        dtype = np.dtype(np.uint8)
    out = Path(path)
    if out.suffix != ".zarr" and not out.is_dir():
        raise InputError(f"{out}: labels are written as Zarr; use a path ending in .zarr")
    from ._reader import _zarr_attrs

    name = _safe_name(str(attributes.get("name", "labels")))
    root_attrs = _zarr_attrs(out) if out.is_dir() else None
    if root_attrs is not None and "multiscales" in root_attrs and "image-label" not in root_attrs:
        from .._ngff import require_label_group

        target = out / "labels" / name
        group = require_label_group(out, name)
        source = {"image": "../../"}
    else:
        group = zarr.open_group(str(out), mode="w", zarr_format=2)
        target, source = out, None
    ndim = len(data.shape)
    chunks = tuple(min(s, 64 if ndim == 3 else 512) for s in data.shape)
    arr = group.create_array("0", shape=tuple(int(s) for s in data.shape), dtype=dtype, chunks=chunks,
                             fill_value=0, overwrite=True,
                             chunk_key_encoding={"name": "v2", "separator": "/"})
    if hasattr(data, "dask"):
        # one dask block per zarr chunk: no two threads write parts of the same chunk
        data.astype(dtype).rechunk(arr.chunks).store(arr, lock=False)
    else:
        arr[...] = np.asarray(data, dtype=dtype)
    scale = [float(s) for s in (attributes.get("scale") or [1.0] * ndim)][-ndim:]
    meta = dict((attributes.get("metadata") or {}).get("anodescope", {}))
    axes = "zyx"[-ndim:]
    label_attrs = {
        "multiscales": [{"version": "0.4", "name": name,
                         "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in axes],
                         "datasets": [{"path": "0", "coordinateTransformations": [
                             {"type": "scale", "scale": scale}]}]}],
        "image-label": {"version": "0.4", **({"source": source} if source else {})},
        "voxel_size_um": scale[-1],
    }
    for key in ("phases", "axis"):
        if meta.get(key) not in (None, []):
            label_attrs[key] = meta[key]
    group.attrs.update(label_attrs)
    return [str(target)]
