"""Snakemake adapter: tables/ablations.csv (+ .tex) and tables/lambda.csv."""
from dabench.runtime import job
from dabench.tables import write_ablation_tables

with job(snakemake) as smk:
    write_ablation_tables(list(smk.input.records), list(smk.input.sidecars), smk.params.ablations,
                          smk.output.csv, smk.output.tex, smk.output.lambda_csv)
