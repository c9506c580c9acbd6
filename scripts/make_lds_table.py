"""Snakemake adapter: tables/lds.csv and tables/lds.tex."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.tables import write_lds_table

    write_lds_table(list(smk.input.records), smk.output.csv, smk.output.tex)
