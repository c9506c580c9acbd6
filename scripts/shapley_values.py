"""Snakemake adapter: KernelSHAP values of one way's submodels."""
from dabench.runtime import job
from dabench.shapley import write_way_values

with job(snakemake) as smk:
    write_way_values(smk.input.design, smk.input.reference, list(smk.input.chunks),
                     smk.wildcards.way, smk.output.json)
