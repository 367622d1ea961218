"""compton: HEXITEC frames to calibrated hyperspectral cubes, Compton profiles and EMF maps."""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "_errors": ["InputError"],
        "io": [
            "read_bin",
            "read_hexitec_h5",
            "read_hxt",
            "write_cube",
            "read_cube",
            "iter_frames",
            "count_frames",
        ],
        "frames": ["Cube", "process_frames"],
        "calibration": ["Calibration", "fit_calibration", "read_values", "write_values"],
        "profile": [
            "pz_from_energy",
            "compton_energy",
            "klein_nishina",
            "transmittance",
            "deconvolve_resolution",
            "subtract_background",
            "compton_profile",
            "emf",
            "emf_from_spectra",
            "emf_map",
            "Profile",
            "EmfResult",
        ],
        "geometry": ["Geometry", "read_geometry"],
        "correlative": ["align_spectra", "region_spectra", "component_emf", "component_fractions", "unmix", "correlative_emf", "Unmixed"],
        "concentration": ["EmfCalibration", "fit_emf_calibration"],
        "simulate": [
            "simulate_spectrum",
            "simulate_cube",
            "simulate_frames",
            "reference_profile",
            "reference_emf",
            "nmc622",
        ],
    },
)
