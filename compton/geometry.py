"""XCS geometry: sheet beam, pinhole and pixelated detector -> per-pixel scattering angle.

Coordinates (mm): the beam travels along +x through the origin (the centre of the
illuminated sheet); the scattering plane is x-y. The pinhole sits ``pinhole_to_beam_mm`` from
the origin in the direction at ``theta_centre_rad`` from the beam, the detector plane is
``pinhole_to_detector_mm`` behind it, perpendicular to that direction. Detector pixels are on
a ``pixel_pitch_um`` grid; the axis named by ``in_plane_axis`` lies in the scattering plane.
A photon reaching pixel P crossed the pinhole H, so it left the sheet along ``P - H`` and its
scattering angle is the angle between ``P - H`` and +x (SCIENCE.md section 6).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._errors import InputError


@dataclass(frozen=True)
class Geometry:
    """Pinhole-camera XCS geometry.

    Attributes
    ----------
    e0_kev : float
        Incident photon energy (keV), 115 by default.
    theta_centre_rad : float
        Scattering angle of the ray through the pinhole to the detector centre (radians).
    pinhole_to_beam_mm : float
        Distance from the sheet beam centre to the pinhole (mm).
    pinhole_to_detector_mm : float
        Distance from the pinhole to the detector plane (mm).
    pixel_pitch_um : float
        Detector pixel pitch (um).
    shape : tuple of int
        Detector (rows, cols).
    in_plane_axis : {"cols", "rows"}
        Detector axis lying in the scattering plane (its pixels see different angles).
    flip : bool
        Reverse the in-plane axis (pixel index increasing towards smaller angles).
    centre_px : tuple of float or None
        Detector pixel (row, col) hit by the central ray; default the detector centre.
    """

    e0_kev: float = 115.0
    theta_centre_rad: float = np.pi / 2
    pinhole_to_beam_mm: float = 160.0
    pinhole_to_detector_mm: float = 150.0
    pixel_pitch_um: float = 250.0
    shape: tuple = (80, 80)
    in_plane_axis: str = "cols"
    flip: bool = False
    centre_px: tuple | None = None

    def __post_init__(self):
        for name in ("e0_kev", "pinhole_to_beam_mm", "pinhole_to_detector_mm", "pixel_pitch_um"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"geometry: {name} must be a positive number, got {v!r}")
        if not 0 < self.theta_centre_rad < np.pi:
            raise InputError(f"geometry: theta_centre_rad must be in (0, pi), got {self.theta_centre_rad!r}")
        if self.in_plane_axis not in ("cols", "rows"):
            raise InputError(f"geometry: in_plane_axis must be 'cols' or 'rows', got {self.in_plane_axis!r}")
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise InputError(f"geometry: shape must be (rows, cols) >= 1, got {self.shape!r}")

    def scattering_angles(self) -> np.ndarray:
        """Scattering angle per detector pixel (radians), shape ``shape``.

        Examples
        --------
        >>> g = Geometry(shape=(4, 4))
        >>> th = g.scattering_angles()
        >>> bool(abs(th.mean() - np.pi / 2) < 1e-3)
        True
        """
        rows, cols = self.shape
        r0, c0 = self.centre_px if self.centre_px is not None else ((rows - 1) / 2, (cols - 1) / 2)
        pitch = self.pixel_pitch_um * 1e-3
        r = (np.arange(rows) - r0)[:, None] * pitch
        c = (np.arange(cols) - c0)[None, :] * pitch
        in_plane, out_plane = (c, r) if self.in_plane_axis == "cols" else (r, c)
        in_plane = -in_plane if self.flip else in_plane
        in_plane, out_plane = np.broadcast_arrays(in_plane, out_plane)
        t = self.theta_centre_rad
        n = np.array([np.cos(t), np.sin(t)])          # towards the pinhole, in the x-y plane
        u = np.array([-np.sin(t), np.cos(t)])         # detector in-plane axis
        # P - H = L2 n + a u + b z ; the pinhole camera inverts the image, angles follow P - H
        dx = self.pinhole_to_detector_mm * n[0] + in_plane * u[0]
        dy = self.pinhole_to_detector_mm * n[1] + in_plane * u[1]
        dz = out_plane
        return np.arccos(dx / np.sqrt(dx * dx + dy * dy + dz * dz))

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON friendly)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["centre_px"] = None if self.centre_px is None else list(self.centre_px)
        return d


_DEG_KEYS = {"theta_centre_deg": "theta_centre_rad"}


def read_geometry(path, *, shape: tuple | None = None) -> Geometry:
    """Read a geometry YAML file (keys of :class:`Geometry`; ``theta_centre_deg`` in degrees).

    Parameters
    ----------
    path : str or Path
        YAML file with a mapping, e.g. ``{e0_kev: 115, theta_centre_deg: 90,
        pinhole_to_beam_mm: 160, pinhole_to_detector_mm: 150, pixel_pitch_um: 250}``.
    shape : tuple of int, optional
        Detector (rows, cols) used when the file does not give ``shape``.

    Raises
    ------
    InputError
        Missing file, not a mapping, unknown key or bad value (the message names the key).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: geometry file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of geometry keys, got {type(data).__name__}")
    known = set(Geometry.__dataclass_fields__) | set(_DEG_KEYS)
    kw = {}
    for key, value in data.items():
        if key not in known:
            raise InputError(f"{path}: unknown geometry key {key!r} (expected one of {sorted(known)})")
        if key in _DEG_KEYS:
            key, value = _DEG_KEYS[key], np.deg2rad(float(value))
        elif key in ("shape", "centre_px"):
            value = None if value is None else tuple(value)
        elif key == "flip":
            value = bool(value)
        elif key != "in_plane_axis":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{path}: geometry key {key!r} must be a number, got {value!r}") from None
        kw[key] = value
    if "shape" not in kw and shape is not None:
        kw["shape"] = tuple(shape)
    try:
        return Geometry(**kw)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
