"""Snakemake adapter: train the classifier embedder on the training set."""
from dabench.embedding import write_classifier
from dabench.runtime import job

with job(snakemake) as smk:
    write_classifier(smk.input.train, smk.input.validation, smk.params.embedder, smk.params.seed,
                     smk.output.model)
