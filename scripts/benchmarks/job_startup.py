"""Benchmark: what a workflow job pays before its work starts.

Two measurements in one run:

- import costs, each in a fresh process (median of 3): the interpreter alone, Snakemake's script
  preamble (it unpickles the job's ``snakemake`` object), dabench's job runtime, and what the
  heavy jobs add (numpy + scipy, torch, diffusers' UNet, accelerate);
- per rule of a finished run (``--run results/default``): the job's wall time from Snakemake's
  benchmark file against the time its log reports inside the job (``[dabench] <rule> finished
  in``), the difference being start-up: interpreter, imports made before the job body, and
  Snakemake's own handling of the job.

Writes results/benchmarks/job_startup.json.

    .venv/bin/python scripts/benchmarks/job_startup.py [--run results/default]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import record  # noqa: E402

IMPORTS = {
    "interpreter": "pass",
    "snakemake_preamble": "import pickle, snakemake.iocontainers",
    "dabench_job_runtime": "import dabench.runtime, dabench.lds, dabench.methods",
    "numpy_scipy": "import numpy, scipy.stats, scipy.linalg",
    "torch": "import torch",
    "diffusers_unet": "import torch; from diffusers import UNet2DModel, DDPMScheduler",
    "accelerate": "from accelerate import Accelerator",
}


def import_costs(repeats: int = 3) -> dict:
    out = {}
    for name, code in IMPORTS.items():
        times = []
        for _ in range(repeats):
            tic = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
            times.append(time.perf_counter() - tic)
        out[name] = statistics.median(times)
    return out


def run_startups(run: Path) -> dict:
    """Per rule: jobs, median wall (benchmark file), median inside time (log), their difference."""
    import pandas as pd

    logs = REPO / "logs" / run.name if not (run.parent.parent / "logs").exists() else \
        run.parent.parent / "logs" / run.name
    inside = {}
    for path in logs.rglob("*"):
        if path.is_file():
            found = re.findall(r"\[dabench\] (\S+) finished in ([0-9.]+)s", path.read_text(errors="ignore"))
            if found:
                inside[path.relative_to(logs).with_suffix("").as_posix()] = (found[-1][0],
                                                                             float(found[-1][1]))
    walls = {}
    for path in run.rglob("benchmarks/**/*.tsv"):
        rel = path.relative_to(run).as_posix()
        walls[rel] = float(pd.read_csv(path, sep="\t")["s"].iloc[0])
    per_rule: dict[str, list] = {}
    for rel, wall in walls.items():
        key = rel.split("benchmarks/", 1)[1].removesuffix(".tsv")
        prefix = rel.split("benchmarks/", 1)[0].rstrip("/")
        log_key = f"{prefix}/{key}" if prefix else key
        if log_key in inside:
            rule, inner = inside[log_key]
            per_rule.setdefault(rule, []).append((wall, inner))
    out = {}
    for rule, pairs in sorted(per_rule.items()):
        out[rule] = {"jobs": len(pairs),
                     "wall_median_s": statistics.median(w for w, _ in pairs),
                     "inside_median_s": statistics.median(i for _, i in pairs),
                     "startup_median_s": statistics.median(w - i for w, i in pairs),
                     "startup_total_s": sum(w - i for w, i in pairs)}
    total = sum(r["startup_total_s"] for r in out.values())
    return {"rules": out, "jobs_matched": sum(r["jobs"] for r in out.values()),
            "startup_total_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(REPO / "results/default"),
                        help="a finished run's folder (its benchmarks/ and logs/)")
    parser.add_argument("--out", default=str(REPO / "results/benchmarks/job_startup.json"))
    args = parser.parse_args()

    result = {"benchmark": "job_startup", "imports_s": import_costs()}
    run = Path(args.run)
    if run.exists():
        result["run"] = str(run)
        result["per_rule"] = run_startups(run)
    record.write(result, args.out)


if __name__ == "__main__":
    main()
