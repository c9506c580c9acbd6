# A latent model's examples are encoded by its base (built here at the embedded scale, named by
# latent.base at the paper scale).
rule prepare_dataset:
    input:
        base=[BUILT_BASE] if BUILT_BASE else [],
    output:
        train=run_path(layout.TRAIN_DATA),
        validation=run_path(layout.VALIDATION_DATA),
        info=run_path(layout.DATASET_INFO),
        train_index=run_path(layout.TRAIN_INDEX),
        validation_index=run_path(layout.VALIDATION_INDEX),
    log:
        log_path("prepare_dataset"),
    priority: 40
    conda:
        CONDA_ENV
    resources:
        **resources_of("prepare_dataset"),
    params:
        data=config["data"],
        latent=dabench_config.encoding_params(config, RUN),
        seed=config["seed"],
    script:
        "../scripts/prepare_dataset.py"


# The embedded scale's tiny latent base (latent.base null): pre-trained on another dataset (a
# latent DDPM's: its autoencoder alone).
rule build_latent_base:
    output:
        base=directory(run_path(layout.BASE)),
    log:
        log_path("build_latent_base"),
    benchmark:
        bench_path("build_latent_base")
    priority: 40
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("build_latent_base"),
    params:
        latent=config["latent"],
        data=config["data"],
        model=config["model"],
        recipe=dabench_config.pretrain_recipe(config) if BASE else None,
        seed=config["seed"],
    script:
        "../scripts/build_latent_base.py"
