"""Snakemake adapter: DDIM generation set with trajectories."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.sampling import write_generation_set

    write_generation_set(smk.input.model, smk.params.model, smk.params.generation,
                         smk.params.seed, smk.output.samples,
                         smk.output.trajectory, train_path=smk.input.train)
