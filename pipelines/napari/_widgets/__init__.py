"""Dock widgets of the anodescope napari plugin (Qt; each a thin layer over the Python API)."""

from ._compton_widget import ComptonWidget
from ._maps_widget import MapsWidget
from ._recon_widget import ReconstructionWidget
from ._segment_widget import SegmentationWidget
from ._stripping_widget import StrippingWidget

__all__ = ["ReconstructionWidget", "SegmentationWidget", "MapsWidget", "StrippingWidget", "ComptonWidget"]
