"""segment: lithium-layer segmentation, thickness/topology maps, roughness,
virtual stripping and the local current distribution."""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "_errors": ["InputError"],
        "filters": ["denoise", "median_filter", "opening", "closing", "nl_means", "ball"],
        "classify": ["segment_layers", "clean_labels", "threshold_values", "apply_thresholds", "PixelClassifier", "train_classifier", "load_classifier"],
        "layers": ["stacking_axis", "fit_plane", "thickness_map", "interfaces_from_labels"],
        "maps": ["LayerMaps", "layer_maps", "capacity_map", "write_maps", "read_maps", "read_volume", "save_figures", "UM_PER_MAH_CM2"],
        "roughness": ["RoughnessResult", "roughness", "level_surface"],
        "stripping": ["StrippingResult", "virtual_stripping", "synthetic_thickness_map"],
        "current": ["CurrentResult", "current_distribution", "stripping_with_current", "StrippingCurrentResult"],
    },
)
