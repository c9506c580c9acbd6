rule evaluate_lds:
    input:
        scores=[run_path(f"scores/{{method_id}}/{qs}.npy") for qs in QUERY_SETS],
        sidecars=[run_path(f"scores/{{method_id}}/{qs}.json") for qs in QUERY_SETS],
        outputs=[run_path(layout.lds_outputs("test", qs)) for qs in QUERY_SETS],
        subsets=run_path(layout.lds_subsets("test")),
    output:
        records=[run_path(f"evaluation/lds/test/{{method_id}}/{qs}.json") for qs in QUERY_SETS],
    params:
        method=lambda wc: ALL_METHODS[wc.method_id],
        query_sets=QUERY_SETS,
        lds=config["lds"],
        seed=config["seed"],
    log:
        log_path("evaluate_lds/{method_id}"),
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate_lds.py"
