"""D-TRAK's checkpoint selection study (its Figures 2 and 6–8): which checkpoint to take the
gradients from.

The paper computes TRAK and D-TRAK with features from each training checkpoint of the full
model and finds D-TRAK best at the final checkpoint, TRAK not. Here the ``checkpoint_selection``
config names methods (ids under ``methods``) and checkpoint steps; :func:`study_methods` turns
them into ordinary method entries with a ``checkpoint`` parameter (ids
``<method>-ckpt<step>``), which the workflow featurizes, scores and evaluates with the same rules
as every method. The final checkpoint (``train.steps``) is the studied method itself, so nothing
is computed twice. :func:`checkpoint_frame` assembles the LDS records into the study's table.
"""

from __future__ import annotations

import pandas as pd

SUFFIX = "-ckpt"


def study_steps(config: dict) -> list[int]:
    """The checkpoint steps studied (without the final model's step)."""
    cfg = config["checkpoint_selection"]
    steps = cfg["checkpoints"] or config["train"]["checkpoint_steps"]
    return sorted(set(int(s) for s in steps) - {int(config["train"]["steps"])})


def study_methods(config: dict) -> dict[str, dict]:
    """id -> {"entry", "base", "step"} of every (method, checkpoint) of the study; empty when it
    does not run. Raises ValueError naming the config key of a method or step it cannot study."""
    from dabench.methods import build

    cfg = config["checkpoint_selection"]
    if not cfg["enabled"]:
        return {}
    unknown = [m for m in cfg["methods"] if m not in config["methods"]]
    if unknown:
        raise ValueError(f"config key checkpoint_selection.methods: {', '.join(map(repr, unknown))}"
                         f" not among the method ids ({', '.join(sorted(config['methods']))})")
    available = sorted(config["train"]["checkpoint_steps"])
    missing = sorted(set(cfg["checkpoints"]) - set(available) - {config["train"]["steps"]})
    if missing:
        raise ValueError(f"config key checkpoint_selection.checkpoints: {missing} not in "
                         f"train.checkpoint_steps {available}")
    steps = study_steps(config)
    if not steps:
        raise ValueError("config key checkpoint_selection: no checkpoint before the final model "
                         "(set train.checkpoint_steps)")
    out = {}
    for base_id in cfg["methods"]:
        entry = config["methods"][base_id]
        method = build(entry)
        if not getattr(method, "checkpoint_features", False) or entry.get("checkpoint") is not None:
            raise ValueError(f"config key checkpoint_selection.methods: {base_id!r} "
                             f"({entry['method']}) does not take its features from the final "
                             "model; study a gradient-feature method such as trak or d-trak")
        for step in steps:
            out[f"{base_id}{SUFFIX}{step}"] = {"entry": {**entry, "checkpoint": step},
                                               "base": base_id, "step": step}
    return out


def checkpoint_frame(records: list[dict], config: dict) -> pd.DataFrame:
    """Tidy rows (method, variant, n_timesteps, query set, step, epoch, final, LDS, interval, best:
    the highest LDS of its method and query set) from the LDS records of the study's methods and of the methods themselves (the final checkpoint)."""
    study = study_methods(config)
    by_key = {(r["method_id"], r["query_set"]): r for r in records}
    epoch = config["train"]["batch_size"] / max(_n_train(config), 1)
    final = int(config["train"]["steps"])
    rows = []
    for base_id in config["checkpoint_selection"]["methods"]:
        points = [(base_id, final)] + [(i, s["step"]) for i, s in study.items()
                                       if s["base"] == base_id]
        for method_id, step in points:
            for (mid, qs), r in by_key.items():
                if mid != method_id:
                    continue
                rows.append({"method": r["label"], "variant": _base_variant(r["variant"]),
                             "method_id": base_id, "query_set": qs,
                             "n_timesteps": r.get("n_timesteps"), "step": step,
                             "epoch": round(step * epoch, 2), "final": step == final,
                             "lds": r["lds"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                             "n_queries": r["n_queries"], "n_subsets": r["n_subsets"],
                             "family": r.get("family")})
    columns = ["method", "variant", "method_id", "query_set", "n_timesteps", "step", "epoch",
               "final", "lds", "ci_low", "ci_high", "n_queries", "n_subsets", "family"]
    df = pd.DataFrame(rows, columns=columns)
    if df.empty:
        return df
    df["n_timesteps"] = df["n_timesteps"].astype("Int64")
    # The checkpoint with the highest LDS per (method, query set): the paper's claim is that it
    # is the final one for D-TRAK and not for TRAK.
    best = df.groupby(["method_id", "query_set"], sort=False)["lds"].transform("max")
    df["best"] = df["lds"] == best
    return df.sort_values(["query_set", "method_id", "step"], ascending=[False, True, True]) \
        .reset_index(drop=True)


def _base_variant(variant: str) -> str:
    return ", ".join(p for p in str(variant).split(", ") if not p.startswith("checkpoint="))


def _n_train(config: dict) -> int:
    from dabench.config import train_set_size

    return train_set_size(config)
