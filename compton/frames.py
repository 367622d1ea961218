"""HEXITEC frames to per-pixel spectra: the hyperspectral cube ``(row, col, energy)``.

Definitions used throughout (they make the bookkeeping exact):

- **value**: ``v = float64(raw) - dark[pixel]`` in ADU (``dark`` is 0 when not given).
- **event found**: a pixel of a frame whose value is above its threshold, ``v > threshold``
  (strictly). ``found`` counts them per pixel.
- **next-frame correction** (optional): an event found at a pixel in frame ``n`` is rejected
  when the same pixel was above threshold in frame ``n - 1`` (the raw above-threshold test of
  frame ``n - 1``, before its own corrections). The last frame of a chunk is carried to the next
  chunk, so results never depend on the chunking.
- **hit**: an event found that survived the next-frame correction. Hits have an energy
  ``E = gradient * v + intercept`` (keV) when calibrated, else ``E = v`` (ADU).
- **charge sharing** on the hits of one frame:

  * ``None``: every hit is accepted with its own energy.
  * ``"discriminate"``: a hit is rejected when any *other* hit lies in the ``window x window``
    square centred on it (3 or 5 pixels), else accepted with its own energy.
  * ``"add"``: hits are grouped into 8-connected clusters; the cluster energy (the sum of the
    members' energies, added in row-major pixel order) is accepted as one event at the member
    with the largest energy (ties: the first in row-major order); the other members are rejected.

- **accepted / rejected**: per pixel, ``accepted + rejected == found`` by construction
  (a rejected event is counted at the pixel where it was found).
- **histogram**: each accepted event goes to its pixel's bin ``b`` with
  ``bin_edges[b] <= E < bin_edges[b + 1]`` (half-open, also at the top edge); events outside
  ``[e_min, e_max)`` are accepted but not in the cube, so
  ``counts.sum() == accepted events in range``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._backend import resolve_device, to_device
from ._errors import InputError

CHARGE_SHARING = (None, "none", "discriminate", "add")
PIXEL_PITCH_UM = 250.0
_MAX_PARTIAL_BYTES = 1 << 29  # cap on the per-thread partial histograms, 512 MiB in total
_UINT16_FRAMES = 65535  # frames a block may add to its uint16 partial histogram
_PIECE_FRAMES = 256  # frames per piece handed to a CPU worker thread


@dataclass
class Cube:
    """Per-pixel spectra with their energy axis and event bookkeeping.

    Attributes
    ----------
    counts : ndarray, uint32, shape (rows, cols, bins)
        Accepted events per pixel and energy bin.
    bin_edges_kev : ndarray, float64, shape (bins + 1,)
        Bin edges in keV (in ADU when ``units == "ADU"``); bin ``b`` is
        ``[bin_edges_kev[b], bin_edges_kev[b + 1])``.
    accepted, rejected : ndarray, int64, shape (rows, cols)
        Accepted and rejected events per pixel (see the module docstring).
    units : str
        "keV" (calibrated) or "ADU".
    n_frames : int
        Number of frames processed.
    attrs : dict
        Processing parameters and provenance (JSON-serialisable).
    """

    counts: np.ndarray
    bin_edges_kev: np.ndarray
    accepted: np.ndarray
    rejected: np.ndarray
    units: str = "keV"
    n_frames: int = 0
    attrs: dict = field(default_factory=dict)

    @property
    def found(self) -> np.ndarray:
        """Events found per pixel, ``accepted + rejected``."""
        return self.accepted + self.rejected

    @property
    def summed_spectrum(self) -> np.ndarray:
        """Spectrum summed over all pixels, shape (bins,)."""
        return self.counts.sum(axis=(0, 1), dtype=np.int64)

    @property
    def bin_centres_kev(self) -> np.ndarray:
        """Bin centres in keV (or ADU), shape (bins,)."""
        e = self.bin_edges_kev
        return 0.5 * (e[:-1] + e[1:])

    @property
    def bin_width_kev(self) -> float:
        """Bin width in keV (or ADU)."""
        return float(self.bin_edges_kev[1] - self.bin_edges_kev[0])

    def axes(self) -> list[dict]:
        """HyperSpy-style axes: rows and columns (um, navigation) and energy (signal).

        The energy axis ``offset`` is the centre of the first bin and ``scale`` the bin width,
        so ``hyperspy.signals.Signal1D(cube.counts, axes=cube.axes())`` shows the spectra on
        the right energy scale.
        """
        rows, cols, bins = self.counts.shape
        return [
            {"name": "y", "size": rows, "scale": PIXEL_PITCH_UM, "offset": 0.0, "units": "um",
             "navigate": True},
            {"name": "x", "size": cols, "scale": PIXEL_PITCH_UM, "offset": 0.0, "units": "um",
             "navigate": True},
            {"name": "Energy", "size": bins, "scale": self.bin_width_kev,
             "offset": float(self.bin_centres_kev[0]), "units": self.units, "navigate": False},
        ]

    def __repr__(self) -> str:
        r, c, b = self.counts.shape
        return (
            f"Cube({r}x{c} pixels, {b} bins of {self.bin_width_kev:g} {self.units} from "
            f"{self.bin_edges_kev[0]:g}, {int(self.accepted.sum())} accepted, "
            f"{int(self.rejected.sum())} rejected events, {self.n_frames} frames)"
        )


# --------------------------------------------------------------------------- inputs


def _per_pixel(value, name: str, shape: tuple[int, int]) -> np.ndarray:
    """A scalar, an array of ``shape`` or a one-value-per-line file -> float64 array."""
    if isinstance(value, (str, os.PathLike)):
        from .calibration import read_values

        return read_values(value, shape=shape)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(shape, float(arr))
    if arr.shape != shape:
        raise InputError(f"{name} has shape {arr.shape}; expected a scalar or shape {shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains non-finite values")
    return arr


def estimate_dark(frames, *, colmap=None) -> np.ndarray:
    """Per-pixel dark offset (ADU) as the median over frames [n, rows, cols].

    At the low occupancy of HEXITEC frames (about 1 % of pixels hit) the median of a few
    hundred frames is the pixel's offset. ``colmap`` maps storage positions to columns.
    """
    med = np.median(to_device(frames, "cpu"), axis=0)
    if colmap is None:
        return med.astype(np.float64)
    out = np.empty(med.shape, np.float64)
    out[:, np.asarray(colmap)] = med
    return out


def _dark_map(dark, shape: tuple[int, int]) -> np.ndarray:
    if dark is None:
        return np.zeros(shape)
    if isinstance(dark, np.ndarray) and dark.ndim == 2 and dark.dtype == np.float64 and dark.shape == shape:
        return dark
    if isinstance(dark, (str, os.PathLike)):
        from .calibration import read_values

        return read_values(dark, shape=shape)
    arr = np.asarray(dark)
    if arr.ndim == 3:
        if arr.shape[1:] != shape or arr.shape[0] == 0:
            raise InputError(f"dark frames have shape {arr.shape}; expected (n >= 1, {shape[0]}, {shape[1]})")
        return arr.mean(axis=0, dtype=np.float64)
    return _per_pixel(arr, "dark", shape)


def threshold_cut(dark: np.ndarray, threshold: np.ndarray, integer: bool) -> np.ndarray:
    """Smallest raw value ``x`` per pixel with ``float64(x) - dark > threshold``.

    ``fl(x - dark)`` never decreases with ``x``, so ``raw >= cut`` is exactly the event test
    ``raw - dark > threshold`` of the module docstring, for any raw dtype.
    """
    x = dark + threshold
    for _ in range(64):  # step down while still above (at most a few ulps)
        down = np.nextafter(x, -np.inf)
        move = (down - dark) > threshold
        if not move.any():
            break
        x = np.where(move, down, x)
    for _ in range(64):  # step up until above
        move = ~((x - dark) > threshold)
        if not move.any():
            break
        x = np.where(move, np.nextafter(x, np.inf), x)
    if integer:
        return np.clip(np.ceil(x), -(2**62), 2**62).astype(np.int64)
    return x


def fast_cut(cut: np.ndarray, dtype) -> np.ndarray:
    """``cut`` in the frames' dtype, never above it where a raw value can pass (row pre-test)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(cut, info.min, info.max).astype(dtype)
    fast = cut.astype(dtype)
    return np.where(fast > cut, np.nextafter(fast, dtype.type(-np.inf)), fast).astype(dtype)


