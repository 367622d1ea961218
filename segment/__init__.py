"""segment: lithium-layer segmentation, thickness/topology maps, roughness,
virtual stripping and the local current distribution."""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "_errors": ["InputError"],
        "roughness": ["RoughnessResult", "roughness", "level_surface"],
        "stripping": ["StrippingResult", "virtual_stripping", "synthetic_thickness_map"],
        "current": ["CurrentResult", "current_distribution", "stripping_with_current", "StrippingCurrentResult"],
    },
)
