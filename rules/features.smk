# Gradient features: one job per (model, feature spec) for the training set and every query set
# (they share the model, so nothing is recomputed that would not have to be anyway).


rule featurize:
    input:
        model=run_path(layout.FULL_MODEL),
        images=[run_path(layout.split_file(s)) for s in ["train"] + QUERY_SETS],
    output:
        features=[run_path(f"features/{{model}}/{{feature_id}}/{s}.npy") for s in ["train"] + QUERY_SETS],
        sidecars=[run_path(f"features/{{model}}/{{feature_id}}/{s}.json") for s in ["train"] + QUERY_SETS],
    params:
        model=config["model"],
        splits=["train"] + QUERY_SETS,
        seed=config["seed"],
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    log:
        log_path("featurize/{model}_{feature_id}"),
    benchmark:
        bench_path("featurize/{model}_{feature_id}")
    conda:
        CONDA_ENV
    script:
        "../scripts/featurize.py"
