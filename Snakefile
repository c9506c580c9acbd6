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


# Reductions that take seconds run where snakemake runs, not as cluster jobs.
localrules:
    all,
    draw_lds_subsets,
    collect_lds_outputs,
    compute_lds_ceiling,
    evaluate_lds,
    make_lds_table,
    plot_lds,
    make_ablation_tables,
    plot_ablations,
    retrac_targeted,
    retrac_outlier_tables,
    plot_retrac,
    draw_datamodel_subsets,
    counterfactual_tables,
    plot_counterfactual,
    make_retraining_table,
    shapley_design,
    shapley_values,
    shapley_baseline,
    shapley_tables,
    plot_proponents,
    plot_outlier_proponents,
    plot_self_influence,
    plot_outlier_self_influence,
    cost_accounting,
    report_tables,


rule all:
    input:
        final_outputs(),
    default_target: True


onsuccess:
    from dabench.tables import summary

    print(summary(RUN))
