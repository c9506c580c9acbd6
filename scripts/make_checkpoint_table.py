"""Snakemake adapter: tables/checkpoint_selection.csv (+ .tex)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.tables import write_checkpoint_table

    write_checkpoint_table(list(smk.input.records), smk.params.config, smk.output.csv,
                           smk.output.tex)
