"""Snakemake adapter: one method's scores of the generated samples aggregated to groups."""
from dabench.methods import build
from dabench.runtime import job
from dabench.shapley import write_baseline

with job(snakemake) as smk:
    method = build(smk.params.entry)
    label = f"{method.label} ({method.variant})" if method.variant else method.label
    write_baseline(smk.input.design, smk.input.scores, smk.wildcards.method_id, label,
                   method.family, smk.output.json)
