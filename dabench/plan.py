"""``make plan``: what a config will cost before it is submitted.

Snakemake enumerates the jobs (a forced dry run: every job of the config, whatever exists on
disk); :mod:`dabench.resources` sizes each one — the same function the rules declare their
``mem_mb`` / ``runtime`` / ``disk_mb`` with. Per rule it prints the job count, the expected GPU-
and CPU-hours, the peak host and GPU memory of a job and the disk the rule writes, then the
totals.

GPU time comes from per-sample costs measured on *this* machine's CPU — one training sample,
one forward pass, one per-example gradient item of the config's own UNet — divided by a GPU
factor: :data:`dabench.resources.GPU_FLOPS` (an assumed sustained GPU rate) over the FLOP rate
this CPU reached on the training step. Both numbers are printed, so the estimate can be rescaled
for another GPU. The declared runtimes carry a margin on top (``resources.TIME_MARGIN``).

Usage: ``python -m dabench.plan CONFIG [--no-measure] [--csv PATH]`` (``make plan CONFIG=…``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dabench.layout import REPO_ROOT

MB = 2**20


@dataclass
class Job:
    rule: str
    wildcards: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    benchmark: str | None = None
    log: str | None = None


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of a Snakemake dry run's listing (``rule x:`` blocks with their wildcards,
    resources and benchmark file)."""
    jobs, job = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            job = Job(m.group(1))
            jobs.append(job)
            continue
        if job is None or not line.startswith("    "):
            continue
        key, _, value = line.strip().partition(": ")
        if key == "wildcards":
            job.wildcards = dict(kv.split("=", 1) for kv in value.split(", ") if "=" in kv)
        elif key == "resources":
            job.resources = {k: v for k, v in (kv.split("=", 1) for kv in value.split(", ")
                                               if "=" in kv)}
        elif key == "benchmark":
            job.benchmark = value
        elif key == "log":
            job.log = value
    return jobs


