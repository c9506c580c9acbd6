# Lookups and constraints shared by the rules. No science here: that lives in dabench/.

import re
import sys

# Jobs import dabench from this checkout whatever environment runs them (--sdm conda included):
# Snakemake puts scripts/ on a script's path, and scripts/dabench links to the package — no
# install, no path in an environment file that breaks when Snakemake copies it.
sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError

from dabench import config as dabench_config
from dabench import layout
from dabench import resources as dabench_resources
from dabench.ablations import ablation_methods
from dabench.checkpoint_selection import study_methods
from dabench import shapley as dabench_shapley
from dabench.lds import n_chunks, scored_methods
from dabench.methods import build as build_method
from dabench.config import (
    checkpoint_method_ids,
    counterfactual_methods,
    outlier_data_config,
    proponent_methods,
    retrac_methods,
    shapley_plan,
)
from dabench.counterfactual import RANDOM, choose_queries
from dabench.features import feature_id_pattern

try:
    dabench_config.validate(config)
except dabench_config.ConfigError as err:
    raise WorkflowError(str(err)) from None

# Another complete config run in this workflow (config key companion; rules companion_*). A list
# of companions chains: the first one runs the rest as its own companions.
try:
    COMPANION = dabench_config.companion_config(config)
    COMPANIONS = dabench_config.companion_chain(config)
except dabench_config.ConfigError as err:
    raise WorkflowError(str(err)) from None

RUN = f"results/{config['name']}"
LOGS = f"logs/{config['name']}"
# The model section every training / sampling job reads (a latent model's: with its base folder).
MODEL = dabench_config.model_section(config, RUN)
BASE = dabench_config.base_folder(config, RUN)
# ... when the workflow builds it (embedded scale; a named latent.base is checked at start-up).
BUILT_BASE = BASE if BASE and not config["latent"]["base"] else None
QUERY_SETS = config["lds"]["query_sets"]
# Software of every rule, for cluster users running with --sdm conda (paths relative to rules/).
CONDA_ENV = "../envs/dabench.yaml"
CONDA_GPU_ENV = "../envs/dabench-gpu.yaml"  # the GPU rules: CUDA torch, traker
METHOD_IDS = sorted(config["methods"])
ABLATIONS = ablation_methods(config["ablations"])
# The splits featurize computes (the training set is sharded when features.train_shards > 1).
TRAIN_SHARDS = config["features"]["train_shards"]
FEATURIZE_SPLITS = (["train"] if TRAIN_SHARDS == 1 else []) + QUERY_SETS
# D-TRAK's checkpoint selection study: method entries with features from a checkpoint.
try:
    CHECKPOINT_STUDY = study_methods(config)
except ValueError as err:
    raise WorkflowError(str(err)) from None
CHECKPOINT_STUDY_BASES = sorted({s["base"] for s in CHECKPOINT_STUDY.values()})
# Every scored method: the benchmarked ones, the ablation settings and the checkpoint study's.
ALL_METHODS = scored_methods(config)
# The query sets each method attributes (Journey-TRAK: generated queries only).
METHOD_QUERY_SETS = {
    m: [qs for qs in QUERY_SETS if build_method(e).covers(qs)] for m, e in ALL_METHODS.items()
}
# Methods that run the model in their scoring job (uses_model: curvature, unlearning, DAS): a GPU
# job, rule compute_model_scores.
MODEL_METHODS = sorted(m for m, e in ALL_METHODS.items() if build_method(e).uses_model)
FULL_METHODS = sorted(m for m, sets in METHOD_QUERY_SETS.items() if sets == QUERY_SETS)
GENERATION_ONLY = sorted(m for m, sets in METHOD_QUERY_SETS.items() if sets == ["generation"])
# (method, query set) of every benchmarked score file.
SCORED = [(m, qs) for m in METHOD_IDS for qs in METHOD_QUERY_SETS[m]]
# The datamodel family of retrains (Empirical influence, Datamodels, ensemble members).
DATAMODEL = config["lds"]["datamodel"]
EMBEDDER = config["embedder"]
# Counterfactual evaluation: the methods whose influencers are removed, plus the random control,
# and the generated queries (None / [] when it does not run).
COUNTERFACTUAL = counterfactual_methods(config)
CF_METHODS = [RANDOM] + COUNTERFACTUAL if COUNTERFACTUAL else []
CF_QUERIES = (
    choose_queries(
        config["generation"]["n_samples"], config["counterfactual"]["n_queries"], config["seed"]
    )
    if COUNTERFACTUAL
    else []
)
# The counterfactual at a sampling step (D-TRAK Appendix E): timesteps, the counterfactual's
# queries, the shared methods (their counterfactual models reused, the random control first) and
# the journey-trak method, or None.
JOURNEY_CF = dabench_config.journey_counterfactual_plan(config)
if JOURNEY_CF:
    JOURNEY_CF = {**JOURNEY_CF, "queries": CF_QUERIES, "shared": CF_METHODS}
