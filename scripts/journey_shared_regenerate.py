"""Snakemake adapter: a counterfactual model resumed at each timestep's sampling step."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.journey_counterfactual import run_shared_regeneration

    p = smk.params
    run_shared_regeneration(smk.input.model, smk.input.generation, smk.input.trajectory,
                            int(smk.wildcards.query), p.timesteps, p.model, p.generation,
                            list(smk.output.results))
