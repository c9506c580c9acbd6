"""Snakemake adapter: tables/cost.csv + .tex and figures/cost.pdf + .png."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.cost import write_cost_table
    from dabench.figures import plot_cost
    from dabench.layout import LDS_TABLE, run_dir_of

    df = write_cost_table(run_dir_of(smk.input.lds, LDS_TABLE), smk.input.lds, smk.output.csv,
                          smk.output.tex)
    plot_cost(df, smk.output.pdf, smk.output.png)
