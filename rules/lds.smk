# The LDS ground truth: subsets, packed retrains (f(x; θ_S) computed inside each), outputs.


rule draw_lds_subsets:
    output:
        tune=run_path(layout.lds_subsets("tune")),
        test=run_path(layout.lds_subsets("test")),
        tune_index=directory(run_path(layout.subset_index_dir("tune"))),
        test_index=directory(run_path(layout.subset_index_dir("test"))),
    log:
        log_path("draw_lds_subsets"),
    priority: 40
    localrule: True
    conda:
        CONDA_ENV
    params:
        n_train=dabench_config.train_set_size(config),
        alpha=config["lds"]["alpha"],
        tune=config["lds"]["tune"],
        test=config["lds"]["test"],
        seed=config["seed"],
    script:
        "../scripts/draw_lds_subsets.py"


# A third family for the retraining-based methods, drawn apart from the LDS subsets so that
# changing its size never redraws (and retrains) the tune and test families.
rule draw_datamodel_subsets:
    input:
        exclude=[run_path(layout.lds_subsets(f)) for f in ("tune", "test")],
    output:
        subsets=run_path(layout.lds_subsets(layout.DATAMODEL)),
        index=directory(run_path(layout.subset_index_dir(layout.DATAMODEL))),
    log:
        log_path("draw_datamodel_subsets"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        n_train=dabench_config.train_set_size(config),
        alpha=config["lds"]["alpha"],
        n=DATAMODEL["n_subsets"],
        seed=config["seed"],
    script:
        "../scripts/draw_datamodel_subsets.py"


# The longest jobs and on the LDS critical path: started before shorter jobs that are ready too.
rule train_lds_models:
    input:
        unpack(query_inputs),
        train=run_path(layout.TRAIN_DATA),
        subsets=run_path(layout.lds_subsets("{family}")),
    output:
        chunk=run_path(layout.lds_chunk("{family}", "{chunk}")),
        models=directory(run_path(layout.retrain_dir("{family}", "{chunk}"))),
    log:
        log_path("train_lds_models/{family}_{chunk}"),
    benchmark:
        bench_path("train_lds_models/{family}_{chunk}")
    priority: 20
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("train_lds_models"),
    params:
        model=MODEL,
        recipe=dabench_config.training_recipe(config, "lds"),
        output=config["lds"]["output"],
        n_seeds=lambda wc: config["lds"][wc.family]["n_seeds"],
        per_job=config["lds"]["retrains_per_job"],
        save_models=config["lds"]["save_models"],
        query_sets=QUERY_SETS,
        seed=config["seed"],
        partial=lambda wc: run_path(f"partial/lds/{wc.family}/chunk{wc.chunk}"),
    script:
        "../scripts/train_lds_models.py"


rule collect_lds_outputs:
    input:
        chunks=lds_chunk_files,
    output:
        mean=expand(run_path("lds/{{family}}/{query_set}_outputs.npy"), query_set=QUERY_SETS),
        per_seed=expand(
            run_path("lds/{{family}}/{query_set}_outputs_per_seed.npy"), query_set=QUERY_SETS
        ),
    log:
        log_path("collect_lds_outputs/{family}"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        n_subsets=lambda wc: config["lds"][wc.family]["n_subsets"],
        n_seeds=lambda wc: config["lds"][wc.family]["n_seeds"],
        query_sets=QUERY_SETS,
    script:
        "../scripts/collect_lds_outputs.py"


rule compute_lds_ceiling:
    input:
        per_seed=run_path("lds/test/{query_set}_outputs_per_seed.npy"),
    output:
        record=run_path(layout.lds_result("ceiling", "{query_set}")),
    log:
        log_path("compute_lds_ceiling/{query_set}"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        lds=config["lds"],
        seed=config["seed"],
    script:
        "../scripts/compute_lds_ceiling.py"
