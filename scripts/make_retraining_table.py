"""Snakemake adapter: the retraining-based methods' table and figure (D-TRAK Tables 7-8)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.figures import write_retraining_figure
    from dabench.tables import write_retraining_table

    out = smk.output
    write_retraining_table(smk.input.records, out.csv, out.tex)
    write_retraining_figure(out.csv, out.pdf, out.png)