def dry_run(configfiles: list, directory=None, extra: list | None = None) -> list[Job]:
    """Every job of the config(s), from ``snakemake --dry-run --forceall``."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"),
           "--dry-run", "--forceall", "--cores", "1", "--configfile", *map(str, configfiles)]
    if directory is not None:
        cmd += ["--directory", str(directory)]
    cmd += list(extra or [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake --dry-run failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return parse_dry_run(proc.stdout + proc.stderr)


def measure_cpu(config: dict, seconds: float = 20.0) -> dict:
    """Per-sample costs of the config's UNet on this CPU (all its threads): a training sample,
    a no-grad forward sample and a per-example gradient item (the featurizer's own plan), and
    the FLOP rate of the training step."""
    import numpy as np
    import torch

    from dabench.features import FeatureSpec, featurize
    from dabench.model import build_scheduler, build_unet, per_example_loss
    from dabench.resources import sizes

    s = sizes(config)
    big = s.profile["params"] > 5e6
    batch = (1 if s.profile["params"] > 1e8 else 4) if big else 32
    cond, table = None, None
    if s.trainable is None:
        unet = build_unet(config["model"], s.channels, s.resolution, 0)
    else:
        # A latent model: the base's conditional UNet (random weights: the cost is the same)
        # with the config's LoRA adapter, conditioned on a context of the base's length.
        from diffusers import UNet2DConditionModel

        from dabench.architecture import classic_attention
        from dabench.data import Conditioning
        from dabench.latent import add_lora, latent_unet_kwargs

        kwargs, context = latent_unet_kwargs(config["latent"], config["data"]["resolution"])
        unet = classic_attention(UNet2DConditionModel(**kwargs))
        lora = config["latent"]["lora"]
        add_lora(unet, lora["rank"], lora["alpha"], 0, b_std=0.01)
        table = np.zeros((1, context, kwargs["cross_attention_dim"]), np.float32)
        cond = torch.as_tensor(table).expand(batch, -1, -1)
    sched = build_scheduler(config["model"])
    opt = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad])
    shape = (batch, s.channels, s.resolution, s.resolution)

    def step(grad=True):
        x, t = torch.randn(shape), torch.randint(0, 1000, (batch,))
        if grad:
            loss = per_example_loss(unet, sched, x, t, torch.randn(shape), cond).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                per_example_loss(unet, sched, x, t, torch.randn(shape), cond)

    def per_sample(fn):
        fn()
        reps, tic = 0, time.perf_counter()
        while reps < 2 or (time.perf_counter() - tic < seconds / 4 and reps < 50):
            fn()
            reps += 1
        return (time.perf_counter() - tic) / reps / batch

    train = per_sample(lambda: step(True))
    forward = per_sample(lambda: step(False))
    images = np.random.default_rng(0).uniform(-1, 1, (2 if big else 16, *shape[1:]))
    out = Path(REPO_ROOT / ".cache" / "plan-features.npy")
    info = featurize(unet.eval(), sched, images.astype(np.float32),
                     FeatureSpec("loss", n_timesteps=4, projection="sparse", k=512), 0, 0, out,
                     cond=None if table is None else Conditioning(table, np.zeros(len(images))))
    out.unlink(missing_ok=True)
    item = info["seconds"]["gradients"] / (len(images) * 4)
    return {"train_sample_s": train, "forward_sample_s": forward, "gradient_item_s": item,
            "train_flops_per_s": 3 * s.flops / train, "threads": torch.get_num_threads(),
            "params": s.p, "base_params": s.profile["params"] if s.trainable else None,
            "forward_gflop": s.flops / 1e9}


def job_seconds(need, config: dict, s, measured: dict | None, on: str) -> float:
    """Expected seconds of one job on ``on``; GPU time scaled from the measured CPU costs."""
    from dabench.resources import CPU_FLOPS, EFFICIENCY, GPU_FLOPS, OVERHEAD

    if measured is None or on == "cpu":
        return need.seconds(on)
    factor = GPU_FLOPS / measured["train_flops_per_s"]
    over = OVERHEAD["gpu"]
    total = need.steps * (over["step"] + need.params * over["param_step"])
    for kind, flops, calls in need.work:
        if kind == "linalg":
            total += flops / (CPU_FLOPS * need.threads * EFFICIENCY["linalg"])
            continue
        if kind == "train":
            cpu = flops / (3 * s.flops) * measured["train_sample_s"]
        elif kind == "forward":
            cpu = flops / s.flops * measured["forward_sample_s"]
        else:
            cpu = flops / (3 * s.flops) * measured["gradient_item_s"] * (
                EFFICIENCY["gradient_loop"] / EFFICIENCY[kind])
        total += cpu / factor + calls * over["call"]
    return total


def plan(config: dict, jobs: list[Job], measured: dict | None = None):
    """Per rule: jobs, hours, peak memory, disk (a pandas frame, totals in the last row)."""
    import pandas as pd

    from dabench import resources as R

    rows = {}
    for job in jobs:
        if "mem_mb" not in job.resources:
            continue                                      # local rules: where snakemake runs
        need = R.estimate(job.rule, config, job.wildcards)
        need.gpu = R.is_gpu_rule(job.rule, config)
        on = R.runs_on(config, need)
        s = R.sizes(config, job.rule.endswith("_outliers") or "outlier" in job.rule)
        secs = job_seconds(need, config, s, measured, on)
        row = rows.setdefault(job.rule, {"rule": job.rule, "jobs": 0, "gpu": on == "gpu",
                                         "gpu_hours": 0.0, "cpu_hours": 0.0, "host_mem_gb": 0.0,
                                         "gpu_mem_gb": 0.0, "disk_gb": 0.0,
                                         "runtime_min": 0})
        row["jobs"] += 1
        row["gpu_hours" if on == "gpu" else "cpu_hours"] += secs / 3600
        row["host_mem_gb"] = max(row["host_mem_gb"], int(job.resources["mem_mb"]) / 1024)
        if on == "gpu":
            row["gpu_mem_gb"] = max(row["gpu_mem_gb"], need.gpu_bytes / 2**30)
        row["disk_gb"] += need.disk_bytes / 2**30
        row["runtime_min"] = max(row["runtime_min"], int(job.resources.get("runtime", 0)))
    df = pd.DataFrame(list(rows.values())).sort_values(["gpu", "gpu_hours", "cpu_hours"],
                                                       ascending=False)
    total = {"rule": "TOTAL", "jobs": int(df["jobs"].sum()), "gpu": bool(df["gpu"].any()),
             "gpu_hours": df["gpu_hours"].sum(), "cpu_hours": df["cpu_hours"].sum(),
             "host_mem_gb": df["host_mem_gb"].max(), "gpu_mem_gb": df["gpu_mem_gb"].max(),
             "disk_gb": df["disk_gb"].sum(), "runtime_min": df["runtime_min"].max()}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def render(df, config: dict, measured: dict | None) -> str:
    from dabench.resources import GPU_FLOPS

    lines = [f"dabench plan: {config['name']} (device: {config['device']})", ""]
    if measured:
        factor = GPU_FLOPS / measured["train_flops_per_s"]
        lines += [
            f"Measured on this CPU ({measured['threads']} threads), the config's UNet "
            + (f"({measured['params'] / 1e6:.2f}M parameters, " if not measured.get("base_params")
               else f"(a LoRA adapter of {measured['params'] / 1e6:.2f}M trained parameters on a "
                    f"{measured['base_params'] / 1e6:.0f}M-parameter base, ")
            + f"{measured['forward_gflop']:.3g} GFLOP per forward sample):",
            f"  training {measured['train_sample_s'] * 1e3:.1f} ms/sample "
            f"({measured['train_flops_per_s'] / 1e9:.0f} GFLOP/s), forward "
            f"{measured['forward_sample_s'] * 1e3:.1f} ms/sample, per-example gradient "
            f"{measured['gradient_item_s'] * 1e3:.1f} ms/item",
            f"  GPU factor {factor:.0f}x = assumed sustained GPU rate "
            f"{GPU_FLOPS / 1e12:.0f} TFLOP/s / this CPU's {measured['train_flops_per_s'] / 1e9:.0f}"
            f" GFLOP/s: GPU time = CPU time / {factor:.0f}", ""]
    header = (f"{'rule':32} {'jobs':>6} {'GPU-h':>9} {'CPU-h':>8} {'host GB':>8} "
              f"{'GPU GB':>7} {'disk GB':>8} {'runtime':>8}")
    lines += [header, "-" * len(header)]
    for _, r in df.iterrows():
        if r["rule"] == "TOTAL":
            lines.append("-" * len(header))
        lines.append(f"{r['rule']:32} {int(r['jobs']):>6} {r['gpu_hours']:>9.2f} "
                     f"{r['cpu_hours']:>8.2f} {r['host_mem_gb']:>8.1f} {r['gpu_mem_gb']:>7.1f} "
                     f"{r['disk_gb']:>8.1f} {int(r['runtime_min']):>7}m")
    lines += ["", "host GB / GPU GB: the peak of one job (host = the mem_mb it declares); "
              "runtime: the longest declared per job (with its margin); GPU-h / CPU-h: expected, "
              "without margin."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dabench.plan",
        description="Per rule: jobs, GPU-hours, peak host and GPU memory, disk — before you "
                    "submit a config to a cluster.")
    parser.add_argument("configfile", nargs="+", help="config file(s), merged in order")
    parser.add_argument("--no-measure", action="store_true",
                        help="skip the CPU measurement (GPU time from the assumed rates only)")
    parser.add_argument("--csv", help="also write the table as CSV here")
    args = parser.parse_args(argv)
    from dabench import config as C

    import yaml

    merged = {}
    for path in args.configfile:
        C.deep_update(merged, yaml.safe_load(Path(path).read_text()) or {})
    config = C.validate(merged)
    jobs = dry_run(args.configfile)
    measured = None if args.no_measure else measure_cpu(config)
    df = plan(config, jobs, measured)
    print(render(df, config, measured))
    if args.csv:
        from dabench.io import atomic_path

        with atomic_path(args.csv) as tmp:
            df.to_csv(tmp, index=False, float_format="%.4g")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def measured_vs_declared(jobs: list[Job], directory) -> list[dict]:
    """For every job with a Snakemake benchmark file under ``directory``: its peak RSS and run
    time against the ``mem_mb`` and ``runtime`` it declared (the paper-smoke test's check). The
    memory is only the job's own in a cold run (``DABENCH_WARM=0``; dabench/warm.py)."""
    import pandas as pd

    rows = []
    for job in jobs:
        if job.benchmark is None or "mem_mb" not in job.resources:
            continue
        path = Path(directory) / job.benchmark
        if not path.exists():
            continue
        bench = pd.read_csv(path, sep="\t")
        rows.append({"rule": job.rule, "wildcards": job.wildcards,
                     "max_rss_mb": float(bench["max_rss"].max()),
                     "mem_mb": int(job.resources["mem_mb"]),
                     "seconds": float(bench["s"].max()),
                     "runtime_min": int(job.resources.get("runtime", 0))})
    return rows
