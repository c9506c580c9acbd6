"""Snakemake adapter: the proponents / opponents grid (figures/proponents.pdf and .png, or the
outlier experiment's TracIn vs ReTrac grid)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.examples import write_proponents_figure

    write_proponents_figure(smk.input.train, smk.input.queries,
                            dict(zip(smk.params.methods, smk.input.scores)), smk.params.n_queries,
                            smk.params.k, smk.output.pdf, smk.output.png,
                            by_source=smk.params.by_source)
