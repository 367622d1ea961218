"""Chunk planning for ``reconstruct_to_zarr``: memory sizes, per-row working set, row slabs.

The reconstruction works on slabs of detector rows. Each slab holds every angle of its
rows (plus a halo of extra rows for 2-D filters such as Paganin), so its memory grows
linearly with the number of rows; :func:`plan_chunks` picks the largest number of rows per
slab that keeps ``chunks_in_flight`` slabs under the memory limit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ._errors import InputError

_UNITS = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "T": 10**12,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}

#: bytes kept aside from the limit for the reader's and writer's own buffers (zarr
#: compression of one chunk, h5py chunk cache, dask bookkeeping)
FIXED_OVERHEAD_BYTES = 24 * 2**20


def parse_memory(value) -> int:
    """Parse a memory size into bytes.

    Parameters
    ----------
    value : int, float or str
        Bytes, or a string such as ``"512MB"``, ``"2GiB"``, ``"1.5 GB"`` (decimal units
        KB/MB/GB/TB, binary units KiB/MiB/GiB/TiB; case-insensitive).

    Returns
    -------
    int
        The size in bytes.

    Raises
    ------
    InputError
        For a value that is not a positive size.

    Examples
    --------
    >>> parse_memory("512MB"), parse_memory("2GiB"), parse_memory(1000)
    (512000000, 2147483648, 1000)
    """
    if isinstance(value, bool):
        raise InputError(f"memory_limit must be a size such as '2GB', got {value!r}")
    if isinstance(value, (int, float)):
        nbytes = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        unit = match.group(2).upper() if match else None
        if match is None or unit not in _UNITS:
            raise InputError(
                f"memory_limit {value!r} is not a size; expected bytes or a string such as "
                "'512MB' or '2GiB'"
            )
        nbytes = float(match.group(1)) * _UNITS[unit]
    else:
        raise InputError(f"memory_limit must be a size such as '2GB', got {value!r}")
    if not math.isfinite(nbytes) or nbytes <= 0:
        raise InputError(f"memory_limit must be positive, got {value!r}")
    return int(nbytes)


def row_bytes(
    *,
    n_angles: int,
    n_cols: int,
    n_flats: int,
    n_darks: int,
    out_width: int,
    input_itemsize: int = 4,
    phase: bool = False,
    extended: bool = False,
) -> int:
    """Estimate the bytes one detector row needs while its slab is processed.

    Parameters
    ----------
    n_angles, n_cols : int
        Projections and detector columns (pixels) of the scan.
    n_flats, n_darks : int
        Flat-field and dark-field frames.
    out_width : int
        Width of the reconstructed slice (pixels); the slice is ``out_width**2``.
    input_itemsize : int
        Bytes per input value (2 for uint16, 4 for float32).
    phase : bool
        Whether a Paganin filter runs (complex FFT of the padded projections).
    extended : bool
        Whether a 360-to-180 degree conversion runs (one more sinogram copy).

    Returns
    -------
    int
        Estimated working set per row in bytes.

    Notes
    -----
    Counted per row: the raw input (and dask's copy while it assembles it), flats and
    darks, three float32 sinogram-sized intermediates (normalised, -log, stripe removal),
    the reconstruction's padded complex FFT of the sinogram (2x detector padding,
    complex64 and complex128 buffers) and its output and interpolation grid (a few float32
    and complex slices of ``out_width**2``). The memory test in ``tests/recon`` checks the
    estimate on a real run.
    """
    sino = n_angles * n_cols
    raw = 2 * sino * input_itemsize + (n_flats + n_darks) * n_cols * (input_itemsize + 4)
    intermediates = 3 * sino * 4
    pad_cols = 2 ** math.ceil(math.log2(max(2 * n_cols, 2)))
    fft = n_angles * pad_cols * (8 + 16)
    recon = out_width * out_width * 4 * 12
    total = raw + intermediates + fft + recon
    if phase:
        total += 2 * sino * 16  # padded complex128 FFT of each projection slab
    if extended:
        total += 2 * sino * 4
    return int(total)


@dataclass(frozen=True)
class ChunkPlan:
    """How the rows of a scan are split into slabs.

    Attributes
    ----------
    row_start, row_stop : int
        Detector rows reconstructed (``[row_start, row_stop)``).
    rows_per_chunk : int
        Rows in one slab (the last may hold fewer).
    halo : int
        Extra rows read on each side of a slab for 2-D filters (pixels).
    chunks_in_flight : int
        Slabs processed at the same time (worker threads).
    bytes_per_row : int
        Estimated working set per row (bytes).
    memory_limit : int
        The limit the plan was made for (bytes).
    """

    row_start: int
    row_stop: int
    rows_per_chunk: int
    halo: int
    chunks_in_flight: int
    bytes_per_row: int
    memory_limit: int

    @property
    def n_chunks(self) -> int:
        """Number of slabs."""
        return math.ceil((self.row_stop - self.row_start) / self.rows_per_chunk)

    def bounds(self, index: int) -> tuple[int, int]:
        """Detector rows ``(start, stop)`` of slab ``index`` (without halo)."""
        if not 0 <= index < self.n_chunks:
            raise IndexError(f"chunk {index} out of range 0..{self.n_chunks - 1}")
        start = self.row_start + index * self.rows_per_chunk
        return start, min(start + self.rows_per_chunk, self.row_stop)

    def read_bounds(self, index: int, n_rows: int) -> tuple[int, int]:
        """Rows ``(start, stop)`` to read for slab ``index``: its bounds plus the halo,
        clipped to the detector's ``n_rows``."""
        start, stop = self.bounds(index)
        return max(0, start - self.halo), min(n_rows, stop + self.halo)


