"""Snakemake adapter: one method's scores of the generated samples aggregated to groups."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.methods import build
    from dabench.naming import display_name
    from dabench.shapley import write_baseline

    method = build(smk.params.entry)
    write_baseline(smk.input.design, smk.input.scores, smk.wildcards.method_id,
                   display_name(method.label, method.variant),
                   method.family, smk.output.json)
