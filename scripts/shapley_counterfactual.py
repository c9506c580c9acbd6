"""Snakemake adapter: retrain without one attribution's top groups (or on all: ``full``)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.shapley import run_counterfactual

    p, i = smk.params, smk.input
    run_counterfactual(smk.wildcards.cf_key, int(smk.wildcards.cf_part), i.get("attributions"),
                       i.train, i.design, i.classifier, i.reference, p.model, p.generation,
                       p.recipe, p.cfg, p.seed, smk.output.result, p.partial)
