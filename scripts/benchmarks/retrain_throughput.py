"""Benchmark: LDS retrains per minute, packed jobs vs one retrain per process.

Two ways to spend 2 CPU cores on the same retrains of the default config, in one run:

- packed: as the workflow does it — two 1-thread processes side by side, each training several
  retrains (start-up paid once per process);
- one per process: one 2-thread process per retrain, one after another (start-up paid each time).

Both include process start-up, data loading, training and the model output f(x; θ) on the query
sets. Writes results/benchmarks/retrain_throughput.json.

    .venv/bin/python scripts/benchmarks/retrain_throughput.py [--retrains 4] [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def worker(args) -> None:
    """One process: train the retrains ``args.items`` (j:r,j:r,…) and compute their outputs."""
    import torch

    torch.set_num_threads(args.threads)
    from dabench import config, lds
    from dabench.io import load_npz

    cfg = config.load(args.config)
    recipe = {**config.training_recipe(cfg, "lds"), "steps": args.steps}
    images = load_npz(Path(args.workdir) / "train.npz")["train_images"]
    queries = {"validation": load_npz(Path(args.workdir) / "validation.npz")["images"]}
    subsets = lds.draw_subsets(len(images), cfg["lds"]["alpha"], 1, args.n_subsets, cfg["seed"])["test"]
    items = [tuple(map(int, it.split(":"))) for it in args.items.split(",")]
    with tempfile.TemporaryDirectory() as partial:
        lds.run_retrains(images, subsets, items, cfg["model"], recipe, cfg["lds"]["output"],
                         queries, cfg["seed"], partial, progress=False)


def launch(items: list[tuple[int, int]], threads: int, args) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--steps",
           str(args.steps), "--config", args.config, "--workdir", args.workdir,
           "--n-subsets", str(args.retrains), "--items", ",".join(f"{j}:{r}" for j, r in items)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(cmd, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--retrains", type=int, default=4, help="retrains per mode (even)")
    parser.add_argument("--steps", type=int, default=None, help="steps per retrain (config's if unset)")
    parser.add_argument("--out", default=str(REPO / "results/benchmarks/retrain_throughput.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--items", help=argparse.SUPPRESS)
    parser.add_argument("--n-subsets", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from dabench import config
    from dabench.data import prepare
    from dabench.io import save_json, save_npz

    cfg = config.load(args.config)
    args.steps = args.steps or config.training_recipe(cfg, "lds")["steps"]
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        d = prepare(cfg["data"], cfg["seed"])
        save_npz(Path(workdir) / "train.npz", train_images=d["train_images"])
        save_npz(Path(workdir) / "validation.npz", images=d["validation_images"])
        items = [(j, 0) for j in range(args.retrains)]

        tic = time.perf_counter()
        half = len(items) // 2
        procs = [launch(items[:half], 1, args), launch(items[half:], 1, args)]
        if any(p.wait() for p in procs):
            raise SystemExit("a packed worker failed")
        packed = time.perf_counter() - tic

        tic = time.perf_counter()
        for item in items:
            if launch([item], 2, args).wait():
                raise SystemExit("a single-retrain worker failed")
        single = time.perf_counter() - tic

    import torch

    result = {
        "benchmark": "retrain_throughput",
        "config": os.path.relpath(args.config, REPO),
        "retrains_per_mode": len(items),
        "steps_per_retrain": args.steps,
        "packed": {"processes": 2, "threads_per_process": 1, "seconds": packed,
                   "retrains_per_minute": 60 * len(items) / packed},
        "one_per_process": {"processes": len(items), "threads_per_process": 2, "seconds": single,
                            "retrains_per_minute": 60 * len(items) / single},
        "speedup_packed_vs_one_per_process": single / packed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    save_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