def plan_chunks(
    *,
    row_start: int,
    row_stop: int,
    bytes_per_row: int,
    memory_limit: int,
    halo: int = 0,
    max_workers: int = 4,
    rows_per_chunk: int | None = None,
) -> ChunkPlan:
    """Choose the slab height and the number of slabs in flight for a memory limit.

    Parameters
    ----------
    row_start, row_stop : int
        Detector rows to reconstruct.
    bytes_per_row : int
        Working set of one row (bytes), see :func:`row_bytes`.
    memory_limit : int
        Memory available to the slabs in flight (bytes).
    halo : int
        Extra rows read on each side of a slab (pixels); they count against the memory.
    max_workers : int
        Most slabs processed at once.
    rows_per_chunk : int, optional
        Force the slab height (rows); the number in flight is still fitted to the limit.

    Returns
    -------
    ChunkPlan

    Examples
    --------
    >>> p = plan_chunks(row_start=0, row_stop=100, bytes_per_row=2**20,
    ...                 memory_limit=64 * 2**20, max_workers=2)
    >>> p.chunks_in_flight, p.rows_per_chunk, p.n_chunks
    (2, 20, 5)
    """
    n_rows = row_stop - row_start
    if n_rows < 1:
        raise InputError(f"rows {row_start}:{row_stop} select no detector rows")
    budget = max(memory_limit - FIXED_OVERHEAD_BYTES, memory_limit // 4)
    workers = max(1, int(max_workers))
    if rows_per_chunk is None:
        # each slab in flight gets an equal share; fewer workers when one row needs more
        while workers > 1 and budget // workers < bytes_per_row * (1 + 2 * halo + 1):
            workers -= 1
        share = budget // workers
        rows = share // bytes_per_row - 2 * halo
        # spread rows evenly over the workers so that they all have work
        even = math.ceil(n_rows / workers)
        rows = int(max(1, min(rows, even, n_rows)))
    else:
        rows = int(max(1, min(rows_per_chunk, n_rows)))
        while workers > 1 and budget // workers < bytes_per_row * (rows + 2 * halo):
            workers -= 1
    workers = min(workers, math.ceil(n_rows / rows))
    return ChunkPlan(
        row_start=row_start,
        row_stop=row_stop,
        rows_per_chunk=rows,
        halo=int(halo),
        chunks_in_flight=workers,
        bytes_per_row=int(bytes_per_row),
        memory_limit=int(memory_limit),
    )


def paganin_halo(
    *, pixel_size_um: float, distance_mm: float, energy_kev: float, delta_beta: float
) -> int:
    """Rows of halo a Paganin filter needs so that slab edges do not change the result.

    The Paganin low-pass ``1 / (1 + pi * lambda * z * (delta/beta) * |f|^2)`` (f in cycles
    per um) has a real-space kernel decaying as ``exp(-r / L)`` with
    ``L = sqrt(lambda * z * delta/beta / (4 pi))``; the halo covers ``10 L`` (weight below
    5e-5) plus two rows.

    Parameters
    ----------
    pixel_size_um : float
        Detector pixel size (um).
    distance_mm : float
        Sample-to-detector propagation distance (mm).
    energy_kev : float
        Photon energy (keV).
    delta_beta : float
        Ratio delta/beta of the material (dimensionless).

    Returns
    -------
    int
        Halo in detector rows (pixels).
    """
    wavelength_um = 12.398419843320026 / energy_kev * 1e-4  # hc / E, Angstrom -> um
    length_um = math.sqrt(wavelength_um * distance_mm * 1e3 * delta_beta / (4 * math.pi))
    return int(math.ceil(10 * length_um / pixel_size_um)) + 2
