# Group attribution of global properties (docs/computation.md §7): groups and subsets, the
# reference F values,
# the pruned model, submodels three ways, Shapley values and baselines, counterfactual, tables.


rule shapley_design:
    input:
        train=run_path(layout.TRAIN_DATA),
    output:
        design=run_path(layout.SHAPLEY_DESIGN),
        groups=run_path(layout.SHAPLEY_GROUPS),
    log:
        log_path("shapley_design"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        cfg=shapley_cfg("lds", "submodels"),
        seed=config["seed"],
    script:
        "../scripts/shapley_design.py"


rule shapley_reference:
    input:
        full=run_path(layout.FULL_MODEL),
        classifier=run_path(layout.EMBEDDER_MODEL),
        train=run_path(layout.TRAIN_DATA),
    output:
        reference=run_path(layout.SHAPLEY_REFERENCE),
        json=run_path(layout.SHAPLEY_REFERENCE_VALUES),
    log:
        log_path("shapley_reference"),
    benchmark:
        bench_path("shapley_reference")
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("shapley_reference"),
    params:
        model=MODEL,
        generation=config["generation"],
        cfg=shapley_cfg("n_samples", "n_clusters", "percentile", "aesthetic"),
        seed=config["seed"],
    script:
        "../scripts/shapley_reference.py"


rule shapley_prune:
    input:
        full=run_path(layout.FULL_MODEL),
        train=run_path(layout.TRAIN_DATA),
    output:
        pruned=run_path(layout.SHAPLEY_PRUNED),
        json=run_path(layout.SHAPLEY_PRUNED.replace(".safetensors", ".json")),
    log:
        log_path("shapley_prune"),
    benchmark:
        bench_path("shapley_prune")
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("shapley_prune"),
    params:
        model=MODEL,
        recipe=shapley_recipes["recovery"],
        ratio=config["shapley"]["prune"]["ratio"],
        seed=config["seed"],
    script:
        "../scripts/shapley_prune.py"


rule shapley_submodels:
    input:
        unpack(shapley_submodel_inputs),
        train=run_path(layout.TRAIN_DATA),
        design=run_path(layout.SHAPLEY_DESIGN),
        reference=run_path(layout.SHAPLEY_REFERENCE),
        classifier=run_path(layout.EMBEDDER_MODEL),
        full=run_path(layout.FULL_MODEL),
    output:
        chunk=run_path(layout.shapley_chunk("{sfamily}", "{way}", "{chunk}")),
    log:
        log_path("shapley_submodels/{sfamily}_{way}_{chunk}"),
    benchmark:
        bench_path("shapley_submodels/{sfamily}_{way}_{chunk}")
    priority: 20
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("shapley_submodels"),
    params:
        model=MODEL,
        generation=config["generation"],
        cfg=lambda wc: shapley_cfg(
            "n_samples",
            "percentile",
            "aesthetic",
            submodels={wc.way: config["shapley"]["submodels"][wc.way]},
        ),
        seed=config["seed"],
        recipe=lambda wc: shapley_recipes[wc.way],
        per_job=lambda wc: dabench_shapley.per_job(config["shapley"], wc.way),
        partial=lambda wc: run_path(f"partial/shapley/{wc.sfamily}/{wc.way}/chunk{wc.chunk}"),
    script:
        "../scripts/shapley_submodels.py"


rule shapley_values:
    input:
        design=run_path(layout.SHAPLEY_DESIGN),
        reference=run_path(layout.SHAPLEY_REFERENCE_VALUES),
        chunks=lambda wc: shapley_chunks("kernel", wc.way),
    output:
        json=run_path(layout.shapley_attribution("shapley-{way}")),
    log:
        log_path("shapley_values/{way}"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/shapley_values.py"


rule shapley_baseline:
    input:
        design=run_path(layout.SHAPLEY_DESIGN),
        scores=run_path(layout.scores("{method_id}", "generation")),
    output:
        json=run_path(layout.shapley_attribution("{method_id}.mean")),
    log:
        log_path("shapley_baseline/{method_id}"),
    wildcard_constraints:
        method_id=one_of(SHAPLEY["baselines"] if SHAPLEY else []),
    localrule: True
    conda:
        CONDA_ENV
    params:
        entry=lambda wc: config["methods"][wc.method_id],
    script:
        "../scripts/shapley_baseline.py"


# The baseline that looks at no model: each group's training images scored by the quality
# property's per-image score (shapley.training_score).
rule shapley_training_score:
    input:
        design=run_path(layout.SHAPLEY_DESIGN),
        train=run_path(layout.TRAIN_DATA),
        classifier=run_path(layout.EMBEDDER_MODEL),
    output:
        json=run_path(layout.shapley_attribution(f"{layout.TRAINING_SCORE}.mean")),
    log:
        log_path("shapley_training_score"),
    benchmark:
        bench_path("shapley_training_score")
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("shapley_training_score"),
    params:
        aesthetic=config["shapley"]["aesthetic"],
    script:
        "../scripts/shapley_training_score.py"


rule shapley_counterfactual:
    input:
        unpack(shapley_cf_inputs),
        train=run_path(layout.TRAIN_DATA),
        design=run_path(layout.SHAPLEY_DESIGN),
        reference=run_path(layout.SHAPLEY_REFERENCE),
        classifier=run_path(layout.EMBEDDER_MODEL),
    output:
        result=run_path(layout.shapley_counterfactual("{cf_key}", "{cf_part}")),
    log:
        log_path("shapley_counterfactual/{cf_key}.part{cf_part}"),
    benchmark:
        bench_path("shapley_counterfactual/{cf_key}.part{cf_part}")
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("shapley_counterfactual"),
    params:
        model=MODEL,
        generation=config["generation"],
        cfg=shapley_cfg("n_samples", "percentile", "aesthetic", "property", "counterfactual"),
        seed=config["seed"],
        recipe=shapley_recipes["retrain"],
        partial=lambda wc: run_path(f"partial/shapley/counterfactual/{wc.cf_key}"),
    script:
        "../scripts/shapley_counterfactual.py"


rule shapley_tables:
    input:
        design=run_path(layout.SHAPLEY_DESIGN),
        reference=run_path(layout.SHAPLEY_REFERENCE_VALUES),
        attributions=shapley_attribution_files if SHAPLEY else [],
        pruned=run_path(layout.SHAPLEY_PRUNED.replace(".safetensors", ".json")),
        heldout=shapley_chunks("heldout", "retrain") if SHAPLEY else [],
        chunks=[c for cs in shapley_way_chunks().values() for c in cs] if SHAPLEY else [],
        counterfactual=(
            [p for ps in shapley_counterfactual_results().values() for p in ps] if SHAPLEY else []
        ),
    output:
        **{
            k: (
                figure(v[len("figures/") : -len(".png")], "5. Group Shapley")
                if v.endswith(".png")
                else run_path(v)
            )
            for k, v in SHAPLEY_OUTPUTS.items()
        },
    log:
        log_path("shapley_tables"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        way_chunks=shapley_way_chunks() if SHAPLEY else {},
        counterfactual=shapley_counterfactual_results() if SHAPLEY else {},
        cfg=config["shapley"],
        bootstrap={"n_boot": config["lds"]["bootstrap"], "confidence": config["lds"]["confidence"]},
        seed=config["seed"],
    script:
        "../scripts/shapley_tables.py"
