"""Snakemake adapter: LDS of one method on every query set (test subsets)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.lds import evaluate_scores

    for qs, scores, outputs, record in zip(smk.params.query_sets, smk.input.scores,
                                           smk.input.outputs, smk.output.records):
        evaluate_scores(scores, smk.input.subsets, outputs, smk.wildcards.method_id,
                        smk.params.method, qs, "test", smk.params.lds, smk.params.seed, record)
