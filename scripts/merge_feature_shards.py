"""Snakemake adapter: the training set's features joined from their shards."""
from dabench.features import merge_shards
from dabench.runtime import job

with job(snakemake) as smk:
    merge_shards(list(smk.input.shards), smk.output.features)
