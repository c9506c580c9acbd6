"""Snakemake adapter: attribution scores of one method on one query set."""
from dabench.methods import compute_scores
from dabench.runtime import job

with job(snakemake) as smk:
    compute_scores(smk.wildcards.method_id, smk.params.method, smk.wildcards.query_set,
                   dict(smk.input.items()), smk.output.scores)
