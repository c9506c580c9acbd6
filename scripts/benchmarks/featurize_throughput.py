"""Benchmark: gradient featurization on the default model, in one run.

- per-example gradients, the CPU default (one batched backward pass with per-example
  contractions in hooks, :func:`dabench.gradients._hook_gradients`) and torch.func's vmap(grad)
  (the previous default), against a batched training step on the same model and rows (the
  practical limit) and a per-example autograd loop (one backward per example);
- projection cost at k = 4096 as a share of featurization time: count-sketch (the CPU default)
  and dense Gaussian;
- peak memory (RSS) of featurizing N and 4N training examples (features stream to disk);
- LDS of the sparse and the dense Gaussian projection side by side, read from the default run's
  ablation table when it exists (``make run`` first);
- the checkpoint methods' three feature kinds (Diffusion-TracIn / -ReTrac): K-timestep loss
  features, per-(t, ε)-normalised ``unit`` features and ``replay`` features (one logged (t, ε)
  per example), end to end through ``featurize`` (gradients, projection, disk).

Writes results/benchmarks/featurize_throughput.json.

    .venv/bin/python scripts/benchmarks/featurize_throughput.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _setup(threads: int):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from dabench import config, model

    cfg = config.load(REPO / "config.yaml")
    unet = model.build_unet(cfg["model"], 1, cfg["data"]["resolution"], init_seed=0)
    sched = model.build_scheduler(cfg["model"])
    rng = np.random.default_rng(0)
    return cfg, unet, sched, rng


def _timed(fn, repeats: int, warm: bool = True) -> float:
    if warm:
        fn()
    tic = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - tic) / repeats


def gradient_throughput(threads: int, n_examples: int, n_timesteps: int) -> dict:
    import numpy as np
    import torch

    from dabench import features as F
    from dabench import model as M

    cfg, unet, sched, rng = _setup(threads)
    res = cfg["data"]["resolution"]
    x0 = torch.as_tensor(rng.uniform(-1, 1, (n_examples, 1, res, res)).astype(np.float32))
    t = torch.as_tensor(F.feature_timesteps(n_timesteps, "uniform", 1000))
    noises = torch.randn(n_examples, n_timesteps, 1, res, res)
    rows = n_examples * n_timesteps

    def hooks():
        os.environ.pop("DABENCH_GRADIENTS", None)
        F.per_example_gradients(unet, sched, x0, t, noises, "square")

    def vmapped():
        os.environ["DABENCH_GRADIENTS"] = "vmap"
        try:
            F.per_example_gradients(unet, sched, x0, t, noises, "square")
        finally:
            os.environ.pop("DABENCH_GRADIENTS")

    def loop():
        for b in range(n_examples):
            unet.zero_grad()
            xt = M.add_noise(sched, x0[b:b + 1].expand(n_timesteps, -1, -1, -1), noises[b], t)
            (unet(xt, t).sample ** 2).flatten(1).mean(1).mean().backward()
            torch.cat([p.grad.reshape(-1) for p in unet.parameters()])

    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    xb, tb, nb = x0.repeat_interleave(n_timesteps, 0), t.repeat(n_examples), noises.flatten(0, 1)

    def train_step():
        loss = M.per_example_loss(unet, sched, xb, tb, nb).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # Interleaved rounds, the median of each: a busy moment of the machine hits every path.
    fns = {"hooks": hooks, "vmap": vmapped, "per_example_loop": loop, "train_step": train_step}
    times = {name: [] for name in fns}
    for name, fn in fns.items():
        fn()                                                    # warm-up
    for _ in range(5):
        for name, fn in fns.items():
            times[name].append(_timed(fn, 1, warm=False))
    out = {name: rows / float(np.median(ts)) for name, ts in times.items()}
    return {
        "example_timesteps_per_second": out,
        "featurize_path": "hooks (one batched backward, per-example contractions; the CPU default)",
        "hooks_vs_train_step": out["hooks"] / out["train_step"],
        "vmap_vs_train_step": out["vmap"] / out["train_step"],
        "hooks_vs_vmap": out["hooks"] / out["vmap"],
        "hooks_vs_per_example_loop": out["hooks"] / out["per_example_loop"],
        "vmap_vs_per_example_loop": out["vmap"] / out["per_example_loop"],
        "examples": n_examples, "timesteps": n_timesteps, "rounds": 5,
    }


def projection_share(threads: int, n_examples: int, n_timesteps: int, k: int) -> dict:
    from dabench.features import FeatureSpec, featurize

    cfg, unet, sched, rng = _setup(threads)
    res = cfg["data"]["resolution"]
    images = rng.uniform(-1, 1, (n_examples, 1, res, res)).astype("float32")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for projection in ("sparse", "gaussian"):
            spec = FeatureSpec("square", n_timesteps, projection=projection, k=k)
            info = featurize(unet, sched, images, spec, 1, 2, Path(tmp) / f"{projection}.npy")
            sec = info["seconds"]
            out[projection] = {"gradient_seconds": sec["gradients"],
                               "projection_seconds": sec["projection"],
                               "projection_share_of_featurization":
                                   sec["projection"] / (sec["projection"] + sec["gradients"])}
    return {"k": k, "examples": n_examples, "timesteps": n_timesteps, **out}


def peak_rss_worker(n: int, threads: int) -> None:
    from dabench.features import FeatureSpec, featurize

    cfg, unet, sched, rng = _setup(threads)
    res = cfg["data"]["resolution"]
    with tempfile.TemporaryDirectory() as tmp:
        images = rng.uniform(-1, 1, (n, 1, res, res)).astype("float32")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        featurize(unet, sched, images, FeatureSpec("square", 10, k=4096), 1, 2,
                  Path(tmp) / "f.npy")
    print(json.dumps({"n": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_before_mb": before / 1024}))


def peak_rss(n: int, threads: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--rss-worker", str(n), "--threads",
                           str(threads)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def checkpoint_feature_throughput(threads: int, n_examples: int, n_timesteps: int, k: int) -> dict:
    import numpy as np

    from dabench import training as T
    from dabench.features import FeatureSpec, featurize, replay_schedule

    cfg, unet, sched, rng = _setup(threads)
    res = cfg["data"]["resolution"]
    images = rng.uniform(-1, 1, (n_examples, 1, res, res)).astype("float32")
    plan = T.training_plan(np.arange(n_examples), {**cfg["train"], "steps": 200, "batch_size": 64},
                           seed=0, num_train_timesteps=1000)
    replay = replay_schedule(plan, 150, n_examples)
    specs = {"K_timesteps": FeatureSpec("loss", n_timesteps, projection="sparse", k=k),
             "unit": FeatureSpec("loss", n_timesteps, projection="sparse", k=k, normalize=True),
             "replay": FeatureSpec("loss", schedule="replay", projection="sparse", k=k)}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in specs.items():
            featurize(unet, sched, images[:8], spec, 1, 2, Path(tmp) / "warm.npy",
                      replay={key: v[:8] for key, v in replay.items()})   # warm-up
            tic = time.perf_counter()
            info = featurize(unet, sched, images, spec, 1, 2, Path(tmp) / f"{name}.npy",
                             replay=replay)
            wall = time.perf_counter() - tic
            per_example = 1 if spec.replay else n_timesteps
            out[name] = {"seconds": wall, "examples_per_second": n_examples / wall,
                         "example_timesteps_per_second": n_examples * per_example / wall,
                         "projection_seconds": info["seconds"]["projection"]}
    out["unit_vs_K_timesteps_time"] = out["unit"]["seconds"] / out["K_timesteps"]["seconds"]
    return {"examples": n_examples, "timesteps": n_timesteps, "k": k, **out}


def lds_side_by_side() -> dict | None:
    import pandas as pd

    path = REPO / "results/default/tables/ablations.csv"
    if not path.exists():
        return None
    df = pd.read_csv(path)
    rows = df[df["axis"] == "projection"]
    return {r["value"]: {"lds": r["lds"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                         "k": int(r["k"]), "n_timesteps": int(r["n_timesteps"]),
                         "query_set": r["query_set"]} for _, r in rows.iterrows()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=400, help="N for the memory check (and 4N)")
    parser.add_argument("--out", default=str(REPO / "results/benchmarks/featurize_throughput.json"))
    parser.add_argument("--rss-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_worker:
        return peak_rss_worker(args.rss_worker, args.threads)

    import torch

    from dabench.io import save_json

    result = {
        "benchmark": "featurize_throughput",
        "model": "config.yaml (default UNet)",
        "threads": args.threads,
        # Batches as the workflow's plan makes them (up to 2048 example-timesteps per call).
        "gradients_K10": gradient_throughput(args.threads, 64, 10),
        "gradients_K100": gradient_throughput(args.threads, 16, 100),
        "projection_k4096": projection_share(args.threads, 64, 10, 4096),
        "peak_rss": {"N": peak_rss(args.n, args.threads), "4N": peak_rss(4 * args.n, args.threads)},
        "checkpoint_features_k16384": checkpoint_feature_throughput(args.threads, 256, 10, 16384),
        "lds_sparse_vs_gaussian": lds_side_by_side(),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    save_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
