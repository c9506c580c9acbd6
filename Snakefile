# dabench: benchmarking data attribution methods for diffusion models.
#
#   snakemake --cores 2                         the embedded default (config.yaml)
#   snakemake --cores 2 --configfile configs/ci.yaml
#
# Everything a run produces lives under results/<config name>/ (SPEC §9), logs under logs/<name>/.

import os

from snakemake.utils import min_version

min_version("9.0")


# A --configfile is complete on its own (on top of the schema's defaults): it replaces config.yaml
# rather than being merged into it, so a config lists exactly the methods it benchmarks.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/lds.smk"
include: "rules/attribution.smk"
include: "rules/evaluation.smk"
include: "rules/figures.smk"


rule all:
    input:
        run_path(layout.LDS_TABLE),
        run_path("tables/lds.tex"),
        run_path("figures/lds.pdf"),
        run_path("figures/lds.png"),
        expand(run_path("lds/{family}/{query_set}_outputs.npy"), family=["tune", "test"], query_set=QUERY_SETS),
    default_target: True


onsuccess:
    from dabench.tables import summary

    print(summary(RUN))
