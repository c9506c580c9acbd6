"""Snakemake adapter: one job of LDS retrains (several retrains, one process)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.lds import run_retrain_job

    p = smk.params
    run_retrain_job(smk.input.train, smk.input.subsets, {qs: smk.input[qs] for qs in p.query_sets},
                    smk.wildcards.family, int(smk.wildcards.chunk), p.n_seeds, p.per_job, p.model,
                    p.recipe, p.output, p.seed, smk.output.chunk, smk.output.models, p.partial,
                    p.save_models)
