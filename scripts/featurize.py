"""Snakemake adapter: gradient features of the training set and the query sets."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.features import write_features
    from dabench.layout import resolve_weights, split_key

    model = resolve_weights(smk.input.model, smk.wildcards.model)
    for split, images, out in zip(smk.params.splits, smk.input.images, smk.output.features):
        write_features(model, smk.params.model, images, split_key(split), split,
                       smk.wildcards.feature_id, smk.params.seed, out,
                       training_log_path=getattr(smk.input, "training_log", None),
                       trajectory_path=getattr(smk.input, "trajectory", None))
