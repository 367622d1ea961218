"""Writers for simulated (or any) scans: DXchange HDF5, NeXus NXtomo, TIFF stacks.

They write what :mod:`recon.io` reads, so tests can round-trip every format.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._errors import InputError


def _unpack(proj_or_arrays):
    """``(data, flats, darks, theta_rad, pixel_size_um, energy_kev)`` from the accepted inputs.

    Accepts a ``Projections``, a mapping with keys ``data``, ``flats``, ``darks`` and
    ``theta_rad`` (or ``theta_deg``), or a tuple ``(data, flats, darks, theta_rad)``.
    """
    if hasattr(proj_or_arrays, "data") and hasattr(proj_or_arrays, "theta_rad"):
        p = proj_or_arrays
        return p.data, p.flats, p.darks, np.asarray(p.theta_rad, np.float64), p.pixel_size_um, p.energy_kev
    if isinstance(proj_or_arrays, Mapping):
        m = proj_or_arrays
        if "data" not in m:
            raise InputError(f"scan mapping has no 'data' key (keys: {sorted(m)})")
        if "theta_rad" in m:
            theta = np.asarray(m["theta_rad"], np.float64)
        elif "theta_deg" in m:
            theta = np.deg2rad(np.asarray(m["theta_deg"], np.float64))
        else:
            raise InputError(f"scan mapping has neither 'theta_rad' nor 'theta_deg' (keys: {sorted(m)})")
        return m["data"], m.get("flats"), m.get("darks"), theta, m.get("pixel_size_um"), m.get("energy_kev")
    if isinstance(proj_or_arrays, (tuple, list)) and len(proj_or_arrays) == 4:
        data, flats, darks, theta = proj_or_arrays
        return data, flats, darks, np.asarray(theta, np.float64), None, None
    raise InputError(
        "expected a Projections, a mapping with data/flats/darks/theta_rad or a tuple "
        f"(data, flats, darks, theta_rad), got {type(proj_or_arrays).__name__}"
    )


def _check_arrays(data, flats, darks, theta):
    if len(np.shape(data)) != 3:
        raise InputError(f"data must be 3-D (angles, rows, cols), got shape {np.shape(data)}")
    shape = tuple(np.shape(data))
    for name, a in (("flats", flats), ("darks", darks)):
        if a is not None and (len(np.shape(a)) != 3 or tuple(np.shape(a))[1:] != shape[1:]):
            raise InputError(f"{name} must be (frames, {shape[1]}, {shape[2]}), got shape {np.shape(a)}")
    theta = np.ravel(theta)
    if theta.size != shape[0]:
        raise InputError(f"theta has {theta.size} angles but data has {shape[0]} projections")
    return shape, theta


def _prepare_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise InputError(f"{path}: parent folder {path.parent} does not exist")


def _write_array(group, name: str, arr, **attrs):
    """Write a NumPy or dask array into a new dataset (dask arrays block by block)."""
    dtype = np.dtype(arr.dtype)
    ds = group.create_dataset(name, shape=tuple(arr.shape), dtype=dtype)
    if type(arr).__module__.startswith("dask"):
        import dask.array as da

        da.store(arr, ds, lock=True, scheduler="threads")
    else:
        ds[...] = np.asarray(arr.get() if type(arr).__module__.startswith("cupy") else arr)
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def write_dxchange(path, proj_or_arrays, *, pixel_size_um=None, energy_kev=None, overwrite: bool = False) -> Path:
    """Write a scan in the DXchange HDF5 layout (APS).

    ``/exchange/data``, ``/exchange/data_white`` (flats), ``/exchange/data_dark`` (darks),
    ``/exchange/theta`` in degrees (``units="degrees"``); the pixel size in um at
    ``/measurement/instrument/detection_system/objective/resolution`` and the energy in keV
    at ``/measurement/instrument/monochromator/energy``, both with a ``units`` attribute.

    Parameters
    ----------
    path : str or Path
        Output file.
    proj_or_arrays : Projections, mapping or tuple
        A :class:`recon.io.Projections`, a mapping with ``data``, ``flats``, ``darks`` and
        ``theta_rad`` (or ``theta_deg``), or a tuple ``(data, flats, darks, theta_rad)``.
    pixel_size_um : float, optional
        Pixel size in um (default: the one of a ``Projections``).
    energy_kev : float, optional
        Energy in keV (default: the one of a ``Projections``).
    overwrite : bool
        Replace an existing file; otherwise an existing file raises FileExistsError.

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> write_dxchange("scan.h5", simulate_scan(mu, theta), pixel_size_um=1.7)  # doctest: +SKIP
    """
    import h5py

    path = Path(path)
    data, flats, darks, theta, px, en = _unpack(proj_or_arrays)
    _, theta = _check_arrays(data, flats, darks, theta)
    px = pixel_size_um if pixel_size_um is not None else px
    en = energy_kev if energy_kev is not None else en
    _prepare_target(path, overwrite)
    with h5py.File(path, "w") as f:
        f.create_dataset("implements", data="exchange:measurement")
        ex = f.create_group("exchange")
        _write_array(ex, "data", data, axes="theta:y:x")
        if flats is not None:
            _write_array(ex, "data_white", flats, axes="theta_white:y:x")
        if darks is not None:
            _write_array(ex, "data_dark", darks, axes="theta_dark:y:x")
        t = ex.create_dataset("theta", data=np.rad2deg(theta))
        t.attrs["units"] = "degrees"
        inst = f.create_group("measurement/instrument")
        if px is not None:
            d = inst.create_dataset("detection_system/objective/resolution", data=float(px))
            d.attrs["units"] = "um"
        if en is not None:
            d = inst.create_dataset("monochromator/energy", data=float(en))
            d.attrs["units"] = "keV"
    return path


def _nx_group(parent, name: str, nx_class: str):
    g = parent.require_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def write_nxtomo(
    path,
    proj_or_arrays,
    *,
    pixel_size_um=None,
    energy_kev=None,
    distance_mm=None,
    external_data: bool = False,
    entry: str = "entry",
    overwrite: bool = False,
) -> Path:
    """Write a scan in the NeXus NXtomo layout, frames sorted by ``image_key``.

    Frames are stored as darks, the first half of the flats, the projections, then the
    other half of the flats, in ``/<entry>/instrument/detector/data`` with
    ``image_key`` (0 projection, 1 flat, 2 dark) and ``/<entry>/sample/rotation_angle`` in
    degrees; ``/<entry>/data`` is an NXdata group of soft links.

    Parameters
    ----------
    path : str or Path
        Output file.
    proj_or_arrays : Projections, mapping or tuple
        As for :func:`write_dxchange`.
    pixel_size_um : float, optional
        Pixel size in um (``x_pixel_size``/``y_pixel_size`` with ``units="um"``).
    energy_kev : float, optional
        Energy in keV (``instrument/monochromator/energy``).
    distance_mm : float, optional
        Sample-detector distance in mm (``instrument/detector/distance``).
    external_data : bool
        Store the frames in a sibling file ``<stem>_data.h5`` (dataset ``/data``) reached
        through an HDF5 external link, as beamlines often do.
    entry : str
        Name of the NXentry group.
    overwrite : bool
        Replace existing files; otherwise an existing file raises FileExistsError.

    Returns
    -------
    Path
        The written (main) file.
    """
    import h5py

    path = Path(path)
    data, flats, darks, theta, px, en = _unpack(proj_or_arrays)
    shape, theta = _check_arrays(data, flats, darks, theta)
    px = pixel_size_um if pixel_size_um is not None else px
    en = energy_kev if energy_kev is not None else en
    _prepare_target(path, overwrite)
    sibling = path.with_name(path.stem + "_data.h5")
    if external_data:
        _prepare_target(sibling, overwrite)

    n_f = 0 if flats is None else int(flats.shape[0])
    n_d = 0 if darks is None else int(darks.shape[0])
    half = n_f // 2 + n_f % 2
    n_p = shape[0]
    keys = np.concatenate([np.full(n_d, 2), np.full(half, 1), np.zeros(n_p), np.full(n_f - half, 1)]).astype(np.uint8)
    deg = np.rad2deg(theta)
    angles = np.concatenate([np.full(n_d, deg[0]), np.full(half, deg[0]), deg, np.full(n_f - half, deg[-1])])
    dtype = np.result_type(*[np.dtype(a.dtype) for a in (data, flats, darks) if a is not None])
    n_total = n_d + n_f + n_p

    def fill(ds):
        import dask.array as da

        pos = 0
        blocks = [(darks, n_d), (None if flats is None else flats[:half], half), (data, n_p),
                  (None if flats is None else flats[half:], n_f - half)]
        for arr, n in blocks:
            if arr is None or n == 0:
                continue
            if type(arr).__module__.startswith("dask"):
                da.store(arr.astype(dtype), ds, regions=(slice(pos, pos + n),), lock=True, scheduler="threads")
            else:
                ds[pos:pos + n] = np.asarray(arr, dtype=dtype)
            pos += n

    with h5py.File(path, "w") as f:
        f.attrs["default"] = entry
        e = _nx_group(f, entry, "NXentry")
        e.create_dataset("definition", data="NXtomo")
        inst = _nx_group(e, "instrument", "NXinstrument")
        det = _nx_group(inst, "detector", "NXdetector")
        if external_data:
            with h5py.File(sibling, "w") as g:
                fill(g.create_dataset("data", shape=(n_total,) + shape[1:], dtype=dtype))
            det["data"] = h5py.ExternalLink(sibling.name, "/data")
        else:
            fill(det.create_dataset("data", shape=(n_total,) + shape[1:], dtype=dtype))
        det.create_dataset("image_key", data=keys)
        det.create_dataset("image_key_control", data=keys.astype(np.int8))
        if px is not None:
            for k in ("x_pixel_size", "y_pixel_size"):
                d = det.create_dataset(k, data=float(px))
                d.attrs["units"] = "um"
        if distance_mm is not None:
            d = det.create_dataset("distance", data=float(distance_mm))
            d.attrs["units"] = "mm"
        if en is not None:
            mono = _nx_group(inst, "monochromator", "NXmonochromator")
            d = mono.create_dataset("energy", data=float(en))
            d.attrs["units"] = "keV"
        sample = _nx_group(e, "sample", "NXsample")
        a = sample.create_dataset("rotation_angle", data=angles)
        a.attrs["units"] = "degree"
        nxdata = _nx_group(e, "data", "NXdata")
        nxdata.attrs["signal"] = "data"
        nxdata["data"] = h5py.SoftLink(f"/{entry}/instrument/detector/data")
        nxdata["image_key"] = h5py.SoftLink(f"/{entry}/instrument/detector/image_key")
        nxdata["rotation_angle"] = h5py.SoftLink(f"/{entry}/sample/rotation_angle")
    return path


def write_tiff_stack(folder, proj_or_arrays, *, overwrite: bool = False) -> dict:
    """Write a scan as TIFF stacks: ``proj/``, ``flats/`` and ``darks/`` under ``folder``.

    One image per file, named ``proj_00000.tif`` (``flat_``, ``dark_``), plus the angles in
    degrees, one per line, in ``theta_deg.txt`` (TIFF carries no angles; pass them to
    :func:`recon.io.read_tiff_stack` with ``theta_deg=``).

    Parameters
    ----------
    folder : str or Path
        Output folder (created; must be absent or empty unless ``overwrite``).
    proj_or_arrays : Projections, mapping or tuple
        As for :func:`write_dxchange`.
    overwrite : bool
        Write into a non-empty folder, replacing files of the same names.

    Returns
    -------
    dict
        Paths ``proj``, ``flats``, ``darks`` (None when absent) and ``theta_deg`` (file).
    """
    import tifffile

    folder = Path(folder)
    data, flats, darks, theta, _, _ = _unpack(proj_or_arrays)
    _, theta = _check_arrays(data, flats, darks, theta)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} is not empty; pass overwrite=True to write into it")
    folder.mkdir(parents=True, exist_ok=True)
    out = {"proj": None, "flats": None, "darks": None}
    for key, prefix, arr in (("proj", "proj", data), ("flats", "flat", flats), ("darks", "dark", darks)):
        if arr is None:
            continue
        d = folder / key
        d.mkdir(exist_ok=True)
        a = np.asarray(arr)
        for i in range(a.shape[0]):
            tifffile.imwrite(d / f"{prefix}_{i:05d}.tif", a[i])
        out[key] = d
    tfile = folder / "theta_deg.txt"
    np.savetxt(tfile, np.rad2deg(theta), fmt="%.10f")
    out["theta_deg"] = tfile
    return out