# Group Shapley (docs/computation.md §7): {"baselines": method ids, "counterfactual": attribution
# keys} or None.
SHAPLEY = shapley_plan(config)
SHAPLEY_WAYS = list(dabench_shapley.WAYS)
shapley_recipes = dabench_shapley.recipes(config)

# The proponents / opponents grid: its methods ([] = no grid) and query set.
PROPONENTS = proponent_methods(config)
PROPONENT_SET = config["figures"]["proponents"]["query_set"]

# Diffusion-ReTrac analyses: (tracin id, retrac id) or None; the checkpoint methods; the outlier
# experiment's data section (None = not run). Its run folder mirrors this one's layout.
RETRAC = retrac_methods(config)
CHECKPOINT_METHODS = checkpoint_method_ids(config)
SELF_INFLUENCE_METHODS = [
    m for m in METHOD_IDS if build_method(config["methods"][m]).has_self_influence
]
OUTLIER_DATA = outlier_data_config(config)
OUT = f"{RUN}/{layout.OUTLIER_RUN}"
# Where outlier detection and source tracing read from: this run when its data has outliers
# (e.g. configs/paper/outliers.yaml), else the separate outlier experiment.
OUTLIER_ROOT = RUN if config["data"]["outliers"] else OUT
OUTLIER_TABLES = bool(RETRAC) and bool(config["data"]["outliers"] or OUTLIER_DATA)
if RETRAC and config["retrac"]["query_set"] not in QUERY_SETS:
    raise WorkflowError(
        f"config key retrac.query_set: {config['retrac']['query_set']!r} is not one of "
        f"lds.query_sets {QUERY_SETS}"
    )
if ABLATIONS and config["ablations"]["query_set"] not in QUERY_SETS:
    raise WorkflowError(
        f"config key ablations.query_set: {config['ablations']['query_set']!r} is not one of "
        f"lds.query_sets {QUERY_SETS}"
    )


wildcard_constraints:
    family="tune|test|datamodel",
    sfamily="kernel|heldout",
    way="retrain|finetune|sparse",
    cf_key=r"[^/]+?",
    cf_part=r"\d+",
    chunk=r"\d+",
    query_set="|".join(layout.QUERY_SETS),
    split="|".join(layout.SPLITS),
    model=r"full|step\d{6}|dm\d{4}",
    feature_id=feature_id_pattern("any"),
    cf_method="|".join(map(re.escape, CF_METHODS)) or "NO_METHOD",
    jtimestep=r"\d{4}",
    query=r"\d{4}",
    method_id="|".join(map(re.escape, sorted(ALL_METHODS))) if ALL_METHODS else "NO_METHOD",


def resources_of(name):
    """A rule's resources — gpu, mem_mb, runtime, disk_mb — derived from the config by
    dabench.resources (the same numbers `make plan` prints); more memory on each retry."""
    return dabench_resources.rule_resources(name, config)


def threads_of(name):
    return dabench_resources.rule_threads(name, config)


def one_of(ids):
    """A wildcard constraint matching exactly these ids."""
    return "|".join(map(re.escape, sorted(ids))) or "NO_METHOD"


def run_path(relative):
    """A path inside this run's results folder."""
    return f"{RUN}/{relative}"


def out_path(relative):
    """A path inside the outlier experiment's run folder (results/<name>/outliers/)."""
    return f"{OUT}/{relative}"


def model_input(root):
    """Input function: the weights of the {model} wildcard — the full model or a checkpoint file,
    or for a datamodel-family model (dmNNNN) the folder of the retrain job that saved it."""

    def weights(wc):
        j = layout.member_index(wc.model)
        if j is None:
            return f"{root}/{layout.model_file(wc.model)}"
        chunk = j * DATAMODEL["n_seeds"] // config["lds"]["retrains_per_job"]
        return f"{root}/{layout.retrain_dir(layout.DATAMODEL, chunk)}"

    return weights


def log_path(name):
    return f"{LOGS}/{name}.log"


def bench_path(name):
    return run_path(layout.benchmark(name))


