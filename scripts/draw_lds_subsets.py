"""Snakemake adapter: the tune and test subset families."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.lds import write_subsets

    p, out = smk.params, smk.output
    write_subsets(p.n_train, {"alpha": p.alpha, "tune": p.tune, "test": p.test}, p.seed,
                  {"tune": out.tune, "test": out.test},
                  {"tune": out.tune_index, "test": out.test_index})
