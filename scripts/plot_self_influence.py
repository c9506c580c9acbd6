"""Snakemake adapter: the highest / lowest self-influence grid (figures/self_influence.pdf and
.png, or the outlier experiment's, with the outliers framed)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.examples import write_self_influence_figure

    write_self_influence_figure(smk.input.train, dict(zip(smk.params.methods, smk.input.values)),
                                smk.params.k, smk.output.pdf, smk.output.png,
                                mark_outliers=smk.params.mark_outliers)
