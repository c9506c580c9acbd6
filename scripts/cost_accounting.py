"""Snakemake adapter: tables/cost.csv + .tex and figures/cost.pdf + .png."""
from dabench.cost import write_cost_outputs
from dabench.layout import LDS_TABLE, run_dir_of
from dabench.runtime import job

with job(snakemake) as smk:
    write_cost_outputs(run_dir_of(smk.input.lds, LDS_TABLE), smk.input.lds, smk.output.csv, smk.output.tex,
                       smk.output.pdf, smk.output.png)
