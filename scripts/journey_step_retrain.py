"""Snakemake adapter: per-step Journey-TRAK at one (query, timestep): remove, retrain, resume."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.journey_counterfactual import run_step_retrain

    p, wc = smk.params, smk.wildcards
    run_step_retrain(smk.input.train, smk.input.generation, smk.input.trajectory,
                     smk.input.scores, int(wc.query), int(wc.jtimestep), p.fraction, p.model,
                     p.recipe, p.generation, p.seed, smk.output.result, p.resume)
