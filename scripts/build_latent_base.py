"""Snakemake adapter: build the tiny latent base (embedded scale) the LoRA models fine-tune."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.training import write_latent_base

    p = smk.params
    write_latent_base(smk.output.base, p.latent, p.data, p.model, p.recipe, p.seed)
