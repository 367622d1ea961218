"""napari plugin of anodescope: readers, a labels writer, sample data and widgets.

Registered through the npe2 manifest ``napari.yaml`` (entry point ``napari.manifest``,
name ``anodescope``). Importing this package does not import napari or Qt; the widgets
import them when they are built.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "_reader": ["napari_get_reader", "read_ome_zarr", "read_projections_layers", "read_cube_layers"],
        "_writer": ["write_labels"],
        "_sample_data": ["make_cell_sample", "make_xcs_sample"],
        "_widgets": [
            "ReconstructionWidget",
            "SegmentationWidget",
            "MapsWidget",
            "StrippingWidget",
            "ComptonWidget",
        ],
    },
)
