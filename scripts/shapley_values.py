"""Snakemake adapter: KernelSHAP values of one way's submodels."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.shapley import write_way_values

    write_way_values(smk.input.design, smk.input.reference, list(smk.input.chunks),
                     smk.wildcards.way, smk.output.json)
