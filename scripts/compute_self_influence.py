"""Snakemake adapter: self-influence of every training example under one checkpoint method."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.methods import compute_self_influence

    inputs = {k: v for k, v in smk.input.items()}
    compute_self_influence(smk.wildcards.method_id, smk.params.method, inputs, smk.output.values)
