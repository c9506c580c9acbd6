"""Snakemake adapter: the Diffusion-ReTrac figures from their tables."""
from pathlib import Path

from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.figures import write_retrac_figures

    tables = dict(smk.input.items())
    figures = {}
    for path in smk.output:
        name = Path(path).stem.removeprefix("retrac_")
        figures.setdefault(name, [None, None])[path.endswith(".png")] = path
    write_retrac_figures(tables, figures)