def figure(name, category):
    """The PNG of figures/<name>, marked for the HTML report (`make report`) with the caption
    report/<name>.rst (which says which figure of which paper it is)."""
    return report(
        run_path(layout.figure(name, "png")), caption=f"../report/{name}.rst", category=category
    )


def query_inputs(wildcards=None):
    """The query-set files the LDS retrains evaluate f(x; θ) on."""
    return {qs: run_path(layout.query_file(qs)) for qs in QUERY_SETS}


def lds_chunk_files(wildcards):
    fam = config["lds"][wildcards.family]
    count = n_chunks(fam["n_subsets"], fam["n_seeds"], config["lds"]["retrains_per_job"])
    return [run_path(layout.lds_chunk(wildcards.family, c)) for c in range(count)]


def method_inputs(wildcards):
    """The artefacts a method reads on each query set, as the method itself declares them
    (named "<query set>:<name>")."""
    method = build_method(ALL_METHODS[wildcards.method_id])
    return {
        f"{qs}:{name}": run_path(p)
        for qs in METHOD_QUERY_SETS[wildcards.method_id]
        for name, p in method.inputs(qs).items()
    }


def outlier_method_inputs(wildcards):
    """As method_inputs, for the outlier experiment: its validation queries only."""
    method = build_method(config["methods"][wildcards.method_id])
    return {f"validation:{n}": out_path(p) for n, p in method.inputs("validation").items()}


def self_influence_inputs(root):
    return lambda wc: {
        name: f"{root}/{p}"
        for name, p in build_method(config["methods"][wc.method_id]).self_inputs().items()
    }


def embedder_inputs(wildcards=None):
    """What embedding needs beyond the images: the trained classifier (none for CLIP, which is
    read from embedder.path)."""
    if EMBEDDER["kind"] == "classifier":
        return {"classifier": run_path(layout.EMBEDDER_MODEL)}
    return {}


def counterfactual_result(method_id, query):
    return run_path(layout.counterfactual_result(method_id, query))


def counterfactual_results(wildcards=None):
    return {m: [counterfactual_result(m, q) for q in CF_QUERIES] for m in CF_METHODS}


def counterfactual_scores(wildcards):
    """The generation scores a counterfactual removes by (none for the random control)."""
    if wildcards.cf_method == RANDOM:
        return {}
    return {"scores": run_path(layout.scores(wildcards.cf_method, "generation"))}


def counterfactual_outputs():
    if not COUNTERFACTUAL:
        return []
    tables = [run_path(layout.table("counterfactual", ext)) for ext in ("csv", "tex")]
    tables.append(run_path(layout.table("counterfactual_per_query")))
    figures = [
        run_path(layout.figure(f"counterfactual_{n}", ext))
        for n in ("box", "grid")
        for ext in ("pdf", "png")
    ]
    return tables + figures


def journey_results(wildcards=None):
    """method id -> result files of every (query, timestep) of the counterfactual at a step."""
    from dabench.journey_counterfactual import JOURNEY_STEP

    if not JOURNEY_CF:
        return {}
    return {
        m: [
            run_path(layout.journey_result(m, q, t))
            for q in JOURNEY_CF["queries"]
            for t in JOURNEY_CF["timesteps"]
        ]
        for m in JOURNEY_CF["shared"] + [JOURNEY_STEP]
    }


def journey_step_inputs(wildcards=None):
    """The journey-trak method's training features and its generation scores' sidecar (λ)."""
    method_id = JOURNEY_CF["journey"]
    method = build_method(config["methods"][method_id])
    return {
        "train_features": run_path(method.inputs("generation")["train_features"]),
        "sidecar": run_path(layout.scores_sidecar(method_id, "generation")),
    }


def journey_outputs():
    if not JOURNEY_CF:
        return []
    out = [run_path(layout.table("journey_counterfactual", e)) for e in ("csv", "tex")]
    out.append(run_path(layout.table("journey_counterfactual_per_query")))
    out += [
        run_path(layout.figure(f"journey_counterfactual_{n}", e))
        for n in ("box", "grid")
        for e in ("pdf", "png")
    ]
    return out


def retrac_outputs():
    """Tables and figures of the Diffusion-ReTrac analyses (empty when they do not run)."""
    if not RETRAC:
        return []
    names = [
        "retrac_norms",
        "retrac_single_example",
        "retrac_correlation",
        "retrac_manipulation",
        "retrac_targeted",
    ]
    if OUTLIER_TABLES:
        names += ["retrac_outliers", "retrac_source_tracing"]
    tables = [run_path(layout.table(n, ext)) for n in names for ext in ("csv", "tex")]
    tables += [
        run_path(layout.table(f"retrac_{n}_points")) for n in ("correlation", "manipulation")
    ]
    figures = [run_path(layout.figure(n, ext)) for n in names for ext in ("pdf", "png")]
    return tables + figures


