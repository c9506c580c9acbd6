rule compute_scores:
    input:
        unpack(method_inputs),
    output:
        scores=[run_path(f"scores/{{method_id}}/{qs}.npy") for qs in QUERY_SETS],
        sidecars=[run_path(f"scores/{{method_id}}/{qs}.json") for qs in QUERY_SETS],
    params:
        method=lambda wc: ALL_METHODS[wc.method_id],
        query_sets=QUERY_SETS,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        log_path("compute_scores/{method_id}"),
    benchmark:
        bench_path("compute_scores/{method_id}")
    conda:
        CONDA_ENV
    script:
        "../scripts/compute_scores.py"
