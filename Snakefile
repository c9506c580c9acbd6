# dabench: benchmarking data attribution methods for diffusion models.
#
#   snakemake --cores 2                         the embedded default (config.yaml)
#   snakemake --cores 2 --configfile configs/ci.yaml
#
# Everything a run produces lives under results/<config name>/ (docs/computation.md §9), logs under
# logs/<name>/.
#
# Rule priorities order the ready jobs for the scheduler (higher first): 40 for the chain that
# gates the long retrains (data, full model, generated queries), 20 for the long retrains (LDS,
# counterfactual, Shapley submodels), 10-15 for featurization and the ReTrac analyses, 5 for
# scores, 0 for the short tables and figures. Without them the default run left a core idle for
# ~14 of its 92 core-minutes (the LDS retrains waited 10 minutes for the generated queries,
# the counterfactual retrains ran one after another at the end).

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


# The companion run (config key companion, e.g. the default's latent experiment): this same
# workflow as a Snakemake module with the companion's config, its rules renamed companion_*, its
# results under results/<its name>/. One DAG: its jobs share the cores (or the cluster) with
# these, and `snakemake -n` plans both. A list of companions chains: the first companion's module
# has the others as its own companion (rules companion_companion_*, ...).
if COMPANION:

    module companion:
        snakefile:
            "Snakefile"
        config:
            COMPANION

    use rule * from companion as companion_*


# Rules whose work takes seconds (LDS, tables, figures) say `localrule: True`: they run where
# snakemake runs, never as cluster jobs (a `use rule ... as` copy says it again).


rule all:
    default_target: True
    input:
        final_outputs(),
        rules.companion_all.input if COMPANION else [],
    localrule: True


# Local inputs (data folders, a CLIP folder) are checked once the plan is made, before any job
# runs or is queued on a cluster (a dry run does not check them).
onstart:
    missing = dabench_config.missing_paths(config, RUN)
    for other in COMPANIONS:
        missing += dabench_config.missing_paths(other, f"results/{other['name']}")
    if missing:
        raise WorkflowError("missing inputs:\n  " + "\n  ".join(missing))
    # Jobs on this machine fork from an interpreter that has imported torch and diffusers
    # (dabench/warm.py; DABENCH_WARM=0 turns it off). Never for cluster jobs.
    if workflow.local_exec:
        from dabench import warm

        warm.start()


onsuccess:
    from dabench import warm
    from dabench.tables import summary

    warm.stop()
    print(summary(RUN))
    for other in COMPANIONS:
        print(summary(f"results/{other['name']}"))


onerror:
    from dabench import warm

    warm.stop()
