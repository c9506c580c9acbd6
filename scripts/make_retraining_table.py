"""Snakemake adapter: the retraining-based methods' table and figure (D-TRAK Tables 7-8)."""
from dabench.figures import write_retraining_figure
from dabench.runtime import job
from dabench.tables import write_retraining_table

with job(snakemake) as smk:
    out = smk.output
    write_retraining_table(smk.input.records, out.csv, out.tex)
    write_retraining_figure(out.csv, out.pdf, out.png)
