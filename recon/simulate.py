"""Simulate parallel-beam scans with known ground truth: phantoms, projections, files.

Geometry (binding, docs/architecture.md): slice ``img[row, col]`` with pixel centres at
``x = col - (n - 1) / 2``, ``y = row - (n - 1) / 2`` (one unit = one detector pixel);
``p(theta, s) = integral of f along x cos(theta) + y sin(theta) = s``; detector column ``k``
sits at ``s = k - center`` with ``center = (width - 1) / 2`` by default.

* :func:`shepp_logan` paints the (modified) Shepp-Logan phantom, and
  :func:`shepp_logan_sinogram` gives the exact line integrals of the same ellipses in
  closed form: the independent truth for projector and reconstruction tests.
* :func:`forward_project` is Joseph's projector (numba, parallel over angles).
* :func:`simulate_scan` turns an attenuation volume into raw detector counts with flats,
  darks, Poisson noise and defective columns, as a :class:`recon.io.Projections`.
* :func:`write_dxchange`, :func:`write_nxtomo` and :func:`write_tiff_stack` write scans in
  the formats :mod:`recon.io` reads.
"""

from __future__ import annotations

import numpy as np

from ._backend import cupy_or_none, is_gpu_array
from ._errors import InputError
from ._sim_writers import write_dxchange, write_nxtomo, write_tiff_stack

__all__ = [
    "shepp_logan",
    "shepp_logan_sinogram",
    "forward_project",
    "simulate_scan",
    "write_dxchange",
    "write_nxtomo",
    "write_tiff_stack",
]

# Ellipses of the Shepp-Logan head phantom over the unit disc (x right, y up, as usually
# drawn): semi-axes a (along x before rotation), b, centre (x0, y0), rotation phi in degrees
# counter-clockwise. Intensities: original (Shepp & Logan 1974) and modified (Toft 1996).
_SL_GEOMETRY = np.array(
    [
        [0.6900, 0.9200, 0.00, 0.0000, 0.0],
        [0.6624, 0.8740, 0.00, -0.0184, 0.0],
        [0.1100, 0.3100, 0.22, 0.0000, -18.0],
        [0.1600, 0.4100, -0.22, 0.0000, 18.0],
        [0.2100, 0.2500, 0.00, 0.3500, 0.0],
        [0.0460, 0.0460, 0.00, 0.1000, 0.0],
        [0.0460, 0.0460, 0.00, -0.1000, 0.0],
        [0.0460, 0.0230, -0.08, -0.6050, 0.0],
        [0.0230, 0.0230, 0.00, -0.6060, 0.0],
        [0.0230, 0.0460, 0.06, -0.6050, 0.0],
    ]
)
#: bytes of float64 temporaries per slab of detector rows in simulate_scan
_SLAB_BYTES = 256 * 2**20

_SL_ORIGINAL = np.array([2.0, -0.98, -0.02, -0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01])
_SL_MODIFIED = np.array([1.0, -0.8, -0.2, -0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])


def _check_n(n) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 2:
        raise InputError(f"n must be an integer number of pixels >= 2, got {n!r}")
    return int(n)


def _ellipse_params(n: int, modified: bool) -> np.ndarray:
    """Ellipses in pixel units in the image frame (y = row axis, pointing down).

    The unit disc is mapped onto the n x n grid: radius 1 -> n / 2 pixels, so the disc
    touches the outer edges of the grid. The table's y axis points up; the image's row
    axis points down, so y0 and phi change sign (the phantom looks as usually drawn when the
    image is shown with row 0 at the top).
    """
    r = n / 2.0
    g = _SL_GEOMETRY
    values = _SL_MODIFIED if modified else _SL_ORIGINAL
    p = np.empty((g.shape[0], 6), np.float64)
    p[:, 0] = values
    p[:, 1] = g[:, 0] * r
    p[:, 2] = g[:, 1] * r
    p[:, 3] = g[:, 2] * r
    p[:, 4] = -g[:, 3] * r
    p[:, 5] = -np.deg2rad(g[:, 4])
    return p


