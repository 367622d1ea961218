"""pipelines: end-to-end workflows, the ``anodescope`` command line, reports and the napari plugin.

The only package allowed to import ``recon``, ``segment`` and ``compton``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
