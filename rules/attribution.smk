rule compute_scores:
    input:
        unpack(method_inputs),
    output:
        scores=run_path("scores/{method_id}/{query_set}.npy"),
        sidecar=run_path("scores/{method_id}/{query_set}.json"),
    params:
        method=lambda wc: config["methods"][wc.method_id],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        log_path("compute_scores/{method_id}_{query_set}"),
    benchmark:
        bench_path("compute_scores/{method_id}_{query_set}")
    conda:
        CONDA_ENV
    script:
        "../scripts/compute_scores.py"
