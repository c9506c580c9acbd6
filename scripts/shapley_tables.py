"""Snakemake adapter: the group-Shapley tables and figures."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.shapley_report import write_tables

    i, p = smk.input, smk.params
    write_tables(i.design, i.reference, list(i.attributions), list(i.heldout), p.way_chunks,
                 i.pruned, p.counterfactual, p.cfg, p.bootstrap, p.seed, dict(smk.output))
