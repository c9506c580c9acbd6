"""Snakemake adapter: outlier detection and image source tracing of the outlier experiment."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.retrac_report import write_outlier_tables

    p = smk.params
    write_outlier_tables(p.methods, dict(zip(p.self_methods, smk.input.self_influence)),
                         dict(zip(p.score_methods, smk.input.scores)), smk.input.train,
                         smk.input.validation, smk.input.info, p.outliers["top"],
                         p.outliers["source_k"], dict(smk.output.items()))
