"""Snakemake adapter: the counterfactual at a sampling step, medians per (method, timestep)."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.counterfactual_report import journey_labels, write_journey_tables

    p, out = smk.params, smk.output
    write_journey_tables(p.results, journey_labels(p.methods), p.embedder,
                         getattr(smk.input, "classifier", None), out.csv, out.tex, out.per_query)
