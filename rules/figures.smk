# Paper-ready tables and figures.


rule make_lds_table:
    input:
        records=lds_records,
    output:
        csv=run_path(layout.LDS_TABLE),
        tex=run_path(layout.table("lds", "tex")),
    log:
        log_path("make_lds_table"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/make_lds_table.py"


rule plot_lds:
    input:
        csv=run_path(layout.LDS_TABLE),
    output:
        pdf=run_path(layout.figure("lds")),
        png=figure("lds", "1. LDS benchmark"),
    log:
        log_path("plot_lds"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_lds.py"


rule make_ablation_tables:
    input:
        records=ablation_records,
        sidecars=lambda_sidecars,
    output:
        csv=run_path(layout.table("ablations")),
        tex=run_path(layout.table("ablations", "tex")),
        lambda_csv=run_path(layout.table("lambda")),
    log:
        log_path("make_ablation_tables"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        ablations=config["ablations"],
    script:
        "../scripts/make_ablation_tables.py"


rule plot_ablations:
    input:
        csv=run_path(layout.table("ablations")),
        lambda_csv=run_path(layout.table("lambda")),
    output:
        pdf=run_path(layout.figure("ablations")),
        png=figure("ablations", "1. LDS benchmark"),
    log:
        log_path("plot_ablations"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_ablations.py"


# D-TRAK Figures 2, 6-8: LDS with the features of each training checkpoint.
rule make_checkpoint_table:
    input:
        records=checkpoint_records,
    output:
        csv=run_path(layout.table("checkpoint_selection")),
        tex=run_path(layout.table("checkpoint_selection", "tex")),
    log:
        log_path("make_checkpoint_table"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        # The studied methods' entries only: another method's change leaves the table alone.
        config={
            **{k: config[k] for k in ("checkpoint_selection", "train", "data")},
            "methods": {m: ALL_METHODS[m] for m in CHECKPOINT_STUDY_BASES},
        },
    script:
        "../scripts/make_checkpoint_table.py"


rule plot_checkpoint_selection:
    input:
        csv=run_path(layout.table("checkpoint_selection")),
    output:
        pdf=run_path(layout.figure("checkpoint_selection")),
        png=figure("checkpoint_selection", "1. LDS benchmark"),
    log:
        log_path("plot_checkpoint_selection"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_checkpoint_selection.py"


# D-TRAK Tables 7-8: the retraining-based methods against the number of retrained models.
rule make_retraining_table:
    input:
        records=retraining_records,
    output:
        csv=run_path(layout.table("retraining")),
        tex=run_path(layout.table("retraining", "tex")),
        pdf=run_path(layout.figure("retraining")),
        png=figure("retraining", "1. LDS benchmark"),
    log:
        log_path("make_retraining_table"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/make_retraining_table.py"
