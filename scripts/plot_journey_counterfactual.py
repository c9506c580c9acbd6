"""Snakemake adapter: the counterfactual at a sampling step, box plots and image grid."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.counterfactual_report import journey_labels, write_journey_figures

    write_journey_figures(smk.input.per_query, smk.params.results,
                          journey_labels(smk.params.methods), smk.output.box, smk.output.grid)
