"""recon: read, correct and reconstruct beamline tomography scans (CPU or GPU).

Data flow: ``read_projections`` -> ``normalize`` / ``minus_log`` -> ``remove_zingers``
-> stripe removal -> ``paganin_filter`` -> (``sino_360_to_180``) -> ``find_center`` ->
``reconstruct``; ``reconstruct_to_zarr`` runs the whole chain in chunks into OME-Zarr.
"""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "_errors": ["InputError"],
        "io": ["Projections", "read_projections", "read_dxchange", "read_nxtomo", "read_tiff_stack"],
        "prep": ["normalize", "minus_log", "remove_zingers"],
        "stripes": [
            "remove_stripes_sorting",
            "remove_large_stripes",
            "remove_dead_stripes",
            "remove_all_stripes",
            "remove_stripes_fw",
        ],
        "phase": ["paganin_filter"],
        "center": ["find_center", "find_center_vo", "find_center_pc", "center_quicklook"],
        "extended": ["find_overlap_360", "sino_360_to_180"],
        "algorithms": ["reconstruct", "FILTERS"],
        "chunked": ["reconstruct_to_zarr", "open_volume"],
        "simulate": ["shepp_logan", "shepp_logan_sinogram", "forward_project", "simulate_scan", "write_dxchange", "write_nxtomo", "write_tiff_stack"],
    },
)
