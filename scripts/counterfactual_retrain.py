"""Snakemake adapter: one counterfactual (remove, retrain, regenerate)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.counterfactual import run_counterfactual

    p = smk.params
    run_counterfactual(smk.input.train, smk.input.generation, getattr(smk.input, "scores", None),
                       smk.wildcards.cf_method, int(smk.wildcards.query), p.fraction, p.model,
                       p.recipe, p.generation, p.seed, smk.output.result, smk.output.model,
                       p.resume)
