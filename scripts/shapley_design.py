"""Snakemake adapter: groups, kernel subsets and held-out subsets of the group-Shapley branch."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.shapley import write_design

    write_design(smk.input.train, smk.params.cfg, smk.params.seed, smk.output.design,
                 smk.output.groups)
