"""Snakemake adapter: embeddings of the training set and every query set."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.embedding import write_embeddings
    from dabench.layout import split_key

    splits = smk.params.splits
    write_embeddings(smk.params.embedder, getattr(smk.input, "classifier", None),
                     {s: (path, split_key(s)) for s, path in zip(splits, smk.input.images)},
                     dict(zip(splits, smk.output.embeddings)))
