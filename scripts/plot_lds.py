"""Snakemake adapter: figures/lds.pdf and .png."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.figures import write_lds_figure

    write_lds_figure(smk.input.csv, smk.output.pdf, smk.output.png)
