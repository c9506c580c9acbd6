"""Snakemake adapter: one shard of the training set's gradient features."""
from pathlib import Path

from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.features import write_features
    from dabench.layout import resolve_weights, split_key

    write_features(resolve_weights(smk.input.model, smk.wildcards.model), smk.params.model,
                   smk.input.images, split_key("train"), "train", smk.wildcards.feature_id,
                   smk.params.seed, smk.output.features, run_dir=Path(smk.params.run),
                   shard=(int(smk.wildcards.shard), smk.params.n_shards))