def shepp_logan(n: int, *, modified: bool = True, supersample: int = 4) -> np.ndarray:
    """The Shepp-Logan head phantom on an ``n x n`` grid.

    The phantom's unit disc is mapped onto the grid (radius 1 = ``n / 2`` pixels) following
    the geometry convention of the package; each pixel is the mean of ``supersample**2``
    point samples, so edge pixels hold their area fraction.

    Parameters
    ----------
    n : int
        Image size in pixels.
    modified : bool
        Toft's higher-contrast intensities (1, -0.8, -0.2, 0.1, ...; default) or the original
        ones (2, -0.98, -0.02, 0.01, ...), in a.u. per pixel.
    supersample : int
        Sub-samples per pixel along each axis (1 = point sampling at pixel centres).

    Returns
    -------
    numpy.ndarray
        float32 ``(n, n)`` image, values in a.u. per pixel.

    Examples
    --------
    >>> img = shepp_logan(64)
    >>> img.shape, img.dtype, round(float(img.max()), 2)
    ((64, 64), dtype('float32'), 1.0)
    """
    from ._sim_kernels import paint_ellipses

    n = _check_n(n)
    if not isinstance(supersample, (int, np.integer)) or supersample < 1:
        raise InputError(f"supersample must be a positive integer, got {supersample!r}")
    img = np.zeros((n, n), np.float64)
    paint_ellipses(img, _ellipse_params(n, bool(modified)), int(supersample))
    return img.astype(np.float32)


def _check_theta(theta_rad) -> np.ndarray:
    t = np.asarray(theta_rad, dtype=np.float64)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1 or t.size == 0:
        raise InputError(f"theta_rad must be a 1-D array of angles in radians, got shape {np.shape(theta_rad)}")
    if not np.all(np.isfinite(t)):
        raise InputError("theta_rad contains NaN or infinite angles")
    return t


def _check_geometry(width, center, default_width: int) -> tuple[int, float]:
    if width is None:
        width = default_width
    if isinstance(width, (bool, np.bool_)) or not isinstance(width, (int, np.integer)) or width < 1:
        raise InputError(f"width must be a positive integer number of detector columns, got {width!r}")
    width = int(width)
    if center is None:
        center = (width - 1) / 2.0
    try:
        center = float(center)
    except (TypeError, ValueError):
        raise InputError(f"center must be a number (detector column, pixels), got {center!r}") from None
    if not np.isfinite(center):
        raise InputError(f"center must be finite, got {center!r}")
    return width, center


def shepp_logan_sinogram(
    n: int,
    theta_rad,
    *,
    width: int | None = None,
    center: float | None = None,
    modified: bool = True,
    bin_average: bool = False,
) -> np.ndarray:
    """Exact line integrals of the Shepp-Logan ellipses (closed form), in pixel units.

    For an ellipse of value ``v``, semi-axes ``A, B`` (pixels), centre ``(x0, y0)`` and
    rotation ``phi``, the projection at angle ``theta`` is
    ``2 v A B / a2 * sqrt(a2 - (s - s0)**2)`` where
    ``a2 = (A cos(theta - phi))**2 + (B sin(theta - phi))**2`` and
    ``s0 = x0 cos(theta) + y0 sin(theta)``; the phantom is the sum of its ellipses.

    Parameters
    ----------
    n : int
        Size in pixels of the phantom grid (as in :func:`shepp_logan`).
    theta_rad : array_like
        Projection angles in radians, shape ``(n_angles,)``.
    width : int, optional
        Detector columns (default ``n``).
    center : float, optional
        Detector column of the rotation axis in pixels (default ``(width - 1) / 2``).
    modified : bool
        Modified (default) or original intensities, as in :func:`shepp_logan`.
    bin_average : bool
        If True, average each column over its pixel width ``[s - 0.5, s + 0.5]`` (exact
        integral) instead of sampling the line integral at the column centre.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_angles, width)``: line integrals in a.u. x pixels.

    Examples
    --------
    >>> import numpy as np
    >>> sino = shepp_logan_sinogram(128, np.linspace(0, np.pi, 90, endpoint=False))
    >>> sino.shape
    (90, 128)
    """
    n = _check_n(n)
    theta = _check_theta(theta_rad)
    width, center = _check_geometry(width, center, n)
    params = _ellipse_params(n, bool(modified))
    s = (np.arange(width, dtype=np.float64) - center)[None, :]
    cos_t = np.cos(theta)[:, None]
    sin_t = np.sin(theta)[:, None]
    out = np.zeros((theta.size, width), np.float64)
    for v, A, B, x0, y0, phi in params:
        a2 = (A * np.cos(theta[:, None] - phi)) ** 2 + (B * np.sin(theta[:, None] - phi)) ** 2
        a = np.sqrt(a2)
        t = s - (x0 * cos_t + y0 * sin_t)
        scale = 2.0 * v * A * B / a2
        if bin_average:
            # integral of sqrt(a^2 - u^2) from -a to u, clipped to the chord
            def prim(u):
                u = np.clip(u, -a, a)
                return 0.5 * (u * np.sqrt(np.maximum(a2 - u * u, 0.0)) + a2 * np.arcsin(u / a))

            out += scale * (prim(t + 0.5) - prim(t - 0.5))
        else:
            out += scale * np.sqrt(np.maximum(a2 - t * t, 0.0))
    return out


