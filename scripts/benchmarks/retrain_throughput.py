"""Benchmark: LDS retrains per minute, the previous training path against the current one.

Both paths train the same retrains of the default config as the workflow packs them — two
1-thread processes side by side on the 2 cores, each training half of the retrains one after the
other and computing their model outputs f(x; θ) on the validation queries — in one run, so the
machine is the same for both:

- ``previous``: AdamW's per-tensor implementation (as before the fused kernel);
- ``current``: the workflow's training path (:func:`dabench.training.train`).

The fused optimizer is not bit-identical to the per-tensor one, so the ground truth moves at the
level of float rounding, amplified by training. The JSON reports how far: per query, the mean
|f_current − f_previous| over the retrains against the spread of f across the retrains' subsets
(the signal the LDS ranks), and the Spearman correlation of the two paths' outputs across subsets.
Each retrain's time covers training and outputs (process start-up is reported apart).
``training_step_floor``: one training step's FLOPs and time on one thread, and the share spent in
convolutions with their rate — what bounds a retrain on this CPU.
Writes results/benchmarks/retrain_throughput.json.

    .venv/bin/python scripts/benchmarks/retrain_throughput.py [--retrains 4] [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import record  # noqa: E402

PATHS = ("previous", "current")


def worker(args) -> None:
    """One process: train the retrains ``args.items`` (j:r,j:r,…) and compute their outputs."""
    tic = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from dabench import config, lds
    from dabench import training as T
    from dabench.io import load_npz, save_npz

    if args.path == "previous":
        T.fused_adamw = lambda params, device: False
    cfg = config.load(args.config)
    recipe = {**config.training_recipe(cfg, "lds"), "steps": args.steps}
    images = load_npz(Path(args.workdir) / "train.npz")["train_images"]
    queries = {"validation": load_npz(Path(args.workdir) / "validation.npz")["images"]}
    subsets = lds.draw_subsets(len(images), cfg["lds"]["alpha"], 1, args.n_subsets, cfg["seed"])["test"]
    items = [tuple(map(int, it.split(":"))) for it in args.items.split(",")]
    startup = time.perf_counter() - tic
    with tempfile.TemporaryDirectory() as partial:
        rows = lds.run_retrains(images, subsets, items, cfg["model"], recipe, cfg["lds"]["output"],
                                queries, cfg["seed"], partial, progress=False)
    save_npz(args.out_rows, subset=rows["subset"], seconds=rows["seconds"],
             outputs=rows["outputs.validation"], startup=np.float64(startup))


def launch(path: str, items: list[tuple[int, int]], out_rows: Path, args) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", "--path", path, "--steps", str(args.steps),
           "--config", args.config, "--workdir", args.workdir, "--n-subsets", str(args.retrains),
           "--items", ",".join(f"{j}:{r}" for j, r in items), "--out-rows", str(out_rows)]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})


def packed(path: str, items: list, args) -> tuple[float, dict]:
    """Two 1-thread processes side by side, half of the items each."""
    half = len(items) // 2
    outs = [Path(args.workdir) / f"{path}.{i}.npz" for i in range(2)]
    tic = time.perf_counter()
    procs = [launch(path, items[:half], outs[0], args), launch(path, items[half:], outs[1], args)]
    if any(p.wait() for p in procs):
        raise SystemExit(f"a {path} worker failed")
    seconds = time.perf_counter() - tic
    import numpy as np

    from dabench.io import load_npz

    parts = [load_npz(o) for o in outs]
    rows = {k: np.concatenate([np.atleast_1d(p[k]) for p in parts]) for k in parts[0]}
    return seconds, rows


def agreement(prev: dict, cur: dict) -> dict:
    import numpy as np
    from scipy.stats import spearmanr

    order_p, order_c = np.argsort(prev["subset"]), np.argsort(cur["subset"])
    a, b = prev["outputs"][order_p], cur["outputs"][order_c]          # (retrains, queries)
    spread = a.std(0, ddof=1)
    diff = np.abs(b - a).mean(0)
    rho = [spearmanr(a[:, q], b[:, q])[0] for q in range(a.shape[1])]
    return {"mean_abs_difference_over_subset_spread": float(np.mean(diff / spread)),
            "median_abs_difference_over_subset_spread": float(np.median(diff / spread)),
            "spearman_across_subsets_mean": float(np.nanmean(rho)),
            "queries": int(a.shape[1]), "retrains": int(a.shape[0])}


def step_floor(config_path: str, steps: int = 30) -> dict:
    """What bounds a retrain on this CPU: one training step of the default model (batch of the
    recipe, one thread) — its FLOPs, time, the achieved rate, and the share of the step spent in
    convolutions with their own rate."""
    import torch
    from torch.profiler import profile
    from torch.utils.flop_counter import FlopCounterMode

    from dabench import config, model as M

    torch.set_num_threads(1)
    cfg = config.load(config_path)
    bsz, res = config.training_recipe(cfg, "lds")["batch_size"], cfg["data"]["resolution"]
    unet = M.build_unet(cfg["model"], 1, res, 0)
    sched = M.build_scheduler(cfg["model"])
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, fused=True)
    x = torch.randn(bsz, 1, res, res)
    t = torch.randint(0, 1000, (bsz,))
    noise = torch.randn(bsz, 1, res, res)

    def step():
        loss = M.per_example_loss(unet, sched, x, t, noise).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as flops:
        step()
    conv_flops = sum(v for k, v in flops.get_flop_counts()["Global"].items()
                     if "conv" in str(k))
    for _ in range(5):
        step()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - tic) / steps
    with profile() as prof:
        for _ in range(10):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key)
    share = conv / total
    return {"batch": bsz, "gflop_per_step": flops.get_total_flops() / 1e9,
            "ms_per_step": 1000 * seconds,
            "gflop_per_s": flops.get_total_flops() / 1e9 / seconds,
            "convolution_share_of_step": share,
            "convolution_gflop_per_s": conv_flops / 1e9 / (share * seconds),
            "threads": 1, "timed_steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--retrains", type=int, default=4, help="retrains per path (even)")
    parser.add_argument("--steps", type=int, default=None, help="steps per retrain (config's if unset)")
    parser.add_argument("--out", default=str(REPO / "results/benchmarks/retrain_throughput.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--items", help=argparse.SUPPRESS)
    parser.add_argument("--out-rows", help=argparse.SUPPRESS)
    parser.add_argument("--n-subsets", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from dabench import config
    from dabench.data import prepare
    from dabench.io import save_npz

    cfg = config.load(args.config)
    args.steps = args.steps or config.training_recipe(cfg, "lds")["steps"]
    result = {"benchmark": "retrain_throughput", "config": os.path.relpath(args.config, REPO),
              "retrains_per_path": args.retrains, "steps_per_retrain": args.steps,
              "layout": "2 processes x 1 thread, side by side"}
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        d = prepare(cfg["data"], cfg["seed"])
        save_npz(Path(workdir) / "train.npz", train_images=d["train_images"])
        save_npz(Path(workdir) / "validation.npz", images=d["validation_images"])
        items = [(j, 0) for j in range(args.retrains)]
        rows = {}
        for path in PATHS:
            seconds, rows[path] = packed(path, items, args)
            per_retrain = rows[path]["seconds"]
            result[path] = {"seconds": seconds, "retrains_per_minute": 60 * len(items) / seconds,
                            "seconds_per_retrain_median": float(sorted(per_retrain)[len(per_retrain) // 2]),
                            "startup_seconds_per_process": [float(s) for s in rows[path]["startup"]]}
    result["speedup_current_vs_previous"] = (result["current"]["retrains_per_minute"]
                                             / result["previous"]["retrains_per_minute"])
    result["ground_truth_agreement"] = agreement(rows["previous"], rows["current"])
    result["training_step_floor"] = step_floor(args.config)
    record.write(result, args.out)


if __name__ == "__main__":
    main()
