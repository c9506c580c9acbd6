"""Snakemake adapter: counterfactual box plot and image grid."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.counterfactual_report import method_labels, write_counterfactual_figures

    write_counterfactual_figures(smk.input.per_query, smk.params.results,
                                 method_labels(smk.params.methods), smk.output.box,
                                 smk.output.grid)
