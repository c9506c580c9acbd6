"""Benchmark: peak memory of featurizing the papers' UNet (CIFAR 35.7M, 32×32), in one run.

Side by side, each in a fresh process (peak RSS is per process), K = 10 timesteps, count-sketch
to k = 32 768, on the CPU:

- ``flat-vmap`` — the strategy before memory planning: B examples in one ``torch.func`` vmap
  call, the gradients joined into one (B, p) tensor, then projected (B = 1, 2);
- ``planned`` — what ``featurize`` does now at the default budget (memory.cpu_mb = 2048): the
  plan picks the loop for this model, one example at a time, gradients read per parameter
  (N = 2, 8 examples: memory must not grow with N).

Also measures seconds per example-timestep of each. Writes results/benchmarks/featurize_memory.json.

    .venv/bin/python scripts/benchmarks/featurize_memory.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _one(mode: str, n: int, threads: int) -> dict:
    import resource
    import tempfile
    import time

    import numpy as np
    import torch

    from dabench import config as C
    from dabench.features import FeatureSpec, example_noises, featurize, feature_timesteps
    from dabench.gradients import per_example_gradients
    from dabench.model import build_scheduler, build_unet
    from dabench.projection import make_projector

    torch.set_num_threads(threads)
    cfg = C.load(REPO / "configs/paper/cifar2.yaml")
    unet = build_unet(cfg["model"], 3, 32, 0).eval()
    sched = build_scheduler(cfg["model"])
    images = np.random.default_rng(0).uniform(-1, 1, (n, 3, 32, 32)).astype(np.float32)
    spec = FeatureSpec("loss", n_timesteps=10, projection="sparse", k=32768)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tic = time.perf_counter()
    info = {}
    if mode == "flat-vmap":
        t = torch.as_tensor(feature_timesteps(10, "uniform", 1000))
        noises = example_noises(1, np.arange(n), 10, (3, 32, 32))
        grads = per_example_gradients(unet, sched, torch.as_tensor(images), t, noises, "loss")
        make_projector("sparse", grads.shape[1], 32768, 2).project(grads)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            info = featurize(unet, sched, images, spec, 1, 2, Path(tmp) / "f.npy")["gradient_plan"]
    seconds = time.perf_counter() - tic
    return {"mode": mode, "n_examples": n, "peak_rss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": base,
            "seconds_per_example_timestep": seconds / (10 * n), "plan": info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one(args.child[0], int(args.child[1]), args.threads)))
        return
    rows = []
    for mode, n in (("flat-vmap", 1), ("flat-vmap", 2), ("planned", 2), ("planned", 8)):
        out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                              "--child", mode, str(n)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    per_example = rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    result = {"benchmark": "featurize_memory", "model": "configs/paper/cifar2.yaml (35.7M UNet)",
              "K": 10, "k": 32768, "threads": args.threads, "machine": platform.processor(),
              "rows": rows,
              "flat_vmap_mb_per_example": per_example,
              "flat_vmap_projected_mb_at_old_default_batch_204": rows[0]["peak_rss_mb"]
              + 203 * per_example,
              "planned_growth_2_to_8_examples_mb": rows[3]["peak_rss_mb"] - rows[2]["peak_rss_mb"]}
    out = REPO / "results/benchmarks/featurize_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
