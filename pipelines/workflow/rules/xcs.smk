# X-ray Compton scattering scans: hexitec (raw frames -> spectra cube, only for scans
# with `frames`) -> compton (cube -> EMF maps and per-region table).


rule hexitec:
    input:
        unpack(raw_inputs("frames", "gradients", "intercepts", "geometry")),
    output:
        stage_json("{scan}", "hexitec"),
    params:
        study=study_path(study_yaml()),
        parameters=parameters("hexitec"),
    log:
        log_of("hexitec"),
    benchmark:
        benchmark_of("hexitec")
    wildcard_constraints:
        scan=only(ids_of("xcs", "hexitec")),
    threads: 8
    resources:
        mem_mb=memory_mb("hexitec", 4000),
        runtime=120,
        gpu=uses_gpu("hexitec"),
    conda:
        "../envs/anodescope.yaml"
    shell:
        "OMP_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads} DASK_NUM_WORKERS={threads} "
        "anodescope run {params.study:q} --scan {wildcards.scan} --stage hexitec --quiet "
        "> {log:q} 2>&1"


rule compton:
    input:
        unpack(raw_inputs("cube", "geometry", "regions")),
        upstream=upstream_of("compton"),
    output:
        stage_json("{scan}", "compton"),
    params:
        study=study_path(study_yaml()),
        parameters=parameters("compton"),
    log:
        log_of("compton"),
    benchmark:
        benchmark_of("compton")
    wildcard_constraints:
        scan=only(ids_of("xcs", "compton")),
    threads: 4
    resources:
        mem_mb=memory_mb("compton", 4000),
        runtime=60,
        gpu=uses_gpu("compton"),
    conda:
        "../envs/anodescope.yaml"
    shell:
        "OMP_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads} DASK_NUM_WORKERS={threads} "
        "anodescope run {params.study:q} --scan {wildcards.scan} --stage compton --quiet "
        "> {log:q} 2>&1"
