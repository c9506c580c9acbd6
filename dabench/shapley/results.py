"""The branch's results as frames (:mod:`dabench.shapley_report` writes them): group LDS of
every attribution, minutes per submodel and LDS against compute, the counterfactual change."""

from __future__ import annotations

import numpy as np

from dabench.shapley.game import WAY_LABELS, shapley_values


def _lds_rows(design: dict, heldout: dict, attribution: dict, alphas: list, bootstrap: dict,
              seed: int) -> list:
    from dabench.metrics import group_lds
    from dabench.properties import PROPERTIES

    z_all = design["heldout"][heldout["row"]]
    a_all = design["heldout_alpha"][heldout["row"]]
    rows = []
    for p in PROPERTIES:
        for a in alphas:
            sel = np.isclose(a_all, a)
            rows.append({"property": p, "alpha": a,
                         **group_lds(attribution[p], z_all[sel], heldout[p][sel], seed=seed,
                                     **bootstrap)})
    return rows


def values_frame(attributions: dict):
    """One row per (attribution, property, group): its value."""
    import pandas as pd

    return pd.DataFrame([{"key": k, "method": v["label"], "family": v["family"], "property": p,
                          "group": g, "value": x}
                         for k, v in attributions.items() for p, vals in v["values"].items()
                         for g, x in enumerate(vals)])


def lds_frame(design: dict, heldout: dict, attributions: dict, alphas: list, bootstrap: dict,
              seed: int):
    """Group LDS of every attribution, per property and α (paper Tables 1, 3)."""
    import pandas as pd

    return pd.DataFrame([{"key": k, "method": v["label"], "family": v["family"], **r}
                         for k, v in attributions.items()
                         for r in _lds_rows(design, heldout, {p: np.asarray(x) for p, x in
                                                             v["values"].items()}, alphas,
                                            bootstrap, seed)])


def _way_runtime(way: str, rows: dict, unit: float, fixed: float, pruned: dict) -> dict:
    cost = rows["seconds_train"] + rows["seconds_eval"]
    return {"way": WAY_LABELS[way], "n_submodels": len(cost),
            "minutes_train": rows["seconds_train"].mean() / 60,
            "minutes_eval": rows["seconds_eval"].mean() / 60,
            "minutes": cost.mean() / 60, "minutes_sd": cost.std(ddof=0) / 60,
            "speedup_vs_retrain": unit / cost.mean(), "fixed_minutes": fixed / 60,
            "nonzero_parameters": pruned.get("nonzero") if way == "sparse" else None}


def budget_points(n_submodels: int) -> list[int]:
    """Submodel counts of the budget curve: 2, 4, … and the last one, ``n_submodels`` (an odd
    count, the default's 3 retrained submodels, still ends on the final value)."""
    return sorted(set(range(2, n_submodels + 1, 2)) | ({n_submodels} if n_submodels >= 2 else set()))


def runtime_and_budget(design: dict, reference: dict, heldout: dict, way_rows: dict,
                       pruned: dict, alphas: list, bootstrap: dict, seed: int):
    """Minutes per submodel of each way (paper Table 2) and group LDS against the compute budget
    in units of one retrain, at every second submodel count and always at the way's last one (its
    final value, the one the tables report; Figure 2, Table 4). ``way_rows``: way
    -> :func:`load_chunks` of its kernel submodels; ``pruned``: the pruning record ({} when
    sparsified FT is not run)."""
    import pandas as pd

    held_cost = heldout["seconds_train"] + heldout["seconds_eval"]
    unit = float(held_cost.mean())
    runtime, budget = [], []
    for way, rows in way_rows.items():
        fixed = float(pruned.get("seconds", 0.0)) if way == "sparse" else 0.0
        runtime.append(_way_runtime(way, rows, unit, fixed, pruned))
        cost = rows["seconds_train"] + rows["seconds_eval"]
        for m in budget_points(len(cost)):
            values = shapley_values(design, reference, rows, m)
            for r in _lds_rows(design, heldout, values, alphas, bootstrap, seed):
                budget.append({"way": WAY_LABELS[way], "n_submodels": m,
                               "budget": (fixed + cost[:m].sum()) / unit, **r})
    runtime.append({"way": "Retraining (held-out LDS models)", "n_submodels": len(heldout["row"]),
                    "minutes": unit / 60, "minutes_sd": held_cost.std() / 60,
                    "minutes_train": heldout["seconds_train"].mean() / 60,
                    "minutes_eval": heldout["seconds_eval"].mean() / 60,
                    "speedup_vs_retrain": 1.0, "fixed_minutes": 0.0, "nonzero_parameters": None})
    return pd.DataFrame(runtime), pd.DataFrame(budget)


def counterfactual_frame(cf: dict, attributions: dict, cfg: dict):
    """Relative change (%) of every property after removing each attribution's top groups,
    against the reference retrains (``cf["full"]``), paired by seed (paper Figure 3)."""
    import pandas as pd

    from dabench.properties import PROPERTIES

    base = cf["full"]["values"]
    rows = []
    for k, res in cf.items():
        if k == "full":
            continue
        change = 100 * (res["values"] - base) / np.abs(base)
        for j, p in enumerate(PROPERTIES):
            rows.append({"key": k, "method": attributions[k]["label"],
                         "family": attributions[k]["family"], "property": p,
                         "ranked_by": cfg["property"], "removed": res["removed"].tolist(),
                         "f_full": base[:, j].mean(), "f_removed": res["values"][:, j].mean(),
                         "change_pct": change[:, j].mean(),
                         "change_sd": change[:, j].std(ddof=0),
                         "n_seeds": len(change)})
    return pd.DataFrame(rows)
