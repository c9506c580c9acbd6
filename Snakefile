# dabench: benchmarking data attribution methods for diffusion models.
#
#   snakemake --cores 2                         the embedded default (config.yaml)
#   snakemake --cores 2 --configfile configs/ci.yaml
#
# Everything a run produces lives under results/<config name>/ (docs/computation.md §9), logs under
# logs/<name>/.

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
include: "rules/features.smk"
include: "rules/attribution.smk"
include: "rules/evaluation.smk"
include: "rules/figures.smk"
include: "rules/retrac.smk"
include: "rules/embedding.smk"
include: "rules/counterfactual.smk"
include: "rules/shapley.smk"
include: "rules/report.smk"


# `make report` (snakemake --report): the figures with their captions, the tables, runtimes.
report: "report/workflow.rst"


# Rules whose work takes seconds (LDS, tables, figures) say `localrule: True`: they run where
# snakemake runs, never as cluster jobs (a `use rule ... as` copy says it again).


rule all:
    default_target: True
    input:
        final_outputs(),
    localrule: True


# Local inputs (data folders, a CLIP folder) are checked once the plan is made, before any job
# runs or is queued on a cluster (a dry run does not check them).
onstart:
    missing = dabench_config.missing_paths(config, RUN)
    if missing:
        raise WorkflowError("missing inputs:\n  " + "\n  ".join(missing))


onsuccess:
    from dabench.tables import summary

    print(summary(RUN))
