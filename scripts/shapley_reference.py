"""Snakemake adapter: clusters of the full model's samples; F of the full and untrained models."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.shapley import write_reference

    p = smk.params
    write_reference(smk.input.full, smk.input.classifier, p.model, p.generation, p.cfg, p.seed,
                    smk.output.reference, smk.output.json, smk.input.train)
