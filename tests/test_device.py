"""The job's device, the resources each rule declares, and the smoke version of a paper config."""
import copy
from pathlib import Path

import pytest
import torch

from dabench import architecture as A
from dabench import config as C
from dabench import device as D
from dabench import resources as R

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _reset():
    yield
    D._selected = None
    D.set_memory(None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_a_gpu_rule_without_a_gpu_fails_at_once_unless_the_config_allows_the_cpu():
    with pytest.raises(D.DeviceError, match=r"rule featurize is a GPU rule .*device: cuda.*"
                                            r"set device: auto / cpu"):
        D.select("cuda", True, "featurize")
    assert D.select("auto", True, "featurize") == "cpu"
    assert D.select("cuda", False, "compute_scores") == "cpu"      # a CPU rule
    assert D.current() == torch.device("cpu")
    with pytest.raises(D.DeviceError, match="config key device"):
        D.select("tpu", True)


def test_loaded_models_and_training_use_the_job_device(cfg, tmp_path):
    import numpy as np

    from dabench import model as M
    from dabench import training as T

    D.select("auto", True, "train_full_model")
    images = np.zeros((8, 1, 8, 8), dtype=np.float32)
    recipe = {**C.training_recipe(cfg, "train"), "steps": 2, "batch_size": 4,
              "checkpoint_steps": []}
    result = T.train(images, np.arange(8), cfg["model"], recipe, seed=0, init_seed=0)
    assert next(result.unet.parameters()).device == D.current()
    M.save_model(tmp_path / "m.safetensors", result.unet,
                 {"unet_config": A.unet_config(cfg["model"], 1, 8)})
    unet, _ = M.load_model(tmp_path / "m.safetensors")
    assert next(unet.parameters()).device == D.current()


def test_memory_budget_comes_from_the_config():
    D.set_memory({"cpu_mb": 300})
    assert D.memory_budget(torch.device("cpu")) == 300 * 2**20
    D.set_memory(None)
    assert D.memory_budget(torch.device("cpu")) == 2048 * 2**20


def test_declared_resources_follow_the_config_and_grow_on_retry():
    paper = C.load(REPO / "configs/paper/cifar2.yaml")
    wc = {"model": "full", "feature_id": "loss_K100u_e1_sparse32768"}
    first, second = (R.declare("featurize", paper, wc, attempt) for attempt in (1, 2))
    assert first["gpu"] == 1 and second["mem_mb"] > first["mem_mb"]
    assert second["runtime"] > first["runtime"]
    # K = 100 costs more time than K = 10; more training images more time and disk.
    k10 = R.declare("featurize", paper, {**wc, "feature_id": "loss_K10u_e1_sparse32768"})
    assert first["runtime"] > k10["runtime"] and first["disk_mb"] == k10["disk_mb"]
    bigger = copy.deepcopy(paper)
    bigger["data"]["n_train"] *= 10
    assert R.declare("featurize", bigger, wc)["runtime"] > first["runtime"]
    # device: cpu asks for no GPU and sizes the job for the CPU (its batches in host memory).
    cpu = {**paper, "device": "cpu"}
    on_cpu = R.declare("featurize", cpu, wc)
    assert on_cpu["gpu"] == 0 and on_cpu["mem_mb"] > first["mem_mb"]
    assert on_cpu["runtime"] > first["runtime"]
    # A larger memory.cpu_mb raises what CPU jobs declare.
    roomy = {**cpu, "memory": {"cpu_mb": 8192, "gpu_mb": 16384}}
    assert R.declare("featurize", roomy, wc)["mem_mb"] > on_cpu["mem_mb"]
    # The primal kernel of CIFAR-10 (N = 50 000 > k) is bigger than CIFAR-2's dual.
    cifar10 = C.load(REPO / "configs/paper/cifar10.yaml")
    assert (R.declare("compute_scores", cifar10, {"method_id": "trak-K10"})["mem_mb"]
            > R.declare("compute_scores", paper, {"method_id": "trak-K10"})["mem_mb"])


def test_the_unet_profile_is_exact_and_cached(tmp_path, monkeypatch):
    from dabench import profile

    monkeypatch.setenv("DABENCH_CACHE", str(tmp_path))
    profile._cached.cache_clear()
    paper = C.load(REPO / "configs/paper/cifar2.yaml")
    prof = profile.config_profile(paper["model"], 3, 32)
    assert prof["params"] == 35_746_307
    assert prof["forward_flops"] == pytest.approx(12.44e9, rel=0.01)   # google/ddpm-cifar10-32
    assert list((tmp_path / "profiles").glob("unet-*.json"))
    from dabench.model import build_unet

    small = C.load(REPO / "configs/ci.yaml")
    unet = build_unet(small["model"], 1, 8, 0)
    assert profile.module_profile(unet)["params"] == sum(p.numel() for p in unet.parameters())


def test_smoke_keeps_the_scale_and_shrinks_the_counts():
    from dabench.smoke import shrink

    paper = C.load(REPO / "configs/paper/cifar20.yaml")
    small = C.validate(copy.deepcopy(shrink(paper, data_path="/data/cifar100")))
    assert small["model"] == paper["model"] and small["data"]["resolution"] == 32
    assert small["data"]["path"] == "/data/cifar100" and small["device"] == "cpu"
    assert small["data"]["n_train"] == 6 and small["train"]["steps"] == 4
    # One setting per method; references follow (the Shapley baselines of K100 methods).
    assert len({e["method"] for e in small["methods"].values()}) == len(small["methods"])
    assert all(e.get("n_timesteps", 1) == 1 for e in small["methods"].values())
    assert set(small["shapley"]["baselines"]) <= set(small["methods"])
    assert {k.rsplit(".", 1)[0] for k in small["shapley"]["counterfactual"]["methods"]
            if not k.startswith("shapley-")} <= set(small["methods"])
    assert all(e.get("projection") != "fast_jl" for e in small["methods"].values())


def test_declaring_resources_needs_no_torch(tmp_path):
    """The Snakefile declares every job's resources while it parses — in each SLURM job too — so
    it must not import torch (seconds per job): the profile is cached, the config functions
    are torch-free (dabench.architecture)."""
    import json
    import subprocess
    import sys

    from dabench import plan as P

    jobs = P.dry_run([REPO / "configs/ci.yaml"], directory=tmp_path)
    payload = json.dumps([[j.rule, j.wildcards] for j in jobs if "mem_mb" in j.resources])
    code = ("import json, sys\n"
            "from dabench import config as C, resources as R\n"
            f"config = C.load({str(REPO / 'configs/ci.yaml')!r})\n"
            "jobs = json.loads(sys.stdin.read())\n"
            "for rule, wc in jobs:\n"
            "    R.declare(rule, config, wc)\n"
            "print(len(jobs), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True,
                         text=True, check=True).stdout.split()
    assert int(out[0]) > 50 and out[1] == "False"
