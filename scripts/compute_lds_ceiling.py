"""Snakemake adapter: the retraining ceiling of one query set."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.lds import write_ceiling

    write_ceiling(smk.input.per_seed, smk.wildcards.query_set, smk.params.lds, smk.params.seed,
                  smk.output.record)
