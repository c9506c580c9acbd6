"""Benchmark: minutes per group-Shapley submodel — retraining vs fine-tuning vs sparsified FT.

Times each way on the default config, as the workflow runs it (one thread, the default run's
full model, pruned model, classifier and clusters): training plus evaluating F (generating the
samples and applying the property model). The paper reports sparsified FT 5.3× (CIFAR-20) and
10.4× (CelebA-HQ) faster than retraining. Needs a finished run (``make run``) for its models.
Writes results/benchmarks/shapley_submodels.json.

    .venv/bin/python scripts/benchmarks/shapley_submodels.py [--n 2] [--run results/default]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--run", default=None, help="run folder (default: results/<name>)")
    parser.add_argument("--n", type=int, default=2, help="submodels timed per way")
    parser.add_argument("--out", default=str(REPO / "results/benchmarks/shapley_submodels.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from dabench import config, layout, shapley

    cfg = config.load(args.config)
    run = Path(args.run or REPO / f"results/{cfg['name']}")
    need = {k: run / v for k, v in {"train": layout.TRAIN_DATA, "design": layout.SHAPLEY_DESIGN,
                                    "full": layout.FULL_MODEL, "pruned": layout.SHAPLEY_PRUNED,
                                    "classifier": layout.EMBEDDER_MODEL,
                                    "reference": layout.SHAPLEY_REFERENCE}.items()}
    missing = [str(p) for p in need.values() if not p.exists()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run the workflow with this config first "
                 f"(make run), with shapley.enabled")
    recipes = shapley.recipes(cfg)
    result = {"config": args.config, "n_per_way": args.n, "threads": 1,
              "machine": platform.processor() or platform.machine(), "ways": {}}
    for way in shapley.WAYS:
        scfg = {**cfg["shapley"], "submodels": {way: args.n}}
        with tempfile.TemporaryDirectory() as tmp:
            rows = shapley.run_models(way, "kernel", 0, args.n, need["train"], need["design"],
                                      need["full"], need["pruned"], need["classifier"],
                                      need["reference"], cfg["model"], cfg["generation"],
                                      recipes[way], scfg, cfg["seed"], Path(tmp) / "chunk.npz",
                                      Path(tmp) / "partial")
        total = rows["seconds_train"] + rows["seconds_eval"]
        result["ways"][way] = {"label": shapley.WAY_LABELS[way], "steps": recipes[way]["steps"],
                               "minutes_train": float(rows["seconds_train"].mean() / 60),
                               "minutes_eval": float(rows["seconds_eval"].mean() / 60),
                               "minutes": float(total.mean() / 60)}
    base = result["ways"]["retrain"]["minutes"]
    for way, r in result["ways"].items():
        r["speedup_vs_retrain"] = base / r["minutes"]
    pruned = json.loads(need["pruned"].with_suffix(".json").read_text())
    result["pruned"] = {k: pruned[k] for k in ("ratio", "parameters", "nonzero", "seconds")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ways"], indent=2))


if __name__ == "__main__":
    main()
