"""Snakemake adapter: figures/ablations.pdf and .png."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.figures import write_ablation_figure

    write_ablation_figure(smk.input.csv, smk.input.lambda_csv, smk.output.pdf, smk.output.png)
