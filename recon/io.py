"""Read beamline tomography scans lazily: DXchange HDF5, NeXus NXtomo and TIFF stacks.

Every reader returns a :class:`Projections` whose arrays are lazy dask arrays chunked along
detector rows, ``(n_frames, rows_chunk, n_cols)``: the sinogram-friendly layout, where one
chunk holds complete sinograms for a band of slices. The dask graphs hold only file paths
and dataset names (no open file handle), so they are safe for threads and can be pickled to
dask.distributed workers.

Angles are radians in :attr:`Projections.theta_rad`; files store degrees unless their
``units`` attribute says otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._errors import InputError
from ._io_hdf5 import (
    check_external_links,
    check_frames_match,
    distance_mm_guess,
    find_nx_entries,
    first_existing,
    frames_array,
    get_dataset,
    length_um_guess,
    link_exists,
    open_h5,
    read_scalar,
    read_string,
)
from ._io_lazy import angles_to_rad, as_dask, energy_to_kev, units_of
from ._io_tiff import (
    DARK_SUBDIRS,
    FLAT_SUBDIRS,
    PROJ_SUBDIRS,
    TIFF_SUFFIXES,
    subdir,
    tiff_files,
    tiff_source,
)

__all__ = ["Projections", "read_projections", "read_dxchange", "read_nxtomo", "read_tiff_stack"]

#: DXchange datasets
DX_DATA, DX_FLATS, DX_DARKS, DX_THETA = (
    "/exchange/data",
    "/exchange/data_white",
    "/exchange/data_dark",
    "/exchange/theta",
)
#: DXchange effective pixel size candidates (first found wins); default units um
DX_PIXEL_SIZE = (
    "/measurement/instrument/detection_system/objective/resolution",
    "/measurement/instrument/detector/actual_pixel_size_x",
)
DX_CAMERA_PIXEL = "/measurement/instrument/detector/pixel_size_x"
DX_MAGNIFICATION = "/measurement/instrument/detection_system/objective/magnification"
DX_ENERGY = ("/measurement/instrument/monochromator/energy",)
DX_DISTANCE = (
    "/measurement/instrument/camera_motor_stack/setup/camera_distance",
    "/measurement/instrument/detector_motor_stack/setup/camera_distance",
)
DX_SAMPLE_NAME = "/measurement/sample/name"

#: NXtomo image_key values
NX_PROJECTION, NX_FLAT, NX_DARK = 0, 1, 2

@dataclass
class Projections:
    """A tomography scan: raw projections, flat and dark fields, angles and metadata.

    Attributes
    ----------
    data : dask.array.Array
        Projections ``(n_angles, n_rows, n_cols)``, raw detector values (counts, a.u.),
        dtype as stored, chunked along rows.
    flats : dask.array.Array or None
        Flat (white) fields ``(n_flats, n_rows, n_cols)``, counts.
    darks : dask.array.Array or None
        Dark fields ``(n_darks, n_rows, n_cols)``, counts.
    theta_rad : numpy.ndarray
        Rotation angle of each projection ``(n_angles,)``, float64, radians.
    pixel_size_um : float or None
        Effective (sample-plane) pixel size in um, when known.
    energy_kev : float or None
        Beam energy in keV, when known.
    source : str
        File or folder the scan was read from.
    dataset : str
        Dataset holding the projections (e.g. ``"/exchange/data"``); ``""`` for TIFF.
    meta : dict
        Anything else worth keeping, as JSON-friendly values: ``format``, ``distance_mm``,
        notes on defaults used, ...
    """

    data: object
    flats: object | None
    darks: object | None
    theta_rad: np.ndarray
    pixel_size_um: float | None = None
    energy_kev: float | None = None
    source: str = ""
    dataset: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of :attr:`data`: ``(n_angles, n_rows, n_cols)``."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def n_angles(self) -> int:
        """Number of projections."""
        return self.shape[0]

    @property
    def n_rows(self) -> int:
        """Number of detector rows (slices)."""
        return self.shape[1]

    @property
    def n_cols(self) -> int:
        """Number of detector columns."""
        return self.shape[2]


# ----------------------------------------------------------------------------------------
# format sniffing


def read_projections(path, **kwargs) -> Projections:
    """Read a scan, choosing the reader from what ``path`` holds.

    HDF5 with ``/exchange/data`` is read as DXchange, HDF5 with an NXtomo entry as NeXus,
    and a folder as a TIFF stack.

    Parameters
    ----------
    path : str or Path
        HDF5 file or folder of TIFF files.
    **kwargs
        Passed to :func:`read_dxchange`, :func:`read_nxtomo` or :func:`read_tiff_stack`
        (e.g. ``rows_chunk`` in rows per chunk for all of them).

    Returns
    -------
    Projections

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    InputError
        When the file is not HDF5, has neither layout, or its content is inconsistent.

    Examples
    --------
    >>> proj = read_projections("tooth.h5")  # doctest: +SKIP
    >>> proj.shape, proj.meta["format"]  # doctest: +SKIP
    ((181, 2, 640), 'dxchange')
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"scan not found: {p}")
    if p.is_dir():
        return read_tiff_stack(p, **kwargs)
    if p.suffix.lower() in TIFF_SUFFIXES:
        raise InputError(f"{p}: a single TIFF file is not a scan; pass the folder of projection TIFFs")
    with open_h5(p) as f:
        if link_exists(f, DX_DATA):
            fmt = "dxchange"
        elif find_nx_entries(f):
            fmt = "nxtomo"
        else:
            top = sorted(f.keys())
            raise InputError(
                f"{p}: neither DXchange (no dataset {DX_DATA}) nor NeXus NXtomo (no /entry* group "
                f"with instrument/detector/data); top-level groups: {top}"
            )
    if fmt == "dxchange":
        return read_dxchange(p, **kwargs)
    return read_nxtomo(p, **kwargs)


