# Gradient features: one job per (model, feature spec) for the training set and every query set
# (they share the model, so nothing is recomputed that would not have to be anyway). {model} is
# the full model or one of its checkpoints (stepNNNNNN, for the checkpoint methods). With
# features.train_shards > 1 the training set is featurized by that many parallel jobs and merged.


rule featurize:
    input:
        model=model_input(RUN),
        images=[run_path(layout.split_file(s)) for s in FEATURIZE_SPLITS],
    output:
        features=[run_path(layout.features("{model}", "{feature_id}", s)) for s in FEATURIZE_SPLITS],
        sidecars=[
            run_path(layout.feature_sidecar("{model}", "{feature_id}", s))
            for s in FEATURIZE_SPLITS
        ],
        norms=[
            run_path(layout.feature_norms("{model}", "{feature_id}", s)) for s in FEATURIZE_SPLITS
        ],
    log:
        log_path("featurize/{model}_{feature_id}"),
    benchmark:
        bench_path("featurize/{model}_{feature_id}")
    wildcard_constraints:
        feature_id=feature_id_pattern("grid"),
    priority: 10
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("featurize"),
    params:
        model=MODEL,
        splits=FEATURIZE_SPLITS,
        seed=config["seed"],
    script:
        "../scripts/featurize.py"


# Diffusion-TracIn's training side: each training example's gradient at the (t, ε) it was trained
# with nearest the checkpoint, replayed from the training log.
use rule featurize as featurize_replay with:
    input:
        model=model_input(RUN),
        images=[run_path(layout.TRAIN_DATA)],
        training_log=run_path(layout.TRAINING_LOG),
    output:
        features=[run_path(layout.features("{model}", "{feature_id}", "train"))],
        sidecars=[run_path(layout.feature_sidecar("{model}", "{feature_id}", "train"))],
        norms=[run_path(layout.feature_norms("{model}", "{feature_id}", "train"))],
    wildcard_constraints:
        model=r"step\d{6}",
        feature_id=feature_id_pattern("replay"),
    resources:
        **resources_of("featurize_replay"),
    params:
        model=MODEL,
        splits=["train"],
        seed=config["seed"],


# Journey-TRAK's query side: the generated samples' trajectories under the full model.
use rule featurize as featurize_journey with:
    input:
        model=run_path(layout.FULL_MODEL),
        images=[run_path(layout.GENERATION)],
        trajectory=run_path(layout.TRAJECTORY),
    output:
        features=[run_path(layout.features("{model}", "{feature_id}", "generation"))],
        sidecars=[run_path(layout.feature_sidecar("{model}", "{feature_id}", "generation"))],
        norms=[run_path(layout.feature_norms("{model}", "{feature_id}", "generation"))],
    wildcard_constraints:
        model="full",
        feature_id=feature_id_pattern("journey"),
    resources:
        **resources_of("featurize_journey"),
    params:
        model=MODEL,
        splits=["generation"],
        seed=config["seed"],


if TRAIN_SHARDS > 1:

    # The training set of a feature set in TRAIN_SHARDS parallel jobs (rows i·N/S … (i+1)·N/S).
    rule featurize_train_shard:
        input:
            model=model_input(RUN),
            images=run_path(layout.TRAIN_DATA),
        output:
            features=run_path(layout.feature_shard("{model}", "{feature_id}", "{shard}")),
            sidecar=run_path(layout.feature_shard("{model}", "{feature_id}", "{shard}", "json")),
            norms=run_path(layout.feature_shard("{model}", "{feature_id}", "{shard}", "norms.npy")),
        log:
            log_path("featurize/{model}_{feature_id}_shard{shard}"),
        benchmark:
            bench_path("featurize/{model}_{feature_id}_shard{shard}")
        wildcard_constraints:
            feature_id=feature_id_pattern("grid"),
            shard=r"\d+",
        conda:
            CONDA_GPU_ENV
        threads: 1
        resources:
            **resources_of("featurize_train_shard"),
        params:
            model=MODEL,
            n_shards=TRAIN_SHARDS,
            seed=config["seed"],
            run=RUN,
        script:
            "../scripts/featurize_shard.py"

    rule merge_feature_shards:
        input:
            shards=[
                run_path(layout.feature_shard("{model}", "{feature_id}", i))
                for i in range(TRAIN_SHARDS)
            ],
        output:
            features=run_path(layout.features("{model}", "{feature_id}", "train")),
            sidecar=run_path(layout.feature_sidecar("{model}", "{feature_id}", "train")),
            norms=run_path(layout.feature_norms("{model}", "{feature_id}", "train")),
        log:
            log_path("featurize/{model}_{feature_id}_merge"),
        benchmark:
            bench_path("featurize/{model}_{feature_id}_merge")
        wildcard_constraints:
            feature_id=feature_id_pattern("grid"),
        conda:
            CONDA_ENV
        resources:
            **resources_of("merge_feature_shards"),
        script:
            "../scripts/merge_feature_shards.py"
