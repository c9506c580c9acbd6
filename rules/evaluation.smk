rule evaluate_lds:
    input:
        scores=run_path("scores/{method_id}/{query_set}.npy"),
        sidecar=run_path("scores/{method_id}/{query_set}.json"),
        subsets=run_path("lds/test/subsets.npy"),
        outputs=run_path("lds/test/{query_set}_outputs.npy"),
    output:
        record=run_path("evaluation/lds/test/{method_id}/{query_set}.json"),
    params:
        method=lambda wc: config["methods"][wc.method_id],
        lds=config["lds"],
        seed=config["seed"],
    log:
        log_path("evaluate_lds/{method_id}_{query_set}"),
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate_lds.py"
