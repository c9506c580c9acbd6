"""Snakemake adapter: counterfactual medians per method and distances per query."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.counterfactual_report import method_labels, write_counterfactual_tables

    p, out = smk.params, smk.output
    write_counterfactual_tables(p.results, method_labels(p.methods), p.embedder,
                                getattr(smk.input, "classifier", None), out.csv, out.tex,
                                out.per_query)
