# Example grids, cost accounting and the tables of the HTML report (`make report`).


rule plot_proponents:
    input:
        scores=[run_path(layout.scores(m, PROPONENT_SET)) for m in PROPONENTS],
        train=run_path(layout.TRAIN_DATA),
        queries=run_path(layout.query_file(PROPONENT_SET)),
    output:
        pdf=run_path(layout.figure("proponents")),
        png=figure("proponents", "2. Proponents and self-influence"),
    log:
        log_path("plot_proponents"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        methods=PROPONENTS,
        n_queries=config["figures"]["proponents"]["n_queries"],
        k=config["figures"]["proponents"]["k"],
        by_source=False,
    script:
        "../scripts/plot_proponents.py"


use rule plot_proponents as plot_outlier_proponents with:
    input:
        scores=[f"{OUTLIER_ROOT}/{layout.scores(m, 'validation')}" for m in RETRAC or []],
        train=f"{OUTLIER_ROOT}/{layout.TRAIN_DATA}",
        queries=f"{OUTLIER_ROOT}/{layout.VALIDATION_DATA}",
    output:
        pdf=run_path(layout.figure("retrac_outlier_proponents")),
        png=figure("retrac_outlier_proponents", "4. Diffusion-ReTrac"),
    log:
        log_path("plot_outlier_proponents"),
    localrule: True
    params:
        methods=list(RETRAC or []),
        n_queries=config["figures"]["proponents"]["n_queries"],
        k=config["figures"]["proponents"]["k"],
        by_source=True,


rule plot_self_influence:
    input:
        train=run_path(layout.TRAIN_DATA),
        values=[run_path(layout.self_influence(m)) for m in SELF_INFLUENCE_METHODS],
    output:
        pdf=run_path(layout.figure("self_influence")),
        png=figure("self_influence", "2. Proponents and self-influence"),
    log:
        log_path("plot_self_influence"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        methods=SELF_INFLUENCE_METHODS,
        k=config["figures"]["self_influence"]["k"],
        mark_outliers=False,
    script:
        "../scripts/plot_self_influence.py"


use rule plot_self_influence as plot_outlier_self_influence with:
    input:
        train=f"{OUTLIER_ROOT}/{layout.TRAIN_DATA}",
        values=[f"{OUTLIER_ROOT}/{layout.self_influence(m)}" for m in SELF_INFLUENCE_METHODS],
    output:
        pdf=run_path(layout.figure("retrac_outlier_self_influence")),
        png=figure("retrac_outlier_self_influence", "4. Diffusion-ReTrac"),
    log:
        log_path("plot_outlier_self_influence"),
    localrule: True
    params:
        methods=SELF_INFLUENCE_METHODS,
        k=config["figures"]["self_influence"]["k"],
        mark_outliers=True,


# Compute per method (featurization, projection, scoring, retrains) against its LDS.
rule cost_accounting:
    input:
        lds=run_path(layout.LDS_TABLE),
        sidecars=[run_path(layout.scores_sidecar(m, qs)) for m, qs in SCORED],
    output:
        csv=run_path(layout.table("cost")),
        tex=run_path(layout.table("cost", "tex")),
        pdf=run_path(layout.figure("cost")),
        png=figure("cost", "1. LDS benchmark"),
    log:
        log_path("cost_accounting"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/cost_accounting.py"


# Every table of the run as an HTML page of the report (CSV and LaTeX stay beside it).
rule report_tables:
    input:
        tables=report_table_inputs,
    output:
        report(
            directory(run_path("report_tables")),
            patterns=["{name}.html"],
            caption="../report/tables.rst",
            category="6. Tables",
        ),
    log:
        log_path("report_tables"),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/report_tables.py"