def retrac_checkpoints(root):
    """step -> checkpoint file, for the checkpoints the analysed Diffusion-TracIn uses."""
    steps = config["methods"][RETRAC[0]]["checkpoints"] if RETRAC else []
    return {s: f"{root}/{layout.checkpoint(s)}" for s in steps}


def replay_norms(wildcards=None):
    """Exact norms of the analysed Diffusion-TracIn's replayed training gradients, per checkpoint."""
    method = build_method(config["methods"][RETRAC[0]])
    return {
        f"replay_norms_{s}": run_path(
            layout.feature_norms(layout.checkpoint_name(s), method.train_spec.id, "train")
        )
        for s in method.checkpoints
    }


def manipulation_inputs(wildcards=None):
    """Inputs of both analysed methods on retrac.query_set, named "<i>:<name>", plus scores."""
    qs = config["retrac"]["query_set"]
    out = {}
    for i, method_id in enumerate(RETRAC or ()):
        method = build_method(config["methods"][method_id])
        out.update({f"{i}:{k}": run_path(v) for k, v in method.inputs(qs).items()})
        out[f"{i}:scores"] = run_path(layout.scores(method_id, qs))
    return out


def retrac_figure_inputs(wildcards=None):
    names = [
        "norms",
        "single_example",
        "correlation",
        "correlation_points",
        "manipulation",
        "manipulation_points",
        "targeted",
    ]
    if OUTLIER_TABLES:
        names += ["outliers", "source_tracing"]
    # The LDS table picks each family's best method for the targeted-attribution figure.
    return {
        **{n: run_path(layout.table(f"retrac_{n}")) for n in names},
        "lds": run_path(layout.LDS_TABLE),
    }


def lds_records(wildcards=None):
    records = [run_path(layout.lds_result(m, qs)) for m, qs in SCORED]
    if config["lds"]["test"]["n_seeds"] >= 2:
        records += [run_path(layout.lds_result("ceiling", qs)) for qs in QUERY_SETS]
    return records


def ablation_records(wildcards=None):
    return [run_path(layout.lds_result(m, qs)) for m in ABLATIONS for qs in METHOD_QUERY_SETS[m]]


def checkpoint_records(wildcards=None):
    """LDS records of the checkpoint study's methods and of the methods it studies (their final
    checkpoint)."""
    ids = list(CHECKPOINT_STUDY) + config["checkpoint_selection"]["methods"]
    return [run_path(layout.lds_result(m, qs)) for m in ids for qs in METHOD_QUERY_SETS[m]]


def retraining_records(wildcards=None):
    """LDS records of the methods with several retrained models and of the single-model methods
    the ensembles average (their reference rows): a change elsewhere leaves the table alone."""
    multi = [m for m in METHOD_IDS if build_method(config["methods"][m]).n_models is not None]
    singles = {build_method(config["methods"][m]).single for m in multi}
    refs = [m for m in METHOD_IDS if config["methods"][m]["method"] in singles]
    return [run_path(layout.lds_result(m, qs)) for m in multi + refs for qs in METHOD_QUERY_SETS[m]]


def lambda_sidecars(wildcards=None):
    """Scores sidecars of the methods that chose λ on the tune subsets."""
    return [
        run_path(layout.scores_sidecar(m, qs))
        for m, qs in SCORED
        if build_method(config["methods"][m]).tunes_lambda
    ]


def final_outputs():
    """Everything a run makes by default: the results and the report's table pages."""
    return result_outputs() + [run_path("report_tables")]


def report_table_inputs(wildcards=None):
    """The run's tables (CSV) that the report shows as pages."""
    return [t for t in result_outputs() if t.startswith(run_path("tables")) and t.endswith(".csv")]


