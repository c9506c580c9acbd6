"""Benchmark: a whole run with warm starts (dabench/warm.py) against the same run cold.

Runs one config end to end twice, side by side in one invocation, each in a fresh folder: cold
(``DABENCH_WARM=0``: every job a fresh interpreter that imports what it needs) and warm (jobs
fork from a server that has imported torch and diffusers). Records each run's wall time, jobs
and CPU time, and checks that both wrote the same tables (byte for byte, once the columns that
time something are dropped).

Writes results/benchmarks/warm_start.json.

    .venv/bin/python scripts/benchmarks/warm_start.py [--config configs/ci.yaml] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import record  # noqa: E402


def run(config: Path, folder: Path, cores: int, warm: bool) -> dict:
    env = {**os.environ}
    env.pop("DABENCH_WARM", None)
    if not warm:
        env["DABENCH_WARM"] = "0"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(folder), "--configfile", str(config),
                           "--cores", str(cores)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"the {'warm' if warm else 'cold'} run failed:\n{proc.stderr[-3000:]}")
    steps = re.findall(r"(\d+) of (\d+) steps", proc.stdout + proc.stderr)
    # The warm server is a child of Snakemake: its CPU (and its forks') count here too.
    return {"wall_s": round(wall, 1), "jobs": int(steps[-1][1]) if steps else None,
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1)}


def tables(folder: Path) -> dict[str, bytes]:
    """Every table of every run in ``folder`` but the ones that report run times, without the
    columns that time something (seconds, minutes), as CSV bytes."""
    import pandas as pd

    timed = ("cost", "runtime", "budget")
    out = {}
    for p in sorted(folder.glob("results/*/tables/*.csv")):
        if any(t in p.name for t in timed):
            continue
        df = pd.read_csv(p)
        df = df[[c for c in df.columns if "seconds" not in c and "minutes" not in c]]
        out[p.relative_to(folder).as_posix()] = df.to_csv(index=False).encode()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/ci.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "results/benchmarks/warm_start.json"))
    args = parser.parse_args()

    config = Path(args.config).resolve()
    result = {"benchmark": "warm_start", "config": str(config.relative_to(REPO)),
              "cores": args.cores}
    with tempfile.TemporaryDirectory(prefix="dabench-warm-bench-") as tmp:
        outputs = {}
        for mode in ("cold", "warm"):
            folder = Path(tmp) / mode
            folder.mkdir()
            print(f"[warm_start] {mode} run of {config.name} ...", flush=True)
            result[mode] = run(config, folder, args.cores, mode == "warm")
            print(f"[warm_start] {mode}: {result[mode]}", flush=True)
            outputs[mode] = tables(folder)
        result["speedup"] = round(result["cold"]["wall_s"] / result["warm"]["wall_s"], 2)
        result["tables_compared"] = len(outputs["cold"])
        result["tables_identical"] = outputs["cold"] == outputs["warm"]
        result["tables_differing"] = sorted(k for k in outputs["cold"]
                                            if outputs["cold"][k] != outputs["warm"].get(k))
    record.write(result, args.out)


if __name__ == "__main__":
    main()
