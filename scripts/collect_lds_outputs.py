"""Snakemake adapter: subsets × queries model outputs of one family."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.lds import write_family_outputs

    p = smk.params
    write_family_outputs(smk.input.chunks, p.n_subsets, p.n_seeds,
                         {qs: (m, s) for qs, m, s in zip(p.query_sets, smk.output.mean,
                                                         smk.output.per_seed)})
