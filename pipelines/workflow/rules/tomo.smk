# Tomography scans: reconstruct -> segment -> strip (one job per scan and stage).
# Each job runs `anodescope run STUDY.yaml --scan ID --stage NAME`; the stage reads
# the upstream stage's results and writes <out>/<scan>/<stage>/ (stage.json last).


rule reconstruct:
    input:
        unpack(raw_inputs("projections")),
        upstream=upstream_of("reconstruct"),
    output:
        stage_json("{scan}", "reconstruct"),
    params:
        study=study_path(study_yaml()),
        parameters=parameters("reconstruct"),
    log:
        log_of("reconstruct"),
    benchmark:
        benchmark_of("reconstruct")
    wildcard_constraints:
        scan=only(ids_of("tomo", "reconstruct")),
    threads: 8
    resources:
        mem_mb=memory_mb("reconstruct", 2000),
        runtime=120,
        gpu=uses_gpu("reconstruct"),
    conda:
        "../envs/anodescope.yaml"
    shell:
        "OMP_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads} DASK_NUM_WORKERS={threads} "
        "anodescope run {params.study:q} --scan {wildcards.scan} --stage reconstruct --quiet "
        "> {log:q} 2>&1"


rule segment:
    input:
        unpack(raw_inputs("truth_thickness")),
        upstream=upstream_of("segment"),
    output:
        stage_json("{scan}", "segment"),
    params:
        study=study_path(study_yaml()),
        parameters=parameters("segment"),
    log:
        log_of("segment"),
    benchmark:
        benchmark_of("segment")
    wildcard_constraints:
        scan=only(ids_of("tomo", "segment")),
    threads: 4
    resources:
        mem_mb=memory_mb("segment", 4000),
        runtime=60,
        gpu=uses_gpu("segment"),
    conda:
        "../envs/anodescope.yaml"
    shell:
        "OMP_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads} DASK_NUM_WORKERS={threads} "
        "anodescope run {params.study:q} --scan {wildcards.scan} --stage segment --quiet "
        "> {log:q} 2>&1"


rule strip:
    input:
        upstream=upstream_of("strip"),
    output:
        stage_json("{scan}", "strip"),
    params:
        study=study_path(study_yaml()),
        parameters=parameters("strip"),
    log:
        log_of("strip"),
    benchmark:
        benchmark_of("strip")
    wildcard_constraints:
        scan=only(ids_of("tomo", "strip")),
    threads: 2
    resources:
        mem_mb=memory_mb("strip", 2000),
        runtime=60,
        gpu=uses_gpu("strip"),
    conda:
        "../envs/anodescope.yaml"
    shell:
        "OMP_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads} DASK_NUM_WORKERS={threads} "
        "anodescope run {params.study:q} --scan {wildcards.scan} --stage strip --quiet "
        "> {log:q} 2>&1"
