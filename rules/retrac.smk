# Diffusion-ReTrac (Xie et al.; docs/computation.md §6): the timestep-bias analyses on the full
# model's
# checkpoints, targeted attribution over every method, and the outlier experiment — a run of its
# own under results/<name>/outliers/ with the same layout, built by the same rules (use rule).


rule retrac_norm_analyses:
    input:
        unpack(replay_norms),
        unpack(manipulation_inputs),
        train=run_path(layout.TRAIN_DATA),
        training_log=run_path(layout.TRAINING_LOG),
        checkpoints=list(retrac_checkpoints(RUN).values()),
    output:
        norms=run_path(layout.table("retrac_norms")),
        norms_tex=run_path(layout.table("retrac_norms", "tex")),
        single_example=run_path(layout.table("retrac_single_example")),
        single_example_tex=run_path(layout.table("retrac_single_example", "tex")),
        correlation=run_path(layout.table("retrac_correlation")),
        correlation_tex=run_path(layout.table("retrac_correlation", "tex")),
        correlation_points=run_path(layout.table("retrac_correlation_points")),
        manipulation=run_path(layout.table("retrac_manipulation")),
        manipulation_tex=run_path(layout.table("retrac_manipulation", "tex")),
        manipulation_points=run_path(layout.table("retrac_manipulation_points")),
    log:
        log_path("retrac_norm_analyses"),
    benchmark:
        bench_path("retrac_norm_analyses")
    priority: 15
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("retrac_norm_analyses"),
    params:
        checkpoints=retrac_checkpoints(RUN),
        methods=lambda wc: {m: config["methods"][m] for m in RETRAC},
        model=MODEL,
        # Only the keys this job uses: the outlier and targeted settings do not rerun it.
        retrac={
            k: v
            for k, v in config["retrac"].items()
            if k not in ("outliers", "targeted_k", "targeted_queries")
        },
        seed=config["seed"],
    script:
        "../scripts/retrac_norm_analyses.py"


