"""Snakemake adapter: figures/ablations.pdf and .png."""
from dabench.figures import write_ablation_figure
from dabench.runtime import job

with job(snakemake) as smk:
    write_ablation_figure(smk.input.csv, smk.input.lambda_csv, smk.output.pdf, smk.output.png)
