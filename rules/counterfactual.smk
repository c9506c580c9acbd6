# Counterfactual evaluation (docs/computation.md §5): per (method, generated query) remove the top-k
# influencers, retrain with the full model's recipe and seeds, regenerate from the same noise.


rule counterfactual_retrain:
    input:
        unpack(counterfactual_scores),
        train=run_path(layout.TRAIN_DATA),
        generation=run_path(layout.GENERATION),
    output:
        result=run_path(layout.counterfactual_result("{cf_method}", "{query}")),
        model=run_path("models/counterfactual/{cf_method}/query{query}.safetensors"),
    log:
        log_path("counterfactual_retrain/{cf_method}_{query}"),
    benchmark:
        bench_path("counterfactual_retrain/{cf_method}_{query}")
    priority: 20
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("counterfactual_retrain"),
    params:
        model=MODEL,
        recipe=dabench_config.training_recipe(config),
        generation=config["generation"],
        fraction=config["counterfactual"]["fraction"],
        seed=config["seed"],
        resume=lambda wc: run_path(
            f"partial/counterfactual/{wc.cf_method}_query{wc.query}.safetensors"
        ),
    script:
        "../scripts/counterfactual_retrain.py"


rule counterfactual_tables:
    input:
        unpack(embedder_inputs),
        results=[r for rs in counterfactual_results().values() for r in rs],
    output:
        csv=run_path(layout.table("counterfactual")),
        tex=run_path(layout.table("counterfactual", "tex")),
        per_query=run_path(layout.table("counterfactual_per_query")),
    log:
        log_path("counterfactual_tables"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        results=counterfactual_results(),
        methods={m: config["methods"][m] for m in COUNTERFACTUAL or []},
        embedder=EMBEDDER,
    script:
        "../scripts/counterfactual_tables.py"


rule plot_counterfactual:
    input:
        per_query=run_path(layout.table("counterfactual_per_query")),
        results=[r for rs in counterfactual_results().values() for r in rs],
    output:
        box=[
            run_path(layout.figure("counterfactual_box")),
            figure("counterfactual_box", "3. Counterfactual evaluation"),
        ],
        grid=[
            run_path(layout.figure("counterfactual_grid")),
            figure("counterfactual_grid", "3. Counterfactual evaluation"),
        ],
    log:
        log_path("plot_counterfactual"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        results=counterfactual_results(),
        methods={m: config["methods"][m] for m in COUNTERFACTUAL or []},
    script:
        "../scripts/plot_counterfactual.py"


# The counterfactual at a sampling step (D-TRAK Appendix E): per-step Journey-TRAK scores, its
# retrains per (query, timestep), and the shared methods' counterfactual models resumed at each
# step.
rule journey_step_scores:
    input:
        unpack(journey_step_inputs),
        model=run_path(layout.FULL_MODEL),
        generation=run_path(layout.GENERATION),
        trajectory=run_path(layout.TRAJECTORY),
    output:
        scores=run_path(layout.JOURNEY_STEP_SCORES),
    log:
        log_path("journey_step_scores"),
    benchmark:
        bench_path("journey_step_scores")
    priority: 20
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("journey_step_scores"),
    params:
        model=MODEL,
        plan=JOURNEY_CF,
        seed=config["seed"],
    script:
        "../scripts/journey_step_scores.py"


rule journey_step_retrain:
    input:
        scores=run_path(layout.JOURNEY_STEP_SCORES),
        train=run_path(layout.TRAIN_DATA),
        generation=run_path(layout.GENERATION),
        trajectory=run_path(layout.TRAJECTORY),
    output:
        result=run_path(layout.journey_result("journey-trak-step", "{query}", "{jtimestep}")),
    log:
        log_path("journey_step_retrain/{query}_{jtimestep}"),
    benchmark:
        bench_path("journey_step_retrain/{query}_{jtimestep}")
    priority: 20
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("journey_step_retrain"),
    params:
        model=MODEL,
        recipe=dabench_config.training_recipe(config),
        generation=config["generation"],
        fraction=config["counterfactual"]["fraction"],
        seed=config["seed"],
        resume=lambda wc: run_path(
            f"partial/counterfactual/journey-step_query{wc.query}_t{wc.jtimestep}.safetensors"
        ),
    script:
        "../scripts/journey_step_retrain.py"


rule journey_shared_regenerate:
    input:
        model=run_path("models/counterfactual/{cf_method}/query{query}.safetensors"),
        generation=run_path(layout.GENERATION),
        trajectory=run_path(layout.TRAJECTORY),
    output:
        results=[
            run_path(layout.journey_result("{cf_method}", "{query}", t))
            for t in (JOURNEY_CF or {}).get("timesteps", [])
        ],
    log:
        log_path("journey_shared_regenerate/{cf_method}_{query}"),
    priority: 20
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("journey_shared_regenerate"),
    params:
        model=MODEL,
        generation=config["generation"],
        timesteps=(JOURNEY_CF or {}).get("timesteps", []),
    script:
        "../scripts/journey_shared_regenerate.py"


rule journey_counterfactual_tables:
    input:
        unpack(embedder_inputs),
        results=[r for rs in journey_results().values() for r in rs],
    output:
        csv=run_path(layout.table("journey_counterfactual")),
        tex=run_path(layout.table("journey_counterfactual", "tex")),
        per_query=run_path(layout.table("journey_counterfactual_per_query")),
    log:
        log_path("journey_counterfactual_tables"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        results=journey_results(),
        methods={m: config["methods"][m] for m in COUNTERFACTUAL or []},
        embedder=EMBEDDER,
    script:
        "../scripts/journey_counterfactual_tables.py"


rule plot_journey_counterfactual:
    input:
        per_query=run_path(layout.table("journey_counterfactual_per_query")),
        results=[r for rs in journey_results().values() for r in rs],
    output:
        box=[
            run_path(layout.figure("journey_counterfactual_box")),
            figure("journey_counterfactual_box", "3. Counterfactual evaluation"),
        ],
        grid=[
            run_path(layout.figure("journey_counterfactual_grid")),
            figure("journey_counterfactual_grid", "3. Counterfactual evaluation"),
        ],
    log:
        log_path("plot_journey_counterfactual"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        results=journey_results(),
        methods={m: config["methods"][m] for m in COUNTERFACTUAL or []},
    script:
        "../scripts/plot_journey_counterfactual.py"
