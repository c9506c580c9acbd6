"""Snakemake adapter: groups ranked by their own training images' quality score (no model)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.shapley import write_training_score

    write_training_score(smk.input.design, smk.input.train, smk.input.classifier,
                         smk.params.aesthetic, smk.output.json)
