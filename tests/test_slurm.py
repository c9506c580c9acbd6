"""The ci workflow through a real SLURM cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd on
this machine, started by scripts/slurm/local_cluster.sh) with the official executor plugin.

Runs where the cluster can be brought up (root, Debian packages); skipped with the reason
otherwise. Checks that every non-local job went through SLURM (sacct), that GPU rules asked for
GPUs, that a job cancelled on the cluster is retried, and that the numbers equal a local run's.
"""
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]
REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "scripts" / "slurm" / "local_cluster.sh"
GPU_RULES = {"train_full_model", "generate_samples", "train_lds_models", "featurize",
             "featurize_replay", "retrac_norm_analyses", "train_outlier_model",
             "featurize_outliers", "featurize_replay_outliers", "featurize_journey",
             "counterfactual_retrain", "shapley_reference", "shapley_prune",
             "shapley_submodels", "shapley_counterfactual", "build_latent_base",
             "journey_step_scores", "journey_step_retrain", "journey_shared_regenerate",
             "compute_model_scores", "compute_model_self_influence",
             "compute_model_self_influence_outliers"}


def _cluster_available() -> str | None:
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root"
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        return "no apt-get to install SLURM and no SLURM installed"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = _cluster_available()
    if reason:
        pytest.skip(reason)
    tic = time.perf_counter()
    proc = subprocess.run(["bash", str(CLUSTER), "start", "--gpus", "2"], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"local SLURM cluster did not start:\n{proc.stderr[-3000:]}")
    print(f"SLURM bring-up: {time.perf_counter() - tic:.1f}s")
    yield
    subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, timeout=120)


def _sacct(since: str) -> pd.DataFrame:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-S", since, "-o",
                          "JobID,State,Comment,AllocTRES"], capture_output=True, text=True,
                         check=True).stdout
    rows = [line.split("|") for line in out.strip().splitlines() if line]
    df = pd.DataFrame(rows, columns=["job", "state", "comment", "tres"])
    df["rule"] = df["comment"].str.extract(r"^rule_(\w+?)(?:_wildcards_.*)?$")[0]
    return df


def _crash_first(rule: str, stop: threading.Event, crashed: list) -> None:
    """Kill the processes of the first running SLURM job of ``rule`` (as the OOM killer or a
    node problem would): SLURM records it FAILED, and the workflow must retry it.

    (Not ``scancel``: sacct then reports "CANCELLED by <uid>", which snakemake-executor-plugin-slurm
    2.8.0 does not recognise as a failure, and the run waits forever.)"""
    while not stop.is_set():
        out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i|%k"], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            job, comment = line.split("|", 1)
            if comment.startswith(f"rule_{rule}"):
                time.sleep(3)
                # The rule's own jobs only (not companion_<rule>'s).
                subprocess.run(["pkill", "-9", "-f", f"target-jobs[^a-z_]*{rule}:"])
                crashed.append(job)
                return
        time.sleep(0.5)


def test_start_clears_what_an_interrupted_run_left(cluster):
    """An interrupted test leaves running and pending jobs behind; the next start cancels them
    and hands over an idle node (it used to fail with "node never became idle (state: mix-)")."""
    for _ in range(3):                  # 2 CPUs: the first two run, the third waits
        subprocess.run(["sbatch", "-A", "root", "-p", "debug", "-c", "1", "--mem", "100",
                        "--wrap", "sleep 600"], check=True, capture_output=True)
    proc = subprocess.run(["bash", str(CLUSTER), "start", "--gpus", "2"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cancelling 3 job(s)" in proc.stderr
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip() == ""
    assert subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True,
                          text=True).stdout.split() == ["idle"]


def test_ci_workflow_through_slurm(cluster, ci_run, tmp_path):
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    stop, crashed = threading.Event(), []
    watcher = threading.Thread(target=_crash_first, args=("train_lds_models", stop, crashed))
    watcher.start()
    tic = time.perf_counter()
    # The guard against a hang is generous: on a busy machine the run takes twice its ~15 min.
    cmd = ["timeout", "-k", "30", "5400", sys.executable, "-m", "snakemake",
           "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path / "slurm"),
           "--configfile", str(REPO / "configs/ci.yaml"), "--profile", str(REPO / "profiles/slurm"),
           "--jobs", "4", "--slurm-init-seconds-before-status-checks", "2",
           "--default-resources", "slurm_account=root", "slurm_partition=debug", "mem_mb=1500",
           "runtime=30"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        stop.set()
        watcher.join()
    slurm_seconds = time.perf_counter() - tic
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    print(f"ci workflow through SLURM: {slurm_seconds:.1f}s")

    jobs = _sacct(since)
    ours = jobs.dropna(subset=["rule"])
    # Every non-local rule ran as a SLURM job and finished; local rules never went there.
    assert {"prepare_dataset", "train_full_model", "generate_samples", "train_lds_models",
            "featurize", "compute_scores", "featurize_replay", "compute_self_influence",
            "retrac_norm_analyses", "train_outlier_model", "compute_outlier_scores",
            "compute_model_scores", "compute_model_self_influence"} <= set(ours["rule"])
    assert not {"make_lds_table", "plot_lds", "evaluate_lds", "collect_lds_outputs",
                "retrac_targeted", "retrac_outlier_tables", "plot_retrac"} & set(ours["rule"])
    # The companion (the latent experiment, rules companion_*) went to SLURM the same way.
    assert {"companion_build_latent_base", "companion_train_lds_models",
            "companion_featurize"} <= set(ours["rule"])
    assert not {"companion_evaluate_lds", "companion_make_lds_table"} & set(ours["rule"])
    # ... and the second companion (the latent DDPM, rules companion_companion_*).
    assert {"companion_companion_build_latent_base",
            "companion_companion_shapley_submodels"} <= set(ours["rule"])
    # GPU rules asked SLURM for a GPU; the others did not (the latent companions' data
    # preparation encodes with their base's autoencoder: a GPU rule there).
    latent_gpu = {"prepare_dataset"}
    for _, job in ours.iterrows():
        rule = job["rule"]
        plain = re.sub(r"^(companion_)+", "", rule)
        gpu = plain in GPU_RULES or (rule != plain and plain in latent_gpu)
        assert ("gres/gpu=1" in job["tres"]) == gpu, job.to_dict()
    # The crashed retrain job was reported and resubmitted (--retries), then completed.
    assert crashed, "no train_lds_models job was seen running"
    states = ours[ours["rule"] == "train_lds_models"]["state"]
    assert (states == "FAILED").sum() >= 1, states.tolist()
    assert "Error in rule train_lds_models" in proc.stdout + proc.stderr
    # One job per lds.retrains_per_job retrains of each family (tune, test, datamodel).
    cfg = yaml.safe_load((REPO / "configs/ci.yaml").read_text())["lds"]
    n_retrain_jobs = sum(-(-cfg[f]["n_subsets"] * cfg[f]["n_seeds"] // cfg["retrains_per_job"])
                         for f in ("tune", "test", "datamodel"))
    assert (states == "COMPLETED").sum() == n_retrain_jobs
    assert (ours[ours["rule"] != "train_lds_models"]["state"] == "COMPLETED").all()

    # The same numbers as the local run of the same config (the session's ci run).
    a = pd.read_csv(tmp_path / "slurm/results/ci/tables/lds.csv")
    b = pd.read_csv(ci_run / "tables/lds.csv")
    pd.testing.assert_frame_equal(a, b)
