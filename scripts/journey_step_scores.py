"""Snakemake adapter: per-step Journey-TRAK scores of the counterfactual's queries."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.journey_counterfactual import write_step_scores

    p = smk.params
    write_step_scores(smk.input.model, p.model, smk.input.generation, smk.input.trajectory,
                      smk.input.train_features, smk.input.sidecar, p.plan["queries"],
                      p.plan["timesteps"], p.plan["n_noises"], p.seed, smk.output.scores)