def _bin_edges(bin_width_kev: float, e_min_kev: float, e_max_kev: float) -> np.ndarray:
    if not (np.isfinite(bin_width_kev) and bin_width_kev > 0):
        raise InputError(f"bin_width_kev must be > 0, got {bin_width_kev!r}")
    if not (np.isfinite(e_min_kev) and np.isfinite(e_max_kev) and e_max_kev > e_min_kev):
        raise InputError(f"need e_min_kev < e_max_kev, got {e_min_kev!r} and {e_max_kev!r}")
    n = (e_max_kev - e_min_kev) / bin_width_kev
    nbins = int(round(n))
    if nbins < 1 or abs(n - nbins) > 1e-6 * max(1.0, n):
        raise InputError(
            f"the range [{e_min_kev}, {e_max_kev}) is not a whole number of bins of width "
            f"{bin_width_kev}"
        )
    return np.linspace(e_min_kev, e_max_kev, nbins + 1)


def check_frame_shape(shape: tuple[int, ...], source: str = "frames") -> tuple[int, int]:
    """Check a frame shape (rows, cols) is a positive multiple of 80 in both directions."""
    if len(shape) != 2 or shape[0] < 80 or shape[1] < 80 or shape[0] % 80 or shape[1] % 80:
        raise InputError(
            f"{source}: frame shape {tuple(shape)} is not a multiple of 80 x 80 pixels "
            "(HEXITEC modules are 80 x 80)"
        )
    return int(shape[0]), int(shape[1])


