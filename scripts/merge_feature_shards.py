"""Snakemake adapter: the training set's features joined from their shards."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.features import merge_shards

    merge_shards(list(smk.input.shards), smk.output.features)
