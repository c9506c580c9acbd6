rule train_full_model:
    input:
        train=run_path(layout.TRAIN_DATA),
    output:
        model=run_path(layout.FULL_MODEL),
        sidecar=run_path(layout.FULL_MODEL_META),
        training_log=run_path(layout.TRAINING_LOG),
        checkpoints=[run_path(layout.checkpoint(s)) for s in config["train"]["checkpoint_steps"]],
    log:
        log_path("train_full_model"),
    benchmark:
        bench_path("train_full_model")
    priority: 40
    conda:
        CONDA_GPU_ENV
    # One thread, like every rule: Snakemake reserves no cores, so on a small machine a 2-thread
    # job waits until two cores are free at once — the ci run's latent chains waited 90 s.
    threads: 1
    resources:
        **resources_of("train_full_model"),
    params:
        model=MODEL,
        recipe=dabench_config.training_recipe(config, "train"),
        seed=config["seed"],
        resume=run_path("partial/full_model/resume.safetensors"),
    script:
        "../scripts/train_full_model.py"


rule generate_samples:
    input:
        model=run_path(layout.FULL_MODEL),
        train=run_path(layout.TRAIN_DATA),  # a latent model's prompts
    output:
        samples=run_path(layout.GENERATION),
        trajectory=run_path(layout.TRAJECTORY),
    log:
        log_path("generate_samples"),
    benchmark:
        bench_path("generate_samples")
    priority: 40
    conda:
        CONDA_GPU_ENV
    threads: 1
    resources:
        **resources_of("generate_samples"),
    params:
        model=MODEL,
        generation=config["generation"],
        seed=config["seed"],
    script:
        "../scripts/generate_samples.py"
