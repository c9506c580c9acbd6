"""The GPU check: the paper's UNet through every GPU stage on one GPU, in a few minutes.

``make gpu-check`` (``scripts/gpu_check.sh``) on a machine with a GPU: trains the CIFAR paper
model (35.7M parameters, 32×32) a few steps, generates with DDIM-50, featurizes with the GPU
count-sketch at k = 32768, scores with TRAK, runs one retrain with its LDS model outputs; checks
that every model ran on CUDA, and that GPU and CPU features of the same examples agree (cosine
≥ 0.999); writes throughput and peak GPU memory to ``results/benchmarks/gpu_check.json``.
``--allow-cpu --tiny`` runs the same steps on the CPU with a small model (the test suite's way
of keeping this script working where no GPU is).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from dabench.layout import REPO_ROOT


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def run(config_path, out_path, allow_cpu: bool = False, tiny: bool = False) -> dict:
    import torch

    from dabench import config as C
    from dabench import device as D
    from dabench.features import FeatureSpec, featurize
    from dabench.methods.kernel import KernelSolver
    from dabench.architecture import timestep_grid
    from dabench.model import build_scheduler, model_output
    from dabench.training import train
    from dabench.resources import sizes
    from dabench.sampling import generate

    cfg = C.load(config_path)
    device_name = D.select("auto" if allow_cpu else "cuda", True, "gpu_check")
    device = torch.device(device_name)
    s = sizes(cfg)
    n_train = 16 if tiny else 64
    steps = 4 if tiny else 30
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (n_train, s.channels, s.resolution, s.resolution)).astype(np.float32)
    report = {"device": D.describe(device), "config": str(config_path), "params": s.p,
              "forward_gflop": s.flops / 1e9, "steps": {}}
    on_cuda = {}

    # 1. training
    recipe = {**C.training_recipe(cfg, "train"), "steps": steps, "batch_size": 8 if tiny else 32,
              "warmup_steps": 1, "checkpoint_steps": [], "resume_every": 10**9}
    _sync(device)
    tic = time.perf_counter()
    result = train(images, np.arange(n_train), cfg["model"], recipe, seed=0, init_seed=0)
    _sync(device)
    sec = time.perf_counter() - tic
    unet = result.unet
    on_cuda["train"] = next(unet.parameters()).device.type
    report["steps"]["train"] = {"seconds": sec, "samples_per_s": steps * recipe["batch_size"] / sec,
                                "peak_gpu_mb": _peak_mb(device)}
    sched = build_scheduler(cfg["model"])

    # 2. generation (DDIM-50)
    n_gen = 4 if tiny else 32
    tic = time.perf_counter()
    gen = generate(unet, sched.config, np.arange(n_gen), inference_steps=10 if tiny else 50,
                   keep_trajectory=False)
    _sync(device)
    sec = time.perf_counter() - tic
    report["steps"]["generate"] = {"seconds": sec, "samples_per_s": n_gen / sec}

    # 3. features with the GPU count-sketch
    k = 512 if tiny else 32768
    spec = FeatureSpec("loss", n_timesteps=10, projection="sparse", k=k)
    work = Path(out_path).parent / ".gpu_check"
    work.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    info = featurize(unet, sched, images, spec, 1, 2, work / "train.npy")
    report["steps"]["featurize"] = {
        "seconds": sum(info["seconds"].values()),
        "example_timesteps_per_s": info["example_timesteps_per_second"],
        "plan": info["gradient_plan"], "peak_gpu_mb": _peak_mb(device)}
    train_rate = report["steps"]["train"]["samples_per_s"]
    report["steps"]["featurize"]["vs_training_step"] = \
        info["example_timesteps_per_second"] / train_rate
    featurize(unet, sched, gen["images"], spec, 3, 2, work / "generation.npy")

    # 4. scores (TRAK)
    tic = time.perf_counter()
    solver = KernelSolver(str(work / "train.npy"))
    scores = solver.scores(np.load(work / "generation.npy"), 0.1)
    report["steps"]["score"] = {"seconds": time.perf_counter() - tic,
                                "finite": bool(np.isfinite(scores).all())}

    # 5. one retrain with its LDS model outputs
    tic = time.perf_counter()
    retrain = train(images, np.arange(n_train // 2), cfg["model"], recipe, seed=1, init_seed=0)
    grid = timestep_grid(cfg["model"]["num_train_timesteps"], 10 if tiny else 100)
    outputs = model_output(retrain.unet, sched, gen["images"], grid, 1, 0)
    _sync(device)
    on_cuda["retrain"] = next(retrain.unet.parameters()).device.type
    report["steps"]["retrain"] = {"seconds": time.perf_counter() - tic,
                                  "outputs_finite": bool(np.isfinite(outputs).all()),
                                  "forwards": int(len(gen["images"]) * len(grid))}

    # 6. GPU vs CPU features of the same examples
    cpu_unet = type(unet).from_config(unet.config)
    cpu_unet.load_state_dict({k_: v.cpu() for k_, v in unet.state_dict().items()})
    from dabench.architecture import classic_attention

    classic_attention(cpu_unet)
    featurize(cpu_unet.eval(), sched, images[:3], spec, 1, 2, work / "cpu.npy")
    a = np.load(work / "cpu.npy").astype(np.float64)
    b = np.load(work / "train.npy")[:3].astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    report["gpu_vs_cpu_feature_cosine"] = cos.tolist()
    report["on_device"] = on_cuda
    report["passed"] = bool(
        (device.type != "cuda" or all(v == "cuda" for v in on_cuda.values()))
        and cos.min() >= 0.999 and report["steps"]["score"]["finite"]
        and report["steps"]["retrain"]["outputs_finite"])
    for f in work.iterdir():
        f.unlink()
    work.rmdir()
    from dabench.io import save_json

    save_json(out_path, report)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dabench.gpu_check", description=__doc__)
    parser.add_argument("--config", default=str(REPO_ROOT / "configs/paper/cifar2.yaml"))
    parser.add_argument("--out", default=str(REPO_ROOT / "results/benchmarks/gpu_check.json"))
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU without a GPU")
    parser.add_argument("--tiny", action="store_true", help="small counts (with a small config)")
    args = parser.parse_args(argv)
    report = run(args.config, args.out, args.allow_cpu, args.tiny)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
