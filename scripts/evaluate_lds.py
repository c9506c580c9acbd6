"""Snakemake adapter: LDS of one method on one query set (test subsets)."""
from dabench.lds import evaluate_scores
from dabench.runtime import job

with job(snakemake) as smk:
    evaluate_scores(smk.input.scores, smk.input.subsets, smk.input.outputs, smk.wildcards.method_id,
                    smk.params.method, smk.wildcards.query_set, "test", smk.params.lds,
                    smk.params.seed, smk.output.record)
