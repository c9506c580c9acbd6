"""Snakemake adapter: magnitude-prune the full model and fine-tune it on D to recover."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.shapley import write_pruned

    p = smk.params
    # The sidecar (pruned.json, an output too) records ratio, parameter counts and seconds.
    write_pruned(smk.input.full, smk.input.train, p.model, p.recipe, p.ratio, p.seed,
                 smk.output.pruned)
