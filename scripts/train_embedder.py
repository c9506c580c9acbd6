"""Snakemake adapter: train the classifier embedder on the training set."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.embedding import write_classifier

    write_classifier(smk.input.train, smk.input.validation, smk.params.embedder, smk.params.seed,
                     smk.output.model)
