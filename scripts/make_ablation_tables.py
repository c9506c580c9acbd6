"""Snakemake adapter: tables/ablations.csv (+ .tex) and tables/lambda.csv."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.tables import write_ablation_tables

    write_ablation_tables(list(smk.input.records), list(smk.input.sidecars), smk.params.ablations,
                          smk.output.csv, smk.output.tex, smk.output.lambda_csv)
