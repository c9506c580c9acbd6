"""Snakemake adapter: draw the training set D and the validation queries."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.data import write_dataset

    out = smk.output
    write_dataset(smk.params.data, smk.params.seed, out.train, out.validation, out.info,
                  out.train_index, out.validation_index, latent=smk.params.latent)
