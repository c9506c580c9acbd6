# Lookups and constraints shared by the rules. No science here: that lives in dabench/.

import re
import sys

sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError

from dabench import config as dabench_config
from dabench import layout
from dabench.lds import n_chunks
from dabench.methods import build as build_method

try:
    dabench_config.validate(config)
except dabench_config.ConfigError as err:
    raise WorkflowError(str(err)) from None

RUN = f"results/{config['name']}"
LOGS = f"logs/{config['name']}"
QUERY_SETS = config["lds"]["query_sets"]
# Software of every rule, for cluster users running with --sdm conda (paths relative to rules/).
CONDA_ENV = "../envs/dabench.yaml"
METHOD_IDS = sorted(config["methods"])


wildcard_constraints:
    family="tune|test",
    chunk=r"\d+",
    query_set="|".join(layout.QUERY_SETS),
    method_id="|".join(map(re.escape, METHOD_IDS)) if METHOD_IDS else "NO_METHOD",


def run_path(relative):
    """A path inside this run's results folder."""
    return f"{RUN}/{relative}"


def log_path(name):
    return f"{LOGS}/{name}.log"


def bench_path(name):
    return run_path(f"benchmarks/{name}.tsv")


def query_inputs(wildcards=None):
    """The query-set files the LDS retrains evaluate f(x; θ) on."""
    return {qs: run_path(layout.query_file(qs)) for qs in QUERY_SETS}


def lds_chunk_files(wildcards):
    fam = config["lds"][wildcards.family]
    count = n_chunks(fam["n_subsets"], fam["n_seeds"], config["lds"]["retrains_per_job"])
    return [run_path(layout.lds_chunk(wildcards.family, c)) for c in range(count)]


def method_inputs(wildcards):
    """The artefacts a method reads, as the method itself declares them."""
    method = build_method(config["methods"][wildcards.method_id])
    return {name: run_path(p) for name, p in method.inputs(wildcards.query_set).items()}


def lds_records(wildcards=None):
    records = [run_path(layout.lds_result(m, qs)) for m in METHOD_IDS for qs in QUERY_SETS]
    if config["lds"]["test"]["n_seeds"] >= 2:
        records += [run_path(layout.lds_result("ceiling", qs)) for qs in QUERY_SETS]
    return records
