"""D-TRAK's Appendix-B ablations: LDS of one base method as one setting changes at a time.

The ``ablations`` config names a base method and the values of each axis to try (number of
timesteps K, projection dimension k, timestep schedule, projection kind); :func:`ablation_methods`
turns that into ordinary method entries (ids ``ablation-K5``, ``ablation-k256`` …), which the
workflow scores and evaluates like any other method, on one query set. Settings equal to the base
share its id, so nothing is computed twice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

AXES = {  # config key -> (method parameter, id prefix, axis label)
    "n_timesteps": ("n_timesteps", "K", "number of timesteps K"),
    "k": ("k", "k", "projection dimension k"),
    "schedules": ("schedule", "", "timestep schedule"),
    "projections": ("projection", "", "projection"),
}


def ablation_methods(ablations_cfg: dict) -> dict[str, dict]:
    """id -> {"entry": method entry, "points": [(axis, value), …]}; empty when disabled."""
    if not ablations_cfg.get("enabled", False):
        return {}
    from dabench.methods import validate_method_config

    base = validate_method_config(dict(ablations_cfg["method"]))
    out: dict[str, dict] = {"ablation-base": {"entry": base, "points": []}}
    for key, (param, prefix, _) in AXES.items():
        for value in ablations_cfg.get(key, []):
            entry = {**base, param: value}
            method_id = "ablation-base" if entry == base else f"ablation-{prefix}{value}"
            out.setdefault(method_id, {"entry": entry, "points": []})
            out[method_id]["points"].append((param, value))
    return out


def ablation_frame(records: list[dict], methods: dict[str, dict], base_entry: dict) -> pd.DataFrame:
    """Tidy rows (axis, value, lds, ci_low, ci_high, …) from LDS records of the ablation methods."""
    by_id = {r["method_id"]: r for r in records}
    rows = []
    for method_id, info in methods.items():
        record = by_id[method_id]
        points = list(info["points"])
        if method_id == "ablation-base":
            points = [(param, base_entry[param]) for param, _, _ in AXES.values()]
        for param, value in points:
            rows.append({"axis": param, "value": str(value), "method_id": method_id,
                         "method": record["label"], "function": info["entry"].get("function"),
                         "query_set": record["query_set"], "lds": record["lds"],
                         "ci_low": record["ci_low"], "ci_high": record["ci_high"],
                         "n_queries": record["n_queries"], "n_subsets": record["n_subsets"],
                         "n_timesteps": info["entry"].get("n_timesteps"), "k": info["entry"].get("k"),
                         "schedule": info["entry"].get("schedule"),
                         "projection": info["entry"].get("projection")})
    df = pd.DataFrame(rows).drop_duplicates(["axis", "value"])
    numeric = pd.to_numeric(df["value"], errors="coerce")
    df = df.assign(_num=numeric).sort_values(["axis", "_num", "value"]).drop(columns="_num")
    return df.reset_index(drop=True)


def lambda_frame(score_sidecars: list[dict]) -> pd.DataFrame:
    """Tune-subset LDS against λ for every method that chose λ (from the scores' sidecars)."""
    rows = []
    for side in score_sidecars:
        for lam, value in side.get("tune_lds_by_lambda", {}).items():
            rows.append({"method_id": side["method_id"], "method": side["label"],
                         "variant": side["variant"], "query_set": side["query_set"],
                         "n_timesteps": side.get("n_timesteps"), "lambda_relative": float(lam),
                         "tune_lds": 100 * value,
                         "chosen": np.isclose(float(lam), side["lambda_relative"])})
    return pd.DataFrame(rows)
