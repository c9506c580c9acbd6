rule prepare_dataset:
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
        seed=config["seed"],
    script:
        "../scripts/prepare_dataset.py"
