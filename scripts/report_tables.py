"""Snakemake adapter: one HTML page per table of the run, for the HTML report."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.report import write_table_pages

    write_table_pages(smk.input.tables, smk.output[0])
