"""Snakemake adapter: attribution scores of one method on every query set."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.methods import build, compute_scores

    method = build(smk.params.method)        # one instance: the training side is prepared once
    for qs, scores in zip(smk.params.query_sets, smk.output.scores):
        inputs = {k.split(":", 1)[1]: v for k, v in smk.input.items() if k.startswith(qs + ":")}
        compute_scores(smk.wildcards.method_id, smk.params.method, qs, inputs, scores, method)