def _default_theta(n: int, range_deg: float = 180.0) -> np.ndarray:
    return np.deg2rad(np.linspace(0.0, range_deg, n, endpoint=False))


# ----------------------------------------------------------------------------------------
# DXchange


def read_dxchange(path, *, rows_chunk: int | None = None) -> Projections:
    """Read a DXchange HDF5 scan (APS layout) lazily.

    Reads ``/exchange/data`` (projections), ``/exchange/data_white`` (flats),
    ``/exchange/data_dark`` (darks) and ``/exchange/theta`` (degrees unless its ``units``
    attribute says radians). Without ``/exchange/theta`` the angles are spread evenly over
    180 degrees, endpoint excluded, and ``meta["theta_default"]`` says so. The effective pixel
    size (um) is taken from ``/measurement/instrument/detection_system/objective/resolution``
    or ``.../detector/actual_pixel_size_x`` (or ``.../detector/pixel_size_x`` divided by the
    objective magnification), the energy (keV) from
    ``/measurement/instrument/monochromator/energy``; ``units`` attributes are honoured.

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    rows_chunk : int, optional
        Detector rows per dask chunk (default: about 64 MiB per chunk).

    Returns
    -------
    Projections
        ``meta`` holds ``format="dxchange"`` and, when present, ``distance_mm`` and
        ``sample_name``.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    InputError
        Not HDF5 / truncated, ``/exchange/data`` missing or not 3-D, flats or darks with other
        (rows, cols) than the data, or a theta length different from the number of projections.

    Examples
    --------
    >>> proj = read_dxchange("tooth.h5")  # doctest: +SKIP
    >>> proj.data.shape, proj.flats.shape  # doctest: +SKIP
    ((181, 2, 640), (10, 2, 640))
    """
    path = Path(path)
    meta: dict = {"format": "dxchange"}
    with open_h5(path) as f:
        ds = get_dataset(f, path, DX_DATA, what="projections")
        if ds.ndim != 3:
            raise InputError(f"{path}: dataset {DX_DATA} has shape {ds.shape}, expected 3-D (angles, rows, cols)")
        data = frames_array(path, ds, DX_DATA, rows_chunk=rows_chunk, kind="dxchange-data")
        rc = data.chunks[1][0]
        extra = {}
        for key, name, what in (("flats", DX_FLATS, "flats"), ("darks", DX_DARKS, "darks")):
            if not link_exists(f, name):
                extra[key] = None
                meta[f"no_{key}"] = f"{name} not in file"
                continue
            d = get_dataset(f, path, name, what=what)
            if d.ndim == 3 and d.shape[0] == 0:
                extra[key] = None
                meta[f"no_{key}"] = f"{name} holds no frames"
                continue
            if d.ndim not in (2, 3):
                raise InputError(f"{path}: dataset {name} ({what}) has shape {d.shape}, expected 3-D (frames, rows, cols)")
            check_frames_match(path, ds.shape, d.shape, name, what)
            extra[key] = frames_array(path, d, name, rows_chunk=rc, kind=f"dxchange-{key}")

        if link_exists(f, DX_THETA):
            t = get_dataset(f, path, DX_THETA, what="rotation angles")
            theta = angles_to_rad(t[()], units_of(t), default="degrees", where=f"{path}: {DX_THETA}")
            if theta.size != ds.shape[0]:
                raise InputError(
                    f"{path}: dataset {DX_THETA} has {theta.size} angles but {DX_DATA} has "
                    f"{ds.shape[0]} projections"
                )
        else:
            theta = _default_theta(ds.shape[0])
            meta["theta_default"] = f"{DX_THETA} missing: angles spread evenly over 180 deg, endpoint excluded"

        pixel_um = None
        for name in DX_PIXEL_SIZE:
            v, u = read_scalar(f, name)
            if v is not None and v > 0:
                pixel_um = length_um_guess(v, u, where=f"{path}: {name}")
                meta["pixel_size_source"] = name
                break
        if pixel_um is None:
            v, u = read_scalar(f, DX_CAMERA_PIXEL)
            if v is not None and v > 0:
                pixel_um = length_um_guess(v, u, where=f"{path}: {DX_CAMERA_PIXEL}")
                mag, _ = read_scalar(f, DX_MAGNIFICATION)
                if mag is not None and mag > 0:
                    pixel_um /= mag
                meta["pixel_size_source"] = DX_CAMERA_PIXEL
        energy = None
        for name in DX_ENERGY:
            v, u = read_scalar(f, name)
            if v is not None and v > 0:
                energy = energy_to_kev(v, u, where=f"{path}: {name}")
                break
        for name in DX_DISTANCE:
            v, u = read_scalar(f, name)
            if v is not None:
                meta["distance_mm"] = distance_mm_guess(v, u, where=f"{path}: {name}")
                break
        name = read_string(f, DX_SAMPLE_NAME)
        if name:
            meta["sample_name"] = name

    return Projections(
        data=data,
        flats=extra["flats"],
        darks=extra["darks"],
        theta_rad=theta,
        pixel_size_um=pixel_um,
        energy_kev=energy,
        source=str(path),
        dataset=DX_DATA,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------
# NeXus NXtomo


def read_nxtomo(path, *, entry: str | None = None, rows_chunk: int | None = None) -> Projections:
    """Read a NeXus NXtomo scan lazily, splitting frames by ``image_key``.

    The entry is found automatically among the top-level ``/entry*`` (or ``NX_class=NXentry``)
    groups, preferring ``definition == "NXtomo"``. Frames come from
    ``instrument/detector/data`` (or ``data/data``), sorted by
    ``instrument/detector/image_key`` (or ``image_key_control``, or ``data/image_key``):
    0 projection, 1 flat, 2 dark; other keys (invalid, alignment) are skipped. Angles come
    from ``sample/rotation_angle`` (or ``data/rotation_angle``) in degrees unless ``units``
    says otherwise. HDF5 external links to sibling files are followed.

    Parameters
    ----------
    path : str or Path
        The NeXus/HDF5 file.
    entry : str, optional
        Entry to read (e.g. ``"/entry0001"``); default: the first NXtomo entry.
    rows_chunk : int, optional
        Detector rows per dask chunk (default: about 64 MiB per chunk).

    Returns
    -------
    Projections
        ``meta`` holds ``format="nxtomo"``, ``entry``, the frame indices of projections,
        flats and darks (``projection_frames``, ``flat_frames``, ``dark_frames``), and
        ``distance_mm``, ``external_file`` when known.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    InputError
        Not HDF5 / truncated, no NXtomo entry, an external link to a missing file, data not
        3-D, an image_key or rotation_angle of the wrong length, or no projection frames.

    Examples
    --------
    >>> proj = read_nxtomo("scan.nx")  # doctest: +SKIP
    >>> proj.meta["entry"]  # doctest: +SKIP
    '/entry'
    """
    path = Path(path)
    with open_h5(path) as f:
        entries = find_nx_entries(f)
        if entry is not None:
            e = "/" + entry.strip("/")
            if e not in entries:
                raise InputError(f"{path}: entry {e} is not an NXtomo entry; found {entries or 'none'}")
        elif entries:
            e = entries[0]
        else:
            raise InputError(
                f"{path}: no NXtomo entry (expected an /entry* group with instrument/detector/data "
                f"or data/data); top-level groups: {sorted(f.keys())}"
            )
        meta: dict = {"format": "nxtomo", "entry": e}
        if len(entries) > 1:
            meta["other_entries"] = [x for x in entries if x != e]

        data_name = first_existing(f, (f"{e}/instrument/detector/data", f"{e}/data/data"))
        external = check_external_links(f, path, data_name)
        if external:
            meta["external_file"] = external
        ds = get_dataset(f, path, data_name, what="detector frames")
        if ds.ndim != 3:
            raise InputError(f"{path}: dataset {data_name} has shape {ds.shape}, expected 3-D (frames, rows, cols)")
        n_frames = ds.shape[0]

        key_name = first_existing(
            f,
            (f"{e}/instrument/detector/image_key", f"{e}/instrument/detector/image_key_control",
             f"{e}/data/image_key"),
        )
        if key_name is None:
            keys = np.zeros(n_frames, np.int64)
            meta["image_key_default"] = "no image_key: every frame taken as a projection"
        else:
            keys = np.asarray(get_dataset(f, path, key_name, what="image key")[()]).astype(np.int64).ravel()
            if keys.size != n_frames:
                raise InputError(f"{path}: dataset {key_name} has {keys.size} values, expected {n_frames} (one per frame of {data_name})")
            meta["image_key_dataset"] = key_name
        proj_idx = np.flatnonzero(keys == NX_PROJECTION)
        flat_idx = np.flatnonzero(keys == NX_FLAT)
        dark_idx = np.flatnonzero(keys == NX_DARK)
        if proj_idx.size == 0:
            raise InputError(
                f"{path}: {data_name} has no projection frames (image_key 0) among {n_frames} frames "
                f"(keys found: {sorted(set(keys.tolist()))})"
            )
        meta.update(projection_frames=proj_idx.tolist(), flat_frames=flat_idx.tolist(), dark_frames=dark_idx.tolist())

        angle_name = first_existing(f, (f"{e}/sample/rotation_angle", f"{e}/data/rotation_angle"))
        if angle_name is None:
            theta = _default_theta(proj_idx.size)
            meta["theta_default"] = "no sample/rotation_angle: angles spread evenly over 180 deg, endpoint excluded"
        else:
            a = get_dataset(f, path, angle_name, what="rotation angles")
            angles = angles_to_rad(a[()], units_of(a), default="degrees", where=f"{path}: {angle_name}")
            if angles.size == n_frames:
                theta = angles[proj_idx]
            elif angles.size == proj_idx.size:
                theta = angles
            else:
                raise InputError(
                    f"{path}: dataset {angle_name} has {angles.size} angles, expected {n_frames} "
                    f"(one per frame) or {proj_idx.size} (one per projection)"
                )

        def sub(idx, kind):
            if idx.size == 0:
                return None
            frames = None if idx.size == n_frames else idx
            return frames_array(path, ds, data_name, frames=frames, rows_chunk=rows_chunk,
                                 kind=f"nxtomo-{kind}")

        data = sub(proj_idx, "data")
        rc = data.chunks[1][0]
        rows_chunk = rows_chunk or rc
        flats = sub(flat_idx, "flats")
        darks = sub(dark_idx, "darks")

        det = f"{e}/instrument/detector"
        pixel_um = None
        for name in (f"{det}/x_pixel_size", f"{det}/pixel_size"):
            v, u = read_scalar(f, name)
            if v is not None and v > 0:
                pixel_um = length_um_guess(v, u, where=f"{path}: {name}")
                break
        energy = None
        for name in (f"{e}/instrument/monochromator/energy", f"{e}/instrument/beam/incident_energy",
                     f"{e}/beam/incident_energy", f"{e}/energy"):
            v, u = read_scalar(f, name)
            if v is not None and v > 0:
                energy = energy_to_kev(v, u, where=f"{path}: {name}")
                break
        v, u = read_scalar(f, f"{det}/distance")
        if v is not None:
            meta["distance_mm"] = distance_mm_guess(v, u, where=f"{path}: {det}/distance")

    return Projections(
        data=data,
        flats=flats,
        darks=darks,
        theta_rad=np.ascontiguousarray(theta, dtype=np.float64),
        pixel_size_um=pixel_um,
        energy_kev=energy,
        source=str(path),
        dataset=data_name,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------
# TIFF stacks


def read_tiff_stack(
    folder,
    *,
    flats_dir=None,
    darks_dir=None,
    theta_deg=None,
    theta_rad=None,
    angle_range_deg: float = 180.0,
    pixel_size_um: float | None = None,
    energy_kev: float | None = None,
    rows_chunk: int | None = None,
) -> Projections:
    """Read a folder of projection TIFFs (one image per file, natural sort order) lazily.

    When ``folder`` holds no TIFF files itself but has sub-folders named like ``proj``,
    ``flats`` and ``darks`` (also ``projections``/``tomo``, ``flat``/``white``,
    ``dark``/``black``), those are used. Uncompressed TIFFs are memory-mapped, so a band of
    rows reads only those rows; compressed ones are decoded whole for every band (use a large
    ``rows_chunk`` for them).

    Parameters
    ----------
    folder : str or Path
        Folder of projection TIFFs.
    flats_dir, darks_dir : str or Path, optional
        Folders of flat-field and dark-field TIFFs.
    theta_deg : array_like, optional
        Rotation angle of each projection in degrees.
    theta_rad : array_like, optional
        Rotation angle of each projection in radians (give at most one of the two).
    angle_range_deg : float
        Without explicit angles, projections are spread evenly over this range in degrees,
        endpoint excluded (default 180).
    pixel_size_um : float, optional
        Effective pixel size in um, stored in the result.
    energy_kev : float, optional
        Beam energy in keV, stored in the result.
    rows_chunk : int, optional
        Detector rows per dask chunk (default: about 64 MiB per chunk).

    Returns
    -------
    Projections
        ``dataset`` is ``""``; ``meta`` holds ``format="tiff"`` and the folders used.

    Raises
    ------
    FileNotFoundError
        When a folder does not exist.
    InputError
        No TIFF files, images of differing shapes, flats/darks of other (rows, cols), or an
        angle array of the wrong length.

    Examples
    --------
    >>> proj = read_tiff_stack("scan/proj", flats_dir="scan/flats", theta_deg=angles)  # doctest: +SKIP
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"TIFF folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of projection TIFF files")
    meta: dict = {"format": "tiff"}
    proj_dir = folder
    if not tiff_files(folder):
        sub = subdir(folder, PROJ_SUBDIRS)
        if sub is not None:
            proj_dir = sub
            flats_dir = flats_dir if flats_dir is not None else subdir(folder, FLAT_SUBDIRS)
            darks_dir = darks_dir if darks_dir is not None else subdir(folder, DARK_SUBDIRS)
    src = tiff_source(proj_dir, "projections")
    meta["projections_dir"] = str(proj_dir)
    n = src.shape[0]

    def lazy(source, kind, rc):
        from dask.base import tokenize

        name = f"tiff-{kind}-" + tokenize(source.files, [os.stat(p).st_mtime_ns for p in source.files])
        return as_dask(source, rows_chunk=rc, name=name)

    data = lazy(src, "data", rows_chunk)
    rc = data.chunks[1][0]
    out = {}
    for key, d in (("flats", flats_dir), ("darks", darks_dir)):
        if d is None:
            out[key] = None
            continue
        s = tiff_source(Path(d), key)
        if s.shape[1:] != src.shape[1:]:
            raise InputError(
                f"{d}: {key} images are {s.shape[1:]} (rows, cols), expected {src.shape[1:]} like the projections in {proj_dir}"
            )
        meta[f"{key}_dir"] = str(d)
        out[key] = lazy(s, key, rc)

    if theta_deg is not None and theta_rad is not None:
        raise InputError("give either theta_deg or theta_rad, not both")
    if theta_deg is not None or theta_rad is not None:
        t = np.asarray(theta_deg if theta_deg is not None else theta_rad, dtype=np.float64).ravel()
        kw = "theta_deg" if theta_deg is not None else "theta_rad"
        if t.size != n:
            raise InputError(f"{kw} has {t.size} angles but {proj_dir} holds {n} projection TIFFs")
        theta = np.deg2rad(t) if theta_deg is not None else t
    else:
        if not np.isfinite(angle_range_deg) or angle_range_deg <= 0:
            raise InputError(f"angle_range_deg must be a positive number of degrees, got {angle_range_deg!r}")
        theta = _default_theta(n, float(angle_range_deg))
        meta["theta_default"] = f"angles spread evenly over {angle_range_deg} deg, endpoint excluded"

    return Projections(
        data=data,
        flats=out["flats"],
        darks=out["darks"],
        theta_rad=theta,
        pixel_size_um=None if pixel_size_um is None else float(pixel_size_um),
        energy_kev=None if energy_kev is None else float(energy_kev),
        source=str(folder),
        dataset="",
        meta=meta,
    )
