"""Snakemake adapter: train the full model θ_D (checkpoints + training log)."""
from pathlib import Path

from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.training import train_full_model

    train_full_model(smk.input.train, smk.params.model, smk.params.recipe, smk.params.seed,
                     smk.output.model, smk.output.training_log, Path(smk.output.model).parent / "checkpoints",
                     smk.params.resume)
