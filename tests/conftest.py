import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture
def repo():
    return REPO


@pytest.fixture
def cfg():
    """The ci config, validated (small enough for unit tests)."""
    from dabench import config

    return config.load(REPO / "configs" / "ci.yaml")


@pytest.fixture
def tiny_clip(tmp_path):
    """A tiny randomly initialised CLIPModel saved the way a real one is (16x16 images in 8x8
    patches, 8-dim projections): ``(folder, model)``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    layer = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2}
    conf = CLIPConfig(text_config={**layer, "vocab_size": 64},
                      vision_config={**layer, "image_size": 16, "patch_size": 8},
                      projection_dim=8)
    model = CLIPModel(conf).eval()
    model.save_pretrained(tmp_path / "clip")
    return tmp_path / "clip", model


def snakemake(workdir, *args, configfile="configs/ci.yaml", timeout=3600):
    """Snakemake on this checkout's Snakefile in ``workdir`` (2 cores). ``timeout``: a guard
    against a hang, generous enough for a busy machine."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(REPO / configfile), "--cores", "2",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory):
    """The ci config run once locally, end to end: the workflow tests read it, and the SLURM
    test compares its own numbers with it."""
    workdir = tmp_path_factory.mktemp("ci")
    tic = time.perf_counter()
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"ci workflow: {time.perf_counter() - tic:.1f}s")
    return workdir / "results" / "ci"
