"""Snakemake adapter: tables/lds.csv and tables/lds.tex."""
from dabench.runtime import job
from dabench.tables import write_lds_table

with job(snakemake) as smk:
    write_lds_table(list(smk.input.records), smk.output.csv, smk.output.tex)