rule retrac_targeted:
    input:
        scores=[run_path(layout.scores(m, qs)) for m, qs in SCORED],
    output:
        csv=run_path(layout.table("retrac_targeted")),
        tex=run_path(layout.table("retrac_targeted", "tex")),
    log:
        log_path("retrac_targeted"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        score_keys=SCORED,
        methods={m: config["methods"][m] for m in METHOD_IDS},
        ks=config["retrac"]["targeted_k"],
        n_queries=config["retrac"]["targeted_queries"],
        seed=config["seed"],
    script:
        "../scripts/retrac_targeted.py"


rule plot_retrac:
    input:
        unpack(retrac_figure_inputs),
    output:
        [
            path
            for n in ["norms", "single_example", "correlation", "manipulation", "targeted"]
            + (["outliers", "source_tracing"] if OUTLIER_TABLES else [])
            for path in (
                run_path(layout.figure(f"retrac_{n}")),
                figure(f"retrac_{n}", "4. Diffusion-ReTrac"),
            )
        ],
    log:
        log_path("plot_retrac"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_retrac.py"


# ---- The outlier experiment: its own dataset and model, same rules, paths under OUT ------------


use rule prepare_dataset as prepare_outlier_dataset with:
    output:
        train=out_path(layout.TRAIN_DATA),
        validation=out_path(layout.VALIDATION_DATA),
        info=out_path(layout.DATASET_INFO),
        train_index=out_path(layout.TRAIN_INDEX),
        validation_index=out_path(layout.VALIDATION_INDEX),
    log:
        log_path("outliers/prepare_dataset"),
    resources:
        **resources_of("prepare_outlier_dataset"),
    params:
        data=OUTLIER_DATA,
        seed=config["seed"],


use rule train_full_model as train_outlier_model with:
    input:
        train=out_path(layout.TRAIN_DATA),
    output:
        model=out_path(layout.FULL_MODEL),
        sidecar=out_path(layout.FULL_MODEL_META),
        training_log=out_path(layout.TRAINING_LOG),
        checkpoints=[out_path(layout.checkpoint(s)) for s in config["train"]["checkpoint_steps"]],
    log:
        log_path("outliers/train_full_model"),
    benchmark:
        out_path(layout.benchmark("train_full_model"))
    priority: 5
    resources:
        **resources_of("train_outlier_model"),
    params:
        model=MODEL,
        recipe=dabench_config.training_recipe(config, "train"),
        seed=config["seed"],
        resume=out_path("partial/full_model/resume.safetensors"),


use rule featurize as featurize_outliers with:
    input:
        model=model_input(OUT),
        images=[out_path(layout.split_file(s)) for s in ("train", "validation")],
    output:
        features=[
            out_path(layout.features("{model}", "{feature_id}", s))
            for s in ("train", "validation")
        ],
        sidecars=[
            out_path(layout.feature_sidecar("{model}", "{feature_id}", s))
            for s in ("train", "validation")
        ],
        norms=[
            out_path(layout.feature_norms("{model}", "{feature_id}", s))
            for s in ("train", "validation")
        ],
    log:
        log_path("outliers/featurize/{model}_{feature_id}"),
    benchmark:
        out_path(layout.benchmark("featurize/{model}_{feature_id}"))
    resources:
        **resources_of("featurize_outliers"),
    params:
        model=MODEL,
        splits=["train", "validation"],
        seed=config["seed"],


use rule featurize_replay as featurize_replay_outliers with:
    input:
        model=model_input(OUT),
        images=[out_path(layout.TRAIN_DATA)],
        training_log=out_path(layout.TRAINING_LOG),
    output:
        features=[out_path(layout.features("{model}", "{feature_id}", "train"))],
        sidecars=[out_path(layout.feature_sidecar("{model}", "{feature_id}", "train"))],
        norms=[out_path(layout.feature_norms("{model}", "{feature_id}", "train"))],
    log:
        log_path("outliers/featurize/{model}_{feature_id}"),
    benchmark:
        out_path(layout.benchmark("featurize/{model}_{feature_id}"))
    resources:
        **resources_of("featurize_replay_outliers"),
    params:
        model=MODEL,
        splits=["train"],
        seed=config["seed"],


use rule compute_scores as compute_outlier_scores with:
    input:
        unpack(outlier_method_inputs),
    output:
        scores=[out_path(layout.scores("{method_id}", "validation"))],
        sidecars=[out_path(layout.scores_sidecar("{method_id}", "validation"))],
    log:
        log_path("outliers/compute_scores/{method_id}"),
    benchmark:
        out_path(layout.benchmark("compute_scores/{method_id}"))
    wildcard_constraints:
        method_id="|".join(map(re.escape, CHECKPOINT_METHODS)) or "NO_METHOD",
    resources:
        **resources_of("compute_outlier_scores"),
    params:
        method=lambda wc: config["methods"][wc.method_id],
        query_sets=["validation"],


use rule compute_self_influence as compute_outlier_self_influence with:
    input:
        unpack(self_influence_inputs(OUT)),
    output:
        values=out_path(layout.self_influence("{method_id}")),
        sidecar=out_path(layout.self_influence_sidecar("{method_id}")),
    log:
        log_path("outliers/compute_self_influence/{method_id}"),
    resources:
        **resources_of("compute_outlier_self_influence"),


use rule compute_model_self_influence as compute_model_self_influence_outliers with:
    input:
        unpack(self_influence_inputs(OUT)),
    output:
        values=out_path(layout.self_influence("{method_id}")),
        sidecar=out_path(layout.self_influence_sidecar("{method_id}")),
    log:
        log_path("outliers/compute_self_influence/{method_id}"),
    resources:
        **resources_of("compute_model_self_influence_outliers"),


rule retrac_outlier_tables:
    input:
        self_influence=[
            f"{OUTLIER_ROOT}/{layout.self_influence(m)}" for m in SELF_INFLUENCE_METHODS
        ],
        scores=[f"{OUTLIER_ROOT}/{layout.scores(m, 'validation')}" for m in CHECKPOINT_METHODS],
        train=f"{OUTLIER_ROOT}/{layout.TRAIN_DATA}",
        validation=f"{OUTLIER_ROOT}/{layout.VALIDATION_DATA}",
        info=f"{OUTLIER_ROOT}/{layout.DATASET_INFO}",
    output:
        outliers=run_path(layout.table("retrac_outliers")),
        outliers_tex=run_path(layout.table("retrac_outliers", "tex")),
        source_tracing=run_path(layout.table("retrac_source_tracing")),
        source_tracing_tex=run_path(layout.table("retrac_source_tracing", "tex")),
    log:
        log_path("retrac_outlier_tables"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        self_methods=SELF_INFLUENCE_METHODS,
        score_methods=CHECKPOINT_METHODS,
        methods={m: config["methods"][m] for m in CHECKPOINT_METHODS + SELF_INFLUENCE_METHODS},
        outliers=config["retrac"]["outliers"],
    script:
        "../scripts/retrac_outlier_tables.py"
