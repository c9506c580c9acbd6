rule compute_scores:
    input:
        unpack(method_inputs),
    output:
        scores=[run_path(layout.scores("{method_id}", qs)) for qs in QUERY_SETS],
        sidecars=[run_path(layout.scores_sidecar("{method_id}", qs)) for qs in QUERY_SETS],
    log:
        log_path("compute_scores/{method_id}"),
    benchmark:
        bench_path("compute_scores/{method_id}")
    wildcard_constraints:
        method_id=one_of(set(FULL_METHODS) - set(MODEL_METHODS)),
    priority: 5
    conda:
        CONDA_ENV
    threads: threads_of("compute_scores")
    resources:
        **resources_of("compute_scores"),
    params:
        method=lambda wc: ALL_METHODS[wc.method_id],
        query_sets=QUERY_SETS,
    script:
        "../scripts/compute_scores.py"


# Methods that run the model itself (K-FAC / EK-FAC influence, unlearning, DAS): a GPU job.
use rule compute_scores as compute_model_scores with:
    wildcard_constraints:
        method_id=one_of(MODEL_METHODS),
    conda:
        CONDA_GPU_ENV
    threads: threads_of("compute_model_scores")
    resources:
        **resources_of("compute_model_scores"),


# Methods that attribute generated queries only (Journey-TRAK).
use rule compute_scores as compute_generation_scores with:
    input:
        unpack(method_inputs),
    output:
        scores=[run_path(layout.scores("{method_id}", "generation"))],
        sidecars=[run_path(layout.scores_sidecar("{method_id}", "generation"))],
    wildcard_constraints:
        method_id=one_of(GENERATION_ONLY),
    resources:
        **resources_of("compute_generation_scores"),
    params:
        method=lambda wc: ALL_METHODS[wc.method_id],
        query_sets=["generation"],


# Self-influence of every training example (checkpoint methods: outlier detection, ReTrac §6.3).
rule compute_self_influence:
    input:
        unpack(self_influence_inputs(RUN)),
    output:
        values=run_path(layout.self_influence("{method_id}")),
        sidecar=run_path(layout.self_influence_sidecar("{method_id}")),
    log:
        log_path("compute_self_influence/{method_id}"),
    wildcard_constraints:
        method_id=one_of(set(SELF_INFLUENCE_METHODS) - set(MODEL_METHODS)),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("compute_self_influence"),
    params:
        method=lambda wc: config["methods"][wc.method_id],
    script:
        "../scripts/compute_self_influence.py"


# Self-influence of a method that runs the model (the loss reference): a GPU job.
use rule compute_self_influence as compute_model_self_influence with:
    wildcard_constraints:
        method_id=one_of(set(SELF_INFLUENCE_METHODS) & set(MODEL_METHODS)),
    conda:
        CONDA_GPU_ENV
    resources:
        **resources_of("compute_model_self_influence"),