def forward_project(volume, theta_rad, *, center: float | None = None, width: int | None = None):
    """Parallel-beam projections (line integrals) of an image or a volume, Joseph's method.

    Parameters
    ----------
    volume : array_like
        Image ``(ny, nx)`` or volume ``(nz, ny, nx)``, values per pixel (e.g. attenuation in
        1/pixel). NumPy or CuPy (a CuPy input is projected on the GPU).
    theta_rad : array_like
        Projection angles in radians, shape ``(n_angles,)``.
    center : float, optional
        Detector column of the rotation axis in pixels (default ``(width - 1) / 2``).
    width : int, optional
        Detector columns (default ``nx``).

    Returns
    -------
    array
        float32 sinogram ``(n_angles, width)`` for an image, or sinograms
        ``(n_angles, nz, width)`` for a volume, in value x pixels; same array kind as input.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((32, 32), np.float32); img[16, 20] = 1.0   # x = 4.5, y = 0.5
    >>> sino = forward_project(img, np.array([0.0, np.pi / 2]))
    >>> [float(sino[0].argmax()) - 15.5, float(sino[1].argmax()) - 15.5]
    [4.5, 0.5]
    """
    gpu = is_gpu_array(volume)
    if gpu:
        return _forward_project_gpu(volume, theta_rad, center=center, width=width)
    vol = np.asarray(volume)
    if vol.ndim not in (2, 3):
        raise InputError(f"volume must be an image (ny, nx) or a volume (nz, ny, nx), got shape {vol.shape}")
    if vol.size == 0:
        raise InputError(f"volume is empty, shape {vol.shape}")
    theta = _check_theta(theta_rad)
    width, center = _check_geometry(width, center, vol.shape[-1])
    from ._sim_kernels import joseph_project, joseph_project_2d

    cos_t, sin_t = np.cos(theta), np.sin(theta)
    if vol.ndim == 2 or vol.shape[0] == 1:
        out2 = np.empty((theta.size, width), np.float32)
        joseph_project_2d(np.ascontiguousarray(vol.reshape(vol.shape[-2:]), dtype=np.float32), cos_t, sin_t,
                          center, out2)
        return out2 if vol.ndim == 2 else out2[:, None, :]
    vol3 = vol
    vol_t = np.ascontiguousarray(np.moveaxis(vol3, 0, -1), dtype=np.float32)  # (ny, nx, nz)
    out = np.empty((theta.size, width, vol3.shape[0]), np.float32)
    joseph_project(vol_t, cos_t, sin_t, center, out)
    return np.ascontiguousarray(np.moveaxis(out, 2, 1))  # (n_angles, nz, width)


