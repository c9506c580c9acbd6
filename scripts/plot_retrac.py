"""Snakemake adapter: the Diffusion-ReTrac figures from their tables."""
from pathlib import Path

from dabench.figures import write_retrac_figures
from dabench.runtime import job

with job(snakemake) as smk:
    tables = dict(smk.input.items())
    figures = {}
    for path in smk.output:
        name = Path(path).stem.removeprefix("retrac_")
        figures.setdefault(name, [None, None])[path.endswith(".png")] = path
    write_retrac_figures(tables, figures)
