"""Snakemake adapter: figures/lds.pdf and .png."""
from dabench.figures import write_lds_figure
from dabench.runtime import job

with job(snakemake) as smk:
    write_lds_figure(smk.input.csv, smk.output.pdf, smk.output.png)
