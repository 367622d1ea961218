"""Denoising filters for reconstructed volumes, in memory or chunked (Dask), on CPU or GPU.

The in-memory functions take a NumPy or CuPy array and return the same kind; ``denoise``
also takes a Dask array (or ``chunks=``) and then runs the same filters block by block with
``dask.array.map_overlap``. The overlap is the sum of the filter radii and the outer volume
faces are left to the filters' own boundary mode, so the chunked result is identical, voxel
for voxel, to the in-memory one.
"""

from __future__ import annotations

import numpy as np

from ._backend import array_module, ndimage_module, resolve_device, to_device
from ._errors import InputError

__all__ = ["ball", "median_filter", "opening", "closing", "nl_means", "denoise", "denoise_halo"]


def ball(radius_px: int, xp=np):
    """Boolean ball footprint of integer radius ``radius_px`` (voxels), shape (2r+1,)*3."""
    r = int(radius_px)
    if r < 0:
        raise InputError(f"ball radius must be >= 0 voxels, got {radius_px!r}")
    g = np.arange(-r, r + 1)
    fp = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2 <= r * r
    return xp.asarray(fp)


def _check_volume(volume, name="volume"):
    if getattr(volume, "ndim", None) != 3:
        raise InputError(f"{name} must be a 3-D (z, y, x) array, got shape {getattr(volume, 'shape', None)}")


def _on_device(volume, device):
    dev = resolve_device(device, volume)
    return to_device(volume, dev), dev


def _restore(result, original):
    """Return ``result`` on the kind of array the caller passed (NumPy in -> NumPy out)."""
    if array_module(original) is np:
        return to_device(result, "cpu")
    return result


def median_filter(volume, *, size: int = 3, device: str = "auto", _parallel: bool = True):
    """Median filter with a cubic ``size``^3 window (voxels), reflecting at the faces.

    Parameters
    ----------
    volume : ndarray, (z, y, x)
        Attenuation volume (a.u. or per voxel).
    size : int
        Window edge in voxels (3 gives the 3x3x3 median).
    device : {"auto", "cpu", "gpu"}
        Where to run (CuPy input always runs on the GPU).

    Returns
    -------
    ndarray
        Filtered volume, same shape and dtype, same array kind as the input.

    Notes
    -----
    On the CPU the 3x3x3 float case runs a Numba kernel (sorted 3x3 columns shared by
    neighbouring windows) that returns exactly ``scipy.ndimage.median_filter(size=3,
    mode="reflect")``; other sizes and dtypes use scipy. On the GPU the 3x3x3 float case runs a
    CUDA kernel (forgetful selection in registers, ``segment._cuda_median``) with the same
    result; other cases use ``cupyx.scipy.ndimage``.
    """
    _check_volume(volume)
    if int(size) < 1:
        raise InputError(f"median size must be >= 1 voxel, got {size!r}")
    x, _ = _on_device(volume, device)
    xp = array_module(x)
    if int(size) == 3 and x.dtype in (np.float32, np.float64) and x.size:
        if xp is np:
            from ._seg_median import median3  # numba kernel, same result as scipy, several times faster

            return median3(x, parallel=_parallel)
        from ._cuda_median import median3_gpu  # CUDA forgetful selection, same result as scipy

        return _restore(median3_gpu(x), volume)
    ndi = ndimage_module(xp)
    return _restore(ndi.median_filter(x, size=int(size), mode="reflect"), volume)


def _morph(volume, radius_px, device, kind):
    _check_volume(volume)
    x, _ = _on_device(volume, device)
    xp = array_module(x)
    ndi = ndimage_module(xp)
    r = int(radius_px)
    if r < 0:
        raise InputError(f"{kind} radius must be >= 0 voxels, got {radius_px!r}")
    if r == 0:
        return _restore(x, volume)
    fp = ball(r, xp)
    if x.dtype == bool:
        fn = ndi.binary_opening if kind == "opening" else ndi.binary_closing
        if kind == "opening":
            out = fn(x, structure=fp)
        else:  # pad so that the closing does not erode objects touching the faces
            pad = 2 * r
            out = fn(xp.pad(x, pad, mode="symmetric"), structure=fp)[pad:-pad, pad:-pad, pad:-pad]
    else:
        fn = ndi.grey_opening if kind == "opening" else ndi.grey_closing
        out = fn(x, footprint=fp, mode="reflect")
    return _restore(out, volume)


