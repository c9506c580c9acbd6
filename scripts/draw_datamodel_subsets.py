"""Snakemake adapter: the datamodel family's subsets (apart from the tune and test subsets)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.lds import write_datamodel_subsets

    p = smk.params
    write_datamodel_subsets(p.n_train, p.alpha, p.n, p.seed, list(smk.input.exclude),
                            smk.output.subsets, smk.output.index)
