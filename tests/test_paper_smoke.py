"""Every paper config, its real UNet and resolution, end to end on the CPU at tiny counts.

Each paper config is shrunk by :func:`dabench.smoke.shrink` (counts only: images, steps,
samples, subsets, timesteps) and run by Snakemake on local copies of its datasets' formats made
from real images (``tests/paper_data.py``). Then every job's peak RSS (Snakemake's benchmark
file) must lie within the ``mem_mb`` it declared, and its run time within its ``runtime``: the
resources that dabench.resources derives are honest at the papers' model size. A last test runs
the CIFAR-2 featurize job on 64 training images at K = 10 — the job that needed ≈ 350 GB before
memory planning — and checks it stays within 6 GB.
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.workflow, pytest.mark.paper]
REPO = Path(__file__).resolve().parent.parent
PAPER = ["cifar2", "cifar10", "cifar20", "celeba", "outliers"]
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from paper_data import foolbox_images, paper_data

    if foolbox_images("cifar10")[0] is None:
        pytest.skip("foolbox (test data) not installed; `make test` installs it")
    return paper_data(tmp_path_factory.mktemp("paper-data"))


def _smoke_config(name, data, folder, **kw):
    from dabench import config as C
    from dabench.smoke import shrink

    cfg = C.load(REPO / "configs" / "paper" / f"{name}.yaml")
    small = shrink(cfg, data_path=data[cfg["data"]["dataset"]], **kw)
    if small["embedder"]["kind"] == "clip":
        small["embedder"]["path"] = data["clip"]
    C.validate(copy.deepcopy(small))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(small))
    return path, small


def _snakemake(configfile, workdir, *targets):
    return subprocess.run([sys.executable, "-m", "snakemake", *map(str, targets),
                           "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(workdir), "--configfile", str(configfile),
                           "--cores", "2", "--quiet"],
                          capture_output=True, text=True,
                          # Cold starts: a warm job's benchmark file measures only its waiting
                          # process, not the fork that does the work (dabench/warm.py).
                          env={**os.environ, "DABENCH_WARM": "0"})


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_runs_at_tiny_counts_within_its_declared_resources(name, data, tmp_path):
    from dabench import plan as P
    from dabench.config import load

    configfile, small = _smoke_config(name, data, tmp_path)
    cfg = load(REPO / "configs" / "paper" / f"{name}.yaml")
    run = _snakemake(configfile, tmp_path)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    root = tmp_path / "results" / small["name"]
    # The paper's model and resolution ran (the scale is not shrunk).
    meta = yaml.safe_load((root / "models/full/model.json").read_text())
    assert meta["unet_config"]["block_out_channels"] == cfg["model"]["block_out_channels"]
    assert meta["unet_config"]["sample_size"] == cfg["data"]["resolution"]
    assert (root / "tables/lds.csv").exists()
    # Every job within the memory and time it declared (device: cpu: no GPU asked for).
    jobs = P.dry_run([configfile], directory=tmp_path)
    assert all(int(j.resources.get("gpu", 0)) == 0 for j in jobs if "mem_mb" in j.resources)
    rows = P.measured_vs_declared(jobs, tmp_path)
    assert len(rows) >= 10
    over = [r for r in rows if r["max_rss_mb"] > r["mem_mb"]]
    assert not over, over
    late = [r for r in rows if r["seconds"] > 60 * r["runtime_min"]]
    assert not late, late


def test_cifar2_featurize_of_64_images_at_k10_fits_6_gb(data, tmp_path):
    """The issue's yardstick: 64 training images of the CIFAR-2 paper model at K = 10 with the
    config's own projection dimension, within a 6 GB memory limit (the job before memory
    planning needed ≈ 350 GB)."""
    from dabench import plan as P

    configfile, small = _smoke_config("cifar2", data, tmp_path, n_train=64)
    small["methods"] = {"d-trak": {"method": "d-trak", "n_timesteps": 10,
                                   "projection": "sparse", "k": 32768}}
    small["counterfactual"]["enabled"] = False
    small["checkpoint_selection"]["enabled"] = False       # it names methods this run drops
    small["shapley"]["enabled"] = False
    small["retrac"]["enabled"] = False
    small["figures"]["proponents"]["methods"] = None
    configfile.write_text(yaml.safe_dump(small))
    target = f"results/{small['name']}/features/full/square_K10u_e1_sparse32768/train.npy"
    run = _snakemake(configfile, tmp_path, target)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    jobs = [j for j in P.dry_run([configfile], directory=tmp_path) if j.rule == "featurize"]
    rows = [r for r in P.measured_vs_declared(jobs, tmp_path)
            if r["wildcards"]["feature_id"] == "square_K10u_e1_sparse32768"]
    assert len(rows) == 1
    row = rows[0]
    print(f"featurize 64 images K=10: peak RSS {row['max_rss_mb']:.0f} MB, declared "
          f"{row['mem_mb']} MB, {row['seconds']:.0f} s")
    assert row["max_rss_mb"] <= min(6144, row["mem_mb"])
    import numpy as np

    phi = np.load(tmp_path / target)
    assert phi.shape == (64, 32768) and np.isfinite(phi).all() and (np.abs(phi).sum(1) > 0).all()