def result_outputs():
    targets = [
        run_path(layout.LDS_TABLE),
        run_path(layout.table("lds", "tex")),
        run_path(layout.figure("lds")),
        run_path(layout.figure("lds", "png")),
    ]
    targets += [run_path(layout.lds_outputs(f, qs)) for f in ("tune", "test") for qs in QUERY_SETS]
    if ABLATIONS:
        targets += [run_path(layout.table("ablations", ext)) for ext in ("csv", "tex")]
        targets += [run_path(layout.figure("ablations", ext)) for ext in ("pdf", "png")]
    if lambda_sidecars():
        targets.append(run_path(layout.table("lambda")))
    if CHECKPOINT_STUDY:
        targets += [run_path(layout.table("checkpoint_selection", e)) for e in ("csv", "tex")]
        targets += [run_path(layout.figure("checkpoint_selection", e)) for e in ("pdf", "png")]
    targets += [run_path(layout.self_influence(m)) for m in SELF_INFLUENCE_METHODS]
    if retraining_records():
        targets += [run_path(layout.table("retraining", ext)) for ext in ("csv", "tex")]
        targets += [run_path(layout.figure("retraining", ext)) for ext in ("pdf", "png")]
    targets += retrac_outputs()
    targets += counterfactual_outputs()
    targets += journey_outputs()
    targets += shapley_outputs()
    targets += [run_path(layout.table("cost", ext)) for ext in ("csv", "tex")]
    targets += [run_path(layout.figure("cost", ext)) for ext in ("pdf", "png")]
    names = (["proponents"] if PROPONENTS else []) + (
        ["self_influence"] if SELF_INFLUENCE_METHODS else []
    )
    if OUTLIER_TABLES:
        names += ["retrac_outlier_proponents", "retrac_outlier_self_influence"]
    targets += [run_path(layout.figure(n, ext)) for n in names for ext in ("pdf", "png")]
    return targets


def shapley_cfg(*keys, **extra):
    """The keys of the shapley section a job reads: params changes rerun only what they touch."""
    return {**{k: config["shapley"][k] for k in keys}, **extra}


def shapley_chunks(family, way):
    """Chunk files of the kernel submodels of ``way`` or of the held-out retrains."""
    n = dabench_shapley.n_chunks(config["shapley"], family, way)
    return [run_path(layout.shapley_chunk(family, way, c)) for c in range(n)]


def shapley_way_chunks(wildcards=None):
    return {way: shapley_chunks("kernel", way) for way in SHAPLEY_WAYS}


def shapley_submodel_inputs(wildcards):
    """What a submodel job starts from: the pruned model for sparsified fine-tuning."""
    return {"pruned": run_path(layout.SHAPLEY_PRUNED)} if wildcards.way == "sparse" else {}


def shapley_cf_inputs(wildcards):
    """The removal ranking comes from the attributions (the ``full`` reference needs none)."""
    if wildcards.cf_key == "full":
        return {}
    return {"attributions": run_path(layout.shapley_attribution(wildcards.cf_key))}


def shapley_attribution_files(wildcards=None):
    """Every group attribution: the Shapley values of each way, each aggregated baseline, and the
    training images' score (both aggregations in one file, named by .mean)."""
    keys = [f"shapley-{w}" for w in SHAPLEY_WAYS] + [f"{m}.mean" for m in SHAPLEY["baselines"]]
    keys += [f"{layout.TRAINING_SCORE}.mean"] if SHAPLEY["training_score"] else []
    return [run_path(layout.shapley_attribution(k)) for k in keys]


def shapley_counterfactual_results(wildcards=None):
    """Each group counterfactual's result files, one per job of its seeds."""
    keys = ["full"] + SHAPLEY["counterfactual"]
    parts = range(len(dabench_shapley.counterfactual_parts(config["shapley"])))
    return {k: [run_path(layout.shapley_counterfactual(k, c)) for c in parts] for k in keys}


SHAPLEY_OUTPUTS = {
    "lds_csv": layout.table("shapley_lds"),
    "lds_tex": layout.table("shapley_lds", "tex"),
    "runtime_csv": layout.table("shapley_runtime"),
    "runtime_tex": layout.table("shapley_runtime", "tex"),
    "budget_csv": layout.table("shapley_budget"),
    "budget_pdf": layout.figure("shapley_budget"),
    "budget_png": layout.figure("shapley_budget", "png"),
    "cf_csv": layout.table("shapley_counterfactual"),
    "cf_tex": layout.table("shapley_counterfactual", "tex"),
    "cf_pdf": layout.figure("shapley_counterfactual"),
    "cf_png": layout.figure("shapley_counterfactual", "png"),
    "grid_pdf": layout.figure("shapley_samples"),
    "grid_png": layout.figure("shapley_samples", "png"),
    "values_csv": layout.table("shapley_values"),
}


def shapley_outputs():
    if not SHAPLEY:
        return []
    return [run_path(p) for p in SHAPLEY_OUTPUTS.values()]