# --------------------------------------------------------------------------- chunk streaming


_PREFETCH = 2  # chunks read ahead


def _chunks_of(frames, chunk_frames: int):
    """Yield ``(array [n, rows, cols], colmap or None)`` from the ``frames`` argument."""
    if isinstance(frames, (str, os.PathLike)):
        from .io import _iter_storage_chunks

        yield from _iter_storage_chunks(frames, chunk_frames=chunk_frames)
        return
    if hasattr(frames, "shape") and hasattr(frames, "ndim") and not isinstance(frames, (list, tuple)):
        arr = frames
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise InputError(f"frames must be [n, rows, cols]; got an array of shape {arr.shape}")
        for i in range(0, arr.shape[0], chunk_frames):
            yield arr[i : i + chunk_frames], None
        return
    for chunk in frames:
        chunk = np.asarray(chunk) if not hasattr(chunk, "ndim") else chunk
        if chunk.ndim == 2:
            chunk = chunk[None]
        if chunk.ndim != 3:
            raise InputError(f"each frame chunk must be [n, rows, cols]; got shape {chunk.shape}")
        yield chunk, None


def _prefetch(iterator, depth: int = 2):
    """Run ``iterator`` in a background thread, ``depth`` items ahead (reading overlaps compute)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in iterator:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # re-raised in the consumer
            put(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# --------------------------------------------------------------------------- main entry


@dataclass
class _Settings:
    rows: int
    cols: int
    dark: np.ndarray
    threshold: np.ndarray
    gain: np.ndarray
    icpt: np.ndarray
    calibrate: bool
    next_frame: bool
    mode: int
    half: int
    edges: np.ndarray


def _settings(shape, *, dark, threshold, gradients, intercepts, next_frame, charge_sharing,
              window, bin_width_kev, e_min_kev, e_max_kev, source) -> _Settings:
    rows, cols = check_frame_shape(shape, source)
    shp = (rows, cols)
    if charge_sharing not in CHARGE_SHARING:
        raise InputError(
            f"charge_sharing must be None, 'discriminate' or 'add', got {charge_sharing!r}"
        )
    if window not in (3, 5):
        raise InputError(f"window must be 3 or 5 pixels, got {window!r}")
    if (gradients is None) != (intercepts is None):
        raise InputError("gradients and intercepts must be given together")
    calibrate = gradients is not None
    gain = _per_pixel(gradients, "gradients", shp) if calibrate else np.ones(shp)
    icpt = _per_pixel(intercepts, "intercepts", shp) if calibrate else np.zeros(shp)
    mode = {None: 0, "none": 0, "discriminate": 1, "add": 2}[charge_sharing]
    return _Settings(
        rows=rows, cols=cols, dark=_dark_map(dark, shp),
        threshold=_per_pixel(0.0 if threshold is None else threshold, "threshold", shp),
        gain=gain, icpt=icpt, calibrate=calibrate, next_frame=bool(next_frame), mode=mode,
        half=window // 2, edges=_bin_edges(float(bin_width_kev), float(e_min_kev), float(e_max_kev)),
    )


def process_frames(
    frames,
    *,
    dark=None,
    threshold=None,
    gradients=None,
    intercepts=None,
    next_frame: bool = False,
    charge_sharing: str | None = None,
    window: int = 3,
    bin_width_kev: float = 0.2,
    e_min_kev: float = 0.0,
    e_max_kev: float = 200.0,
    device: str = "auto",
    chunk_frames: int = 4096,
    callback: Callable[[int, int], None] | None = None,
) -> Cube:
    """Process HEXITEC frames into per-pixel spectra, streaming chunk by chunk.

    Steps, in this order, each optional: dark subtraction, threshold, next-frame correction,
    per-pixel calibration ``E = gradient * ADU + intercept``, charge sharing, histogram. The
    exact definitions of events, clusters and the accepted/rejected bookkeeping are in the
    module docstring of :mod:`compton.frames`.

    Parameters
    ----------
    frames : array [n, rows, cols], iterable of such chunks, or path
        Raw frames in ADU (uint16 from the detector; any real dtype works). An iterable is
        consumed chunk by chunk, read one chunk ahead in a background thread, so the whole
        acquisition is never in memory. A path (``.bin``, ``.h5``/``.hdf5`` with ``raw_frames``)
        is streamed with :func:`compton.iter_frames`. rows and cols must be multiples of 80.
    dark : array [rows, cols] or [m, rows, cols], path, "auto" or None
        Per-pixel offset in ADU, or dark frames (averaged), or a one-value-per-line file, or
        "auto": the per-pixel median of the first (up to 1024) frames, estimated once.
    threshold : float, array [rows, cols], path or None
        Event threshold in ADU after dark subtraction (global or per pixel); None means 0.
    gradients, intercepts : array [rows, cols], path or None
        Per-pixel calibration (keV/ADU and keV); without them the spectra are in ADU and the
        ``*_kev`` range arguments below are in ADU too.
    next_frame : bool
        Reject an event at a pixel that was above threshold in the previous frame.
    charge_sharing : None, "discriminate" or "add"
        Charge-sharing correction (see module docstring).
    window : {3, 5}
        Window width in pixels for "discriminate".
    bin_width_kev, e_min_kev, e_max_kev : float
        Histogram bins ``[e_min, e_max)`` of this width in keV (ADU when uncalibrated).
    device : {"auto", "cpu", "gpu"}
        numba CPU kernel or CUDA kernel; "auto" uses a GPU when one is usable.
    chunk_frames : int
        Frames per chunk when ``frames`` is an array or a path.
    callback : callable(n_frames, n_events), optional
        Called after each chunk with the frames done and events found so far.

    Returns
    -------
    Cube
        ``counts`` [rows, cols, bins], ``bin_edges_kev`` [bins + 1], ``accepted`` and
        ``rejected`` [rows, cols].

    Raises
    ------
    InputError
        Frame shape not a multiple of 80, calibration arrays of the wrong shape, chunks of
        varying frame shape, bad options.

    Examples
    --------
    >>> import numpy as np
    >>> frames = np.zeros((2, 80, 80), np.uint16)
    >>> frames[0, 10, 10] = 500; frames[1, 40, 40] = 1200
    >>> cube = process_frames(frames, threshold=100, bin_width_kev=10, e_max_kev=2000, device="cpu")
    >>> int(cube.counts.sum()), cube.counts[10, 10].argmax(), cube.units
    (2, np.int64(50), 'ADU')
    """
    if not (isinstance(chunk_frames, (int, np.integer)) and chunk_frames >= 1):
        raise InputError(f"chunk_frames must be a positive integer, got {chunk_frames!r}")
    source = os.fspath(frames) if isinstance(frames, (str, os.PathLike)) else "frames"
    chunks = _prefetch(_chunks_of(frames, int(chunk_frames)), depth=_PREFETCH)
    params = dict(dark=dark, threshold=threshold, gradients=gradients, intercepts=intercepts,
                  next_frame=next_frame, charge_sharing=charge_sharing, window=window,
                  bin_width_kev=bin_width_kev, e_min_kev=e_min_kev, e_max_kev=e_max_kev,
                  source=source)
    acc = None
    n_frames = 0
    try:
        for chunk, colmap in chunks:
            if acc is None:
                if isinstance(params["dark"], str) and params["dark"] == "auto":
                    check_frame_shape(tuple(chunk.shape[1:]), source)
                    params["dark"] = estimate_dark(chunk[:1024], colmap=colmap)
                st = _settings(tuple(chunk.shape[1:]), **params)
                dev = resolve_device(device, chunk)
                acc = _make_accumulator(st, dev, chunk.dtype)
            elif tuple(chunk.shape[1:]) != (acc.st.rows, acc.st.cols):
                raise InputError(
                    f"{source}: a chunk has frames of shape {tuple(chunk.shape[1:])}, the first had "
                    f"{(acc.st.rows, acc.st.cols)}"
                )
            if chunk.shape[0] == 0:
                continue
            acc.add(chunk, colmap)
            n_frames += chunk.shape[0]
            if callback is not None:
                callback(n_frames, acc.n_found())
    finally:
        chunks.close()
    if acc is None:
        raise InputError(f"{source}: no frames to process")
    counts, accepted, rejected = acc.finish()
    st = acc.st
    attrs = {
        "n_frames": n_frames,
        "device": acc.device,
        "threshold_adu": _describe(threshold),
        "dark": "auto (median of the first frames)" if isinstance(dark, str) and dark == "auto" else _describe(dark),
        "calibrated": st.calibrate,
        "next_frame": st.next_frame,
        "charge_sharing": charge_sharing or "none",
        "window": int(window),
        "bin_width": float(bin_width_kev),
        "e_min": float(e_min_kev),
        "e_max": float(e_max_kev),
    }
    return Cube(
        counts=counts, bin_edges_kev=st.edges, accepted=accepted, rejected=rejected,
        units="keV" if st.calibrate else "ADU", n_frames=n_frames, attrs=attrs,
    )


def _describe(value):
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    arr = np.asarray(value)
    if arr.ndim == 0:
        return float(arr)
    return f"array{list(arr.shape)}"


def _make_accumulator(st: _Settings, device: str, dtype):
    if device == "gpu":
        from ._cuda_kernels import GpuAccumulator

        return GpuAccumulator(st, dtype)
    return CpuAccumulator(st, dtype)


class CpuAccumulator:
    """Streaming state of the numba kernel: partial histograms and the carried last frame.

    ``n_blocks`` Python worker threads (numba's thread count, fewer when the partial
    histograms would pass ``_MAX_PARTIAL_BYTES``) run :func:`_cpu_kernels.process_block`
    without the GIL. A chunk is cut into pieces of ``_PIECE_FRAMES`` frames that the workers
    pull one after the other, so a core taken by another process only slows its own worker.
    """

    device = "cpu"

    def __init__(self, st: _Settings, dtype):
        from . import _cpu_kernels as k

        self.k = k
        self.st = st
        npix = st.rows * st.cols
        nbins = st.edges.size - 1
        integer = np.issubdtype(np.dtype(dtype), np.integer)
        self.integer = integer
        self.cut = threshold_cut(st.dark, st.threshold, integer)
        self.fast_cut = fast_cut(self.cut, dtype)
        self.n_blocks = max(1, min(k.n_threads(), _MAX_PARTIAL_BYTES // max(1, npix * nbins * 2)))
        # per-block uint16 partial histograms (half the cache footprint of uint32), each merged
        # into ``total`` before its block could pass 65535 frames (one event per pixel per frame)
        self.hist = np.zeros((self.n_blocks, npix, nbins), np.uint16)
        self.total = np.zeros((npix, nbins), np.uint64)
        self.since_merge = [0] * self.n_blocks  # frames added to each block since its merge
        self.found = np.zeros((self.n_blocks, npix), np.int64)
        self.rejected = np.zeros((self.n_blocks, npix), np.int64)
        self.accepted = np.zeros((self.n_blocks, npix), np.int64)
        self.inv_bw = 1.0 / (st.edges[1] - st.edges[0])
        self.prev = None
        self.prev_key = None
        self._storage = {}
        self._merge_lock = threading.Lock()
        self._pool = None
        if self.n_blocks > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.n_blocks, thread_name_prefix="hexitec")

    def _storage_arrays(self, colmap):
        key = None if colmap is None else colmap.tobytes()
        if key not in self._storage:
            st = self.st
            cm = np.arange(st.cols, dtype=np.int64) if colmap is None else np.asarray(colmap, np.int64)
            self._storage[key] = (
                cm,
                np.ascontiguousarray(self.cut[:, cm]).ravel(),
                np.ascontiguousarray(self.fast_cut[:, cm]).ravel(),
                np.ascontiguousarray(st.dark[:, cm]).ravel(),
                np.ascontiguousarray(st.gain[:, cm]).ravel(),
                np.ascontiguousarray(st.icpt[:, cm]).ravel(),
            )
        return self._storage[key]

    def add(self, chunk, colmap=None):
        st = self.st
        if np.issubdtype(chunk.dtype, np.integer) != self.integer:
            raise InputError("frames: chunks mix integer and floating-point dtypes")
        key = None if colmap is None else np.asarray(colmap).tobytes()
        if self.prev is not None and key != self.prev_key:
            raise InputError("frames: chunks of one stream must share one column order")
        frames = np.ascontiguousarray(chunk).reshape(chunk.shape[0], st.rows * st.cols)
        cm, cut, fcut, dark, gain, icpt = self._storage_arrays(colmap)
        has_prev = self.prev is not None
        prev = self.prev.astype(frames.dtype) if has_prev else frames[0]
        n = frames.shape[0]
        size = max(1, min(_PIECE_FRAMES, _UINT16_FRAMES))
        pieces = [(a, min(a + size, n)) for a in range(0, n, size)]
        args = (frames, prev, has_prev, st.rows, st.cols, cm, cut, fcut, dark, gain, icpt,
                st.calibrate, st.next_frame, st.mode, st.half, st.edges, self.inv_bw, self.hist,
                self.found, self.rejected, self.accepted)
        if self._pool is None:
            self._work(0, iter(pieces), args)
        else:
            todo = iter(pieces)  # next() on a shared iterator hands each piece out once
            futures = [self._pool.submit(self._work, t, todo, args) for t in range(self.n_blocks)]
            for fut in futures:
                fut.result()
        self.prev = frames[-1].copy()
        self.prev_key = key

    def _work(self, t: int, todo, args) -> None:
        """Worker ``t``: process pieces ``(f0, f1)`` from ``todo`` into block ``t``."""
        for f0, f1 in todo:
            if self.since_merge[t] + (f1 - f0) > _UINT16_FRAMES:
                with self._merge_lock:  # ``total`` is shared; the other blocks keep running
                    self.k.merge_block(self.hist[t], self.total)
                self.since_merge[t] = 0
            self.k.process_block(t, f0, f1, *args)
            self.since_merge[t] += f1 - f0

    def n_found(self) -> int:
        return int(self.found.sum())

    def finish(self):
        st = self.st
        if self._pool is not None:
            self._pool.shutdown()
        out = self.total
        for t in range(self.n_blocks):
            self.k.merge_block(self.hist[t], out)
        counts = out.astype(np.uint32) if out.max(initial=0) < 2**32 else out
        shape = (st.rows, st.cols)
        return (
            counts.reshape(st.rows, st.cols, -1),
            self.accepted.sum(axis=0).reshape(shape),
            self.rejected.sum(axis=0).reshape(shape),
        )
