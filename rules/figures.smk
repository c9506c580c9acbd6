# Paper-ready tables and figures.


rule make_lds_table:
    input:
        records=lds_records,
    output:
        csv=run_path(layout.LDS_TABLE),
        tex=run_path("tables/lds.tex"),
    log:
        log_path("make_lds_table"),
    conda:
        CONDA_ENV
    script:
        "../scripts/make_lds_table.py"


rule plot_lds:
    input:
        csv=run_path(layout.LDS_TABLE),
    output:
        pdf=run_path("figures/lds.pdf"),
        png=run_path("figures/lds.png"),
    log:
        log_path("plot_lds"),
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_lds.py"
