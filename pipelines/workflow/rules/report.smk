# Reports: one per scan (<out>/<scan>/report/, from every stage of the scan)
# and the study report <out>/report.html over all scans.


rule report:
    input:
        upstream=upstream_of("report"),
    output:
        stage_json("{scan}", "report"),
    params:
        study=study_path(study_yaml()),
    log:
        log_of("report"),
    benchmark:
        benchmark_of("report")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    conda:
        "../envs/anodescope.yaml"
    shell:
        "anodescope run {params.study:q} --scan {wildcards.scan} --stage report --quiet "
        "> {log:q} 2>&1"


rule study_report:
    input:
        expand(stage_json("{scan}", "report"), scan=ids_of("tomo") + ids_of("xcs")),
    output:
        f"{OUT}/report.html",
    params:
        out=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{OUT}/logs/study_report.log",
    benchmark:
        f"{OUT}/benchmarks/study_report.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    run:
        from pipelines.report import write_study_report

        with open(log[0], "w") as fh:
            fh.write(f"{write_study_report(params.out)}\n")
