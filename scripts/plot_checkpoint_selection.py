"""Snakemake adapter: figures/checkpoint_selection.pdf and .png."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.figures import write_checkpoint_figure

    write_checkpoint_figure(smk.input.csv, smk.output.pdf, smk.output.png)