def opening(volume, *, radius_px: int, device: str = "auto"):
    """Morphological opening with a ball of ``radius_px`` voxels (removes small bright specks).

    Grey-level for numeric volumes, binary for boolean masks.

    Parameters
    ----------
    volume : ndarray, (z, y, x)
        Volume (any units) or boolean mask.
    radius_px : int
        Ball radius in voxels (0 returns the input).
    device : {"auto", "cpu", "gpu"}
        Where to run.
    """
    return _morph(volume, radius_px, device, "opening")


def closing(volume, *, radius_px: int, device: str = "auto"):
    """Morphological closing with a ball of ``radius_px`` voxels (fills small dark gaps).

    Parameters
    ----------
    volume : ndarray, (z, y, x)
        Volume (any units) or boolean mask.
    radius_px : int
        Ball radius in voxels (0 returns the input).
    device : {"auto", "cpu", "gpu"}
        Where to run.
    """
    return _morph(volume, radius_px, device, "closing")


def estimate_noise(volume) -> float:
    """Gaussian noise standard deviation of a volume (same units), from wavelet detail coefficients."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(to_device(volume, "cpu"), dtype=np.float64)))


def nl_means(volume, *, h: float | None = None, patch_size: int = 3, patch_distance: int = 3,
             sigma: float | None = None, device: str = "auto"):
    """Non-local means denoising (scikit-image, runs on the host).

    Parameters
    ----------
    volume : ndarray, (z, y, x)
        Attenuation volume.
    h : float, optional
        Filter strength in volume units; default 0.8 times the noise sigma.
    patch_size, patch_distance : int
        Patch edge and search radius in voxels.
    sigma : float, optional
        Noise standard deviation in volume units (estimated when not given).
    device : {"auto", "cpu", "gpu"}
        The filter runs on the host; a CuPy input is returned as CuPy.
    """
    from skimage.restoration import denoise_nl_means

    _check_volume(volume)
    host = np.asarray(to_device(volume, "cpu"), dtype=np.float32)
    if sigma is None:
        sigma = estimate_noise(host)
    if h is None:
        h = 0.8 * sigma
    out = denoise_nl_means(host, h=float(h), sigma=float(sigma), patch_size=int(patch_size),
                           patch_distance=int(patch_distance), fast_mode=True, channel_axis=None)
    out = out.astype(volume.dtype if np.dtype(volume.dtype).kind == "f" else np.float32)
    return to_device(out, "gpu") if array_module(volume) is not np else out


def denoise_halo(*, median_size: int = 3, opening_radius_px: int = 0, closing_radius_px: int = 0,
                 nlm: bool = False, patch_size: int = 3, patch_distance: int = 3) -> int:
    """Overlap in voxels that makes the chunked ``denoise`` identical to the in-memory one."""
    halo = (int(median_size) // 2) + 2 * int(opening_radius_px) + 2 * int(closing_radius_px)
    if nlm:
        halo += int(patch_distance) + int(patch_size) // 2
    return halo


def _denoise_block(block, *, median_size, opening_radius_px, closing_radius_px, nlm, nlm_h, nlm_sigma,
                   patch_size, patch_distance, device, parallel=True):
    x = block
    if median_size and median_size > 1:
        x = median_filter(x, size=median_size, device=device, _parallel=parallel)
    if opening_radius_px:
        x = opening(x, radius_px=opening_radius_px, device=device)
    if closing_radius_px:
        x = closing(x, radius_px=closing_radius_px, device=device)
    if nlm:
        x = nl_means(x, h=nlm_h, sigma=nlm_sigma, patch_size=patch_size, patch_distance=patch_distance,
                     device=device)
    return x


def denoise(volume, *, median_size: int = 3, opening_radius_px: int = 0, closing_radius_px: int = 0,
            nlm: bool = False, nlm_h: float | None = None, patch_size: int = 3, patch_distance: int = 3,
            chunks=None, device: str = "auto"):
    """Denoise a volume: median, then grey opening and closing with a ball, then optional NL-means.

    Parameters
    ----------
    volume : ndarray or dask.array.Array, (z, y, x)
        Attenuation volume (NumPy, CuPy or Dask).
    median_size : int
        Median window edge in voxels (1 or 0 skips it).
    opening_radius_px, closing_radius_px : int
        Ball radii in voxels for the grey opening and closing (0 skips).
    nlm : bool
        Apply non-local means last (host only; its strength is fixed once from a central block
        of the volume so that the chunked path matches the in-memory one).
    nlm_h : float, optional
        NL-means strength in volume units.
    patch_size, patch_distance : int
        NL-means patch edge and search radius in voxels.
    chunks : tuple of int, optional
        Chunk shape (voxels) for the Dask path with a NumPy input; a Dask input keeps its chunks.
    device : {"auto", "cpu", "gpu"}
        Where the filters run (each chunk is moved to the GPU and back on the Dask path).

    Returns
    -------
    ndarray or dask.array.Array
        Denoised volume: lazy Dask array for a Dask input or when ``chunks`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.random.default_rng(0).normal(size=(16, 32, 32)).astype(np.float32)
    >>> a = denoise(v, median_size=3, opening_radius_px=1)
    >>> b = denoise(v, median_size=3, opening_radius_px=1, chunks=(8, 8, 16), device="cpu").compute()
    >>> bool((a == b).all())
    True
    """
    import dask.array as da

    _check_volume(volume)
    nlm_sigma = None
    if nlm:
        # noise from a central block (<= 96^3 voxels), the same for the in-memory and chunked paths
        sl = tuple(slice(max(0, (n - 96) // 2), max(0, (n - 96) // 2) + 96) for n in volume.shape)
        block = volume[sl]
        nlm_sigma = estimate_noise(block.compute() if isinstance(block, da.Array) else block)
        if nlm_h is None:
            nlm_h = 0.8 * nlm_sigma
    kw = dict(median_size=int(median_size), opening_radius_px=int(opening_radius_px),
              closing_radius_px=int(closing_radius_px), nlm=bool(nlm), nlm_h=nlm_h, nlm_sigma=nlm_sigma,
              patch_size=int(patch_size), patch_distance=int(patch_distance))
    if not isinstance(volume, da.Array) and chunks is None:
        return _denoise_block(volume, device=device, **kw)
    dev = resolve_device(device, None if isinstance(volume, da.Array) else volume)
    if isinstance(volume, da.Array):
        darr = volume
    else:
        darr = da.from_array(to_device(volume, "cpu"), chunks=chunks)
    halo = denoise_halo(median_size=median_size, opening_radius_px=opening_radius_px,
                        closing_radius_px=closing_radius_px, nlm=nlm, patch_size=patch_size,
                        patch_distance=patch_distance)
    if halo == 0:
        return darr.map_blocks(_denoise_block, dtype=darr.dtype, device=dev, parallel=False, **kw)
    small = [min(c) for c in darr.chunks]
    if min(small) < halo:  # every chunk must be at least as deep as the overlap
        darr = darr.rechunk(tuple(max(halo, max(c)) for c in darr.chunks))

    def block_fn(b):
        out = _denoise_block(to_device(b, dev), device=dev, parallel=False, **kw)
        return to_device(out, "cpu")

    return da.map_overlap(block_fn, darr, depth=halo, boundary="none", dtype=darr.dtype,
                          meta=np.empty((0, 0, 0), darr.dtype))