def _forward_project_gpu(volume, theta_rad, *, center, width):
    from ._sim_cuda import joseph_project_gpu

    cp = cupy_or_none()
    if cp is None:
        raise InputError("a CuPy array was given but no CUDA GPU is usable")
    if volume.ndim not in (2, 3):
        raise InputError(f"volume must be an image (ny, nx) or a volume (nz, ny, nx), got shape {volume.shape}")
    theta = _check_theta(theta_rad.get() if is_gpu_array(theta_rad) else theta_rad)
    width, center = _check_geometry(width, center, volume.shape[-1])
    vol3 = volume[None] if volume.ndim == 2 else volume
    sino = joseph_project_gpu(vol3, theta, center, width)
    return sino[:, 0, :] if volume.ndim == 2 else sino


def _defects(items, default: float, name: str, width: int) -> list[tuple[int, float]]:
    out = []
    for it in items or ():
        if isinstance(it, (tuple, list)) and len(it) == 2:
            col, val = it
        else:
            col, val = it, default
        if isinstance(col, (bool, np.bool_)) or not isinstance(col, (int, np.integer)) or not 0 <= col < width:
            raise InputError(f"{name}: column {col!r} is not a detector column index in [0, {width})")
        out.append((int(col), float(val)))
    return out


def simulate_scan(
    volume_mu,
    theta_rad,
    *,
    incident_counts: float = 10000.0,
    n_flats: int = 10,
    n_darks: int = 10,
    dark_level: float = 100.0,
    poisson: bool = True,
    dead_columns=(),
    hot_columns=(),
    flat_profile=None,
    center: float | None = None,
    width: int | None = None,
    seed: int = 0,
    pixel_size_um: float | None = None,
    energy_kev: float | None = None,
    rows_chunk: int | None = None,
):
    """Simulate a raw parallel-beam scan of an attenuation volume, as detector counts.

    Each detector pixel records ``I = flat * exp(-p) + dark`` (counts) with ``p`` the line
    integral of ``volume_mu`` (:func:`forward_project`), ``flat = incident_counts *
    flat_profile`` and ``dark = dark_level``; flats record ``flat + dark`` and darks ``dark``.
    With ``poisson=True`` every frame is a Poisson draw around its expectation. Defective
    columns act on the projections only (not on flats and darks), so they survive
    flat-field correction and make ring artefacts after reconstruction.

    Parameters
    ----------
    volume_mu : array_like
        Linear attenuation per pixel (mu times the voxel size, 1/pixel): an image
        ``(ny, nx)`` (one detector row) or a volume ``(nz, ny, nx)`` (``nz`` detector rows).
    theta_rad : array_like
        Projection angles in radians.
    incident_counts : float
        Open-beam counts per pixel (before ``flat_profile``), counts.
    n_flats, n_darks : int
        Number of flat and dark frames (0 for none: the field is then None).
    dark_level : float
        Mean dark counts per pixel.
    poisson : bool
        Draw Poisson noise (default) or keep the rounded expectations.
    dead_columns : sequence
        Detector column indices, or ``(index, gain)`` pairs, whose projection signal
        ``flat * exp(-p)`` is multiplied by ``gain`` (default 0.5).
    hot_columns : sequence
        Detector column indices, or ``(index, counts)`` pairs, to whose projections extra
        counts are added (default ``0.1 * incident_counts``).
    flat_profile : array_like, optional
        Relative beam/detector gain (dimensionless, about 1), shape ``(width,)`` or
        ``(nz, width)``; uniform when None.
    center : float, optional
        Detector column of the rotation axis in pixels (default ``(width - 1) / 2``).
    width : int, optional
        Detector columns (default ``nx``).
    seed : int
        Seed of the noise generator; the same seed gives the same scan.
    pixel_size_um, energy_kev : float, optional
        Stored in the result (um and keV).
    rows_chunk : int, optional
        Detector rows per dask chunk (default: all rows in one chunk up to about 64 MiB).

    Returns
    -------
    Projections
        uint16 counts as dask arrays over in-memory NumPy arrays; ``meta`` holds
        ``format="simulated"`` and the simulation parameters (``center``, ``seed``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> mu = 0.01 * shepp_logan(64)
    >>> proj = simulate_scan(mu, np.linspace(0, np.pi, 45, endpoint=False), n_flats=4, n_darks=2)
    >>> proj.shape, proj.flats.shape, proj.data.dtype
    ((45, 1, 64), (4, 1, 64), dtype('uint16'))
    """
    import dask.array as da

    from ._io_lazy import default_rows_chunk
    from .io import Projections

    vol = np.asarray(volume_mu.get() if is_gpu_array(volume_mu) else volume_mu, dtype=np.float32)
    if vol.ndim not in (2, 3):
        raise InputError(f"volume_mu must be (ny, nx) or (nz, ny, nx) attenuation per pixel, got shape {vol.shape}")
    if not np.all(np.isfinite(vol)):
        raise InputError("volume_mu contains NaN or infinite values")
    vol3 = vol[None] if vol.ndim == 2 else vol
    theta = _check_theta(theta_rad)
    width, center = _check_geometry(width, center, vol3.shape[-1])
    nz = vol3.shape[0]
    for name, v in (("n_flats", n_flats), ("n_darks", n_darks)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(f"{name} must be a non-negative integer, got {v!r}")
    if not np.isfinite(incident_counts) or incident_counts <= 0:
        raise InputError(f"incident_counts must be a positive number of counts, got {incident_counts!r}")
    if not np.isfinite(dark_level) or dark_level < 0:
        raise InputError(f"dark_level must be a non-negative number of counts, got {dark_level!r}")

    if flat_profile is None:
        profile = np.ones((nz, width), np.float64)
    else:
        profile = np.asarray(flat_profile, dtype=np.float64)
        if profile.shape not in ((width,), (nz, width)):
            raise InputError(f"flat_profile has shape {profile.shape}, expected ({width},) or ({nz}, {width})")
        if np.any(~np.isfinite(profile)) or np.any(profile < 0):
            raise InputError("flat_profile must hold finite non-negative relative gains")
        profile = np.broadcast_to(profile, (nz, width))
    flat = incident_counts * profile  # (nz, width)
    dead = _defects(dead_columns, 0.5, "dead_columns", width)
    hot = _defects(hot_columns, 0.1 * incident_counts, "hot_columns", width)
    peak = float(flat.max()) + dark_level + max([c for _, c in hot] + [0.0])
    if peak > 60000:
        raise InputError(
            f"incident_counts {incident_counts} (x flat_profile) + dark_level {dark_level} reach {peak:.0f} "
            "counts, too close to the uint16 limit of 65535"
        )

    rng = np.random.default_rng(seed)

    def counts(lam):
        x = rng.poisson(lam) if poisson else np.rint(lam)
        return np.clip(x, 0, 65535).astype(np.uint16)

    # slabs of detector rows keep the float64 temporaries small; the noise stream depends
    # only on the seed and the shapes, not on rows_chunk
    data = np.empty((theta.size, nz, width), np.uint16)
    slab = max(1, int(_SLAB_BYTES // (8 * theta.size * width)))
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        p = forward_project(vol3[z0:z1], theta, center=center, width=width)  # (n_angles, rows, width)
        signal = flat[None, z0:z1] * np.exp(-p.astype(np.float64))
        for col, gain in dead:
            signal[:, :, col] *= gain
        for col, extra in hot:
            signal[:, :, col] += extra
        data[:, z0:z1] = counts(signal + dark_level)
    flats = counts(np.broadcast_to(flat + dark_level, (n_flats, nz, width))) if n_flats else None
    darks = counts(np.full((n_darks, nz, width), float(dark_level))) if n_darks else None
    rc = rows_chunk or default_rows_chunk(theta.size, nz, width, 2)

    def lazy(a):
        return None if a is None else da.from_array(a, chunks=(max(a.shape[0], 1), rc, width))

    meta = {
        "format": "simulated",
        "center": center,
        "incident_counts": float(incident_counts),
        "dark_level": float(dark_level),
        "poisson": bool(poisson),
        "seed": seed,
        "dead_columns": dead,
        "hot_columns": hot,
    }
    return Projections(
        data=lazy(data),
        flats=lazy(flats),
        darks=lazy(darks),
        theta_rad=theta.copy(),
        pixel_size_um=None if pixel_size_um is None else float(pixel_size_um),
        energy_kev=None if energy_kev is None else float(energy_kev),
        source="<simulated>",
        dataset="",
        meta=meta,
    )
