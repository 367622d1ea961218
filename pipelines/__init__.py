"""pipelines: end-to-end workflows, the ``anodescope`` command line, reports and the napari plugin.

The only package allowed to import ``recon``, ``segment`` and ``compton``.

A study is one YAML file (``load_config``) run stage by stage (``run_study``: reconstruct ->
segment -> strip for tomography scans, hexitec -> compton for XCS scans, then reports),
locally, on a dask.distributed cluster (``pipelines.cluster``) or through the Snakemake
workflow in ``pipelines/workflow`` (``anodescope workflow``).
"""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, _all = _lazy.attach(
    __name__,
    submod_attrs={
        "_errors": ["InputError"],
        "config": ["load_config", "StudyConfig", "ScanConfig"],
        "stages": ["run_study", "run_stage"],
        "cluster": ["connect", "local_cluster", "slurm_cluster", "cuda_cluster"],
        "report": ["write_scan_report", "write_study_report"],
        "samples": ["anode_free_cell", "anode_free_cell_states", "xcs_acquisition", "hexitec_frames",
                    "make_sample_study"],
        "demo": ["run_demo"],
    },
)
__all__ = ["__version__", *_all]
