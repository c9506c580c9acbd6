"""Snakemake adapter: one job of group submodels (retrained, fine-tuned or sparsified FT)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.shapley import run_models

    p, wc, i = smk.params, smk.wildcards, smk.input
    run_models(wc.way, wc.sfamily, int(wc.chunk), p.per_job, i.train, i.design, i.full,
               i.get("pruned"), i.classifier, i.reference, p.model, p.generation, p.recipe, p.cfg,
               p.seed, smk.output.chunk, p.partial)
