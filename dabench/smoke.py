"""A paper config at tiny counts: its own architecture, resolution, data and DAG, on a CPU.

:func:`shrink` keeps what defines the scale — the UNet, the image size, the dataset and its
classes, the projection dimension k, every branch that is on — and shrinks only the counts:
images, steps, samples, subsets, seeds, timesteps, submodels. Each swept method keeps its first
setting per registered method (references to the others — counterfactual, Shapley baselines,
the proponents grid — move to it); every method takes one timestep, ensembles and
retraining-based methods at most two models, and the full model keeps one checkpoint. A CPU projection (the count-sketch) replaces fast_jl, and ``device: cpu`` sizes every
job's declared memory and time for the CPU.

``make smoke CONFIG=configs/paper/cifar2.yaml`` runs the result end to end (minutes) before a
cluster submission; the paper-smoke test runs every paper config this way and checks that each
job stayed within the memory it declared.
"""

from __future__ import annotations

import copy

SMALL = {
    "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "resume_every": 2},
    "generation": {"n_samples": 2, "inference_steps": 3},
    "lds": {"tune": {"n_subsets": 2, "n_seeds": 1}, "test": {"n_subsets": 3, "n_seeds": 2},
            "datamodel": {"n_subsets": 2, "n_seeds": 1}, "retrains_per_job": 8,
            "train": {"steps": 2, "warmup_steps": 1, "checkpoint_steps": []},
            "output": {"timesteps": 2, "noises": 1}, "bootstrap": 50},
    "counterfactual": {"n_queries": 1},
    "retrac": {"n_correlation": 4, "t_max_examples": 2, "timestep_grid": 3,
               "curve_timesteps": 3, "manipulation": {"n_examples": 2, "n_queries": 1},
               "targeted_k": [2], "targeted_queries": 2, "outliers": {"source_k": [2]}},
    "embedder": {"steps": 10},
    "shapley": {"n_samples": 8, "n_clusters": 2, "submodels_per_job": 4,
                "submodels": {"retrain": 2, "finetune": 2, "sparse": 2},
                "finetune": {"steps": 1}, "prune": {"recovery_steps": 1},
                "lds": {"alphas": [0.5], "n_subsets": 3}, "counterfactual": {"n_seeds": 1}},
}


def _shrink_data(data: dict, n_train: int, n_validation: int) -> dict:
    data = {**data, "n_train": n_train, "n_validation": n_validation}
    if data.get("outliers"):
        data["outliers"] = {**data["outliers"], "n": 2,
                            "n_validation": min(1, data["outliers"].get("n_validation") or 0)}
    return data


def shrink(config: dict, n_train: int = 6, n_validation: int = 2, data_path: str | None = None,
           name: str | None = None) -> dict:
    """The smoke version of a validated config (a new dict; validate it again to use it).
    ``data_path`` replaces data.path (and the outlier experiment's); ``name`` the run name."""
    from dabench.config import deep_update
    
    out = copy.deepcopy(config)
    out["name"] = name or f"{config['name']}-smoke"
    out["device"] = "cpu"
    out["data"] = _shrink_data(out["data"], n_train, n_validation)
    if data_path is not None and out["data"].get("path") is not None:
        out["data"]["path"] = data_path
    for key, small in SMALL.items():
        deep_update(out.setdefault(key, {}), copy.deepcopy(small))
    out["train"]["checkpoint_steps"] = [4]
    odata = out["retrac"]["outliers"].get("data")
    if odata:
        shrunk = _shrink_data({"n_train": n_train, "n_validation": n_validation, **odata},
                              n_train, n_validation)
        if data_path is not None and (odata.get("path") or config["data"].get("path")):
            shrunk["path"] = data_path
        out["retrac"]["outliers"]["data"] = shrunk
    # Methods: one setting of each registered method (the sweeps and the variants collapse onto
    # it: the same rules and feature kinds run, once).
    groups, rename = {}, {}
    for method_id, entry in config["methods"].items():
        rename[method_id] = groups.setdefault(entry["method"], method_id)
    methods = {}
    for method_id, first in rename.items():
        if method_id != first:
            continue
        entry = dict(config["methods"][method_id])
        if "n_timesteps" in entry:
            entry["n_timesteps"] = 1
        if "n_models" in entry:
            entry["n_models"] = min(entry["n_models"], 2)
        if entry.get("projection") == "fast_jl":
            entry["projection"] = "sparse"
        if "checkpoints" in entry:
            entry["checkpoints"] = []
        methods[method_id] = entry
    out["methods"] = methods

    def ids(values):
        return list(dict.fromkeys(rename.get(v, v) for v in values))

    cf = out["counterfactual"]
    cf["methods"] = ids(cf["methods"])
    shap = out["shapley"]
    if shap.get("baselines") is not None:
        shap["baselines"] = ids(shap["baselines"])
    shap["counterfactual"]["methods"] = list(dict.fromkeys(
        k if k.startswith("shapley-") else f"{rename.get(k.rsplit('.', 1)[0], k.rsplit('.', 1)[0])}"
        f".{k.rsplit('.', 1)[1]}" for k in shap["counterfactual"]["methods"]))
    prop = out["figures"]["proponents"]
    if prop.get("methods") is not None:
        prop["methods"] = ids(prop["methods"])
    for key in ("tracin", "retrac"):
        if out["retrac"].get(key) is not None:
            out["retrac"][key] = rename.get(out["retrac"][key], out["retrac"][key])
    study = out["checkpoint_selection"]
    if study.get("enabled"):
        # One checkpoint before the final model's step 4 (D-TRAK's checkpoint study).
        study.update({"methods": ids(study["methods"]), "checkpoints": [2]})
        out["train"]["checkpoint_steps"] = [2, 4]
    journey = out["journey_counterfactual"]
    if journey.get("enabled"):
        journey.update({"method": rename.get(journey["method"], journey["method"]),
                        "timesteps": journey["timesteps"][:1], "n_noises": 1})
    abl = out["ablations"]
    if abl.get("enabled"):
        abl.update({"n_timesteps": [1, 2], "k": sorted(set(abl["k"]))[:2],
                    "method": {**abl["method"], "n_timesteps": 1}})
        abl["projections"] = [p if p != "fast_jl" else "sparse" for p in abl["projections"]][:2]
    return out


def main(argv=None) -> int:
    """``python -m dabench.smoke CONFIG OUT``: write the smoke config of CONFIG to OUT."""
    import argparse

    import yaml

    from dabench import config as C

    parser = argparse.ArgumentParser(prog="python -m dabench.smoke",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("configfile")
    parser.add_argument("out")
    parser.add_argument("--n-train", type=int, default=6)
    parser.add_argument("--data-path", default=None)
    args = parser.parse_args(argv)
    small = shrink(C.load(args.configfile), n_train=args.n_train, data_path=args.data_path)
    C.validate(copy.deepcopy(small))
    from dabench.io import save_text

    save_text(args.out, yaml.safe_dump(small, sort_keys=True))
    print(f"[dabench] smoke config of {args.configfile}: {args.out} (run name {small['name']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
