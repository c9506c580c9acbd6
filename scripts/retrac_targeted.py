"""Snakemake adapter: targeted attribution (distinct top-k proportion) for every method."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.retrac_report import write_targeted

    paths = {tuple(key): path for key, path in zip(smk.params.score_keys, smk.input.scores)}
    write_targeted(smk.params.methods, paths, smk.params.ks, smk.params.n_queries,
                   smk.params.seed, smk.output.csv, smk.output.tex)
