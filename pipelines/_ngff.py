"""Small OME-NGFF helpers shared by the segment verb and the napari labels writer."""

from __future__ import annotations

from pathlib import Path


def require_label_group(store: str | Path, name: str):
    """Open (or create) the NGFF label image ``<store>/labels/<name>`` and list it in ``labels``.

    Parameters
    ----------
    store : str or Path
        An OME-Zarr image store (the volume the labels belong to).
    name : str
        Label image name.

    Returns
    -------
    zarr.Group
        The label image group (its arrays and ``image-label`` attributes are the caller's).
    """
    import zarr

    labels = zarr.open_group(str(store), mode="a").require_group("labels")
    names = list(labels.attrs.get("labels", []))
    if name not in names:
        names.append(name)
    labels.attrs["labels"] = names
    return labels.require_group(name)
