rule evaluate_lds:
    input:
        scores=[run_path(layout.scores("{method_id}", qs)) for qs in QUERY_SETS],
        sidecars=[run_path(layout.scores_sidecar("{method_id}", qs)) for qs in QUERY_SETS],
        outputs=[run_path(layout.lds_outputs("test", qs)) for qs in QUERY_SETS],
        subsets=run_path(layout.lds_subsets("test")),
    output:
        records=[run_path(layout.lds_result("{method_id}", qs)) for qs in QUERY_SETS],
    log:
        log_path("evaluate_lds/{method_id}"),
    wildcard_constraints:
        method_id=one_of(FULL_METHODS),
    localrule: True
    conda:
        CONDA_ENV
    params:
        method=lambda wc: ALL_METHODS[wc.method_id],
        query_sets=QUERY_SETS,
        lds=config["lds"],
        seed=config["seed"],
    script:
        "../scripts/evaluate_lds.py"


use rule evaluate_lds as evaluate_lds_generation with:
    input:
        scores=[run_path(layout.scores("{method_id}", "generation"))],
        sidecars=[run_path(layout.scores_sidecar("{method_id}", "generation"))],
        outputs=[run_path(layout.lds_outputs("test", "generation"))],
        subsets=run_path(layout.lds_subsets("test")),
    output:
        records=[run_path(layout.lds_result("{method_id}", "generation"))],
    wildcard_constraints:
        method_id=one_of(GENERATION_ONLY),
    localrule: True
    params:
        method=lambda wc: ALL_METHODS[wc.method_id],
        query_sets=["generation"],
        lds=config["lds"],
        seed=config["seed"],
