"""Group attribution of global properties with Shapley values (docs/computation.md §7, the
sparsified-FT paper).

Groups D_1 … D_n partition the training set (the dataset's classes by default). A global property
F(θ) maps a model to a number computed from its generated samples (:mod:`dabench.properties`).
Shapley values by **KernelSHAP**: subsets S_l drawn from the Shapley kernel, then

    min_β Σ_l (F(θ_∅) + 1_{S_l}ᵀβ − F(θ_{S_l}))²   s.t.   1ᵀβ = F(θ_D) − F(θ_∅),

solved in closed form from the KKT system (:func:`kernel_shap`). θ_{S_l} comes three ways
(:data:`WAYS`): retrained from scratch, fine-tuned from θ_D, or fine-tuned from a magnitude-pruned
θ_D that was first fine-tuned on all of D to recover (**sparsified FT**). Every submodel records
its compute, so the ways are compared at equal budget (paper Figure 2).

Evaluation: the **group LDS** — Spearman correlation, over held-out subsets of groups retrained
from scratch, between F(θ_S) and Σ_{i∈S} τ_i (paper Eq. 10) — for the Shapley values and for
per-example attribution scores aggregated to groups (:func:`aggregate`, mean or max), and a
counterfactual: remove the top groups, retrain with several seeds, relative change in F.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from dabench.io import remove_leftovers
from dabench.layout import SHAPLEY_WAYS
from dabench.seeds import derive_seed, retrain_seeds

WAYS = SHAPLEY_WAYS
WAY_LABELS = {"retrain": "Retraining", "finetune": "FT", "sparse": "Sparsified FT"}
AGGREGATIONS = ("mean", "max")


# ------------------------------------------------------------------------------------------------
# Groups and subsets


def group_index(labels: np.ndarray) -> tuple[np.ndarray, list]:
    """``(group of each example (N,) int, group names)``: one group per distinct label, sorted."""
    names, groups = np.unique(np.asarray(labels), return_inverse=True)
    return groups.astype(np.int64), [n.item() if hasattr(n, "item") else n for n in names]


def members(groups: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Training indices of the examples whose group is in the boolean group mask ``subset``."""
    return np.flatnonzero(np.asarray(subset, bool)[groups])


def kernel_size_probabilities(n: int) -> np.ndarray:
    """P(|S| = k) for k = 1 … n−1 under the Shapley kernel p(S) ∝ (n−1) / (C(n,|S|)·|S|·(n−|S|))."""
    if n < 2:
        raise ValueError(f"Shapley values need at least 2 groups, got {n}")
    k = np.arange(1, n)
    p = (n - 1) / (k * (n - k))
    return p / p.sum()


def draw_kernel_subsets(n: int, m: int, seed: int) -> np.ndarray:
    """``m`` group subsets (bool, m × n) from the Shapley kernel, in antithetic pairs (S, D∖S):
    a size from :func:`kernel_size_probabilities`, then a uniform subset of that size. Any prefix
    of even length is itself a paired sample, so fewer submodels use the first rows."""
    rng = np.random.default_rng(derive_seed(seed, "shapley-kernel-subsets"))
    p = kernel_size_probabilities(n)
    rows = []
    for _ in range((m + 1) // 2):
        k = rng.choice(np.arange(1, n), p=p)
        s = np.zeros(n, bool)
        s[rng.choice(n, size=k, replace=False)] = True
        rows += [s, ~s]
    return np.array(rows[:m], dtype=bool).reshape(m, n)


def draw_group_subsets(n: int, alpha: float, m: int, seed: int, purpose: str) -> np.ndarray:
    """``m`` uniform subsets of ``round(alpha·n)`` groups (bool, m × n): the held-out LDS subsets."""
    size = int(round(alpha * n))
    if not 1 <= size <= n - 1:
        raise ValueError(f"shapley.lds.alphas: {alpha} of {n} groups is {size} groups; a subset "
                         f"needs between 1 and {n - 1}")
    rng = np.random.default_rng(derive_seed(seed, "shapley-lds", purpose, alpha))
    out = np.zeros((m, n), dtype=bool)
    for row in out:
        row[rng.choice(n, size=size, replace=False)] = True
    return out


# ------------------------------------------------------------------------------------------------
# Shapley values


def kernel_shap(subsets: np.ndarray, values: np.ndarray, f_empty: float, f_full: float,
                weights: np.ndarray | None = None) -> np.ndarray:
    """KernelSHAP with the efficiency constraint (docs/computation.md §7), closed form.

    ``subsets`` (m, n) bool, ``values`` (m,) = F(θ_{S_l}). Minimises
    Σ_l w_l (f_empty + 1_{S_l}ᵀβ − values_l)² subject to Σβ = f_full − f_empty; the KKT system
    [[ZᵀWZ, 1], [1ᵀ, 0]] [β; ν] = [ZᵀW(values − f_empty); f_full − f_empty] is solved by least
    squares, so fewer subsets than groups still give the minimum-norm solution. With kernel-drawn
    subsets the weights are 1 (the kernel is in the sampling); with every subset and the kernel
    as weights the result is the exact Shapley value.
    """
    z = np.asarray(subsets, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64) - f_empty
    w = np.ones(len(z)) if weights is None else np.asarray(weights, dtype=np.float64)
    if z.ndim != 2 or len(z) != len(y) or len(w) != len(y):
        raise ValueError(f"kernel_shap: {z.shape} subsets, {y.shape} values, {w.shape} weights")
    n = z.shape[1]
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, :n] = z.T @ (w[:, None] * z)
    kkt[:n, n] = kkt[n, :n] = 1.0
    rhs = np.concatenate([z.T @ (w * y), [f_full - f_empty]])
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0][:n]


# ------------------------------------------------------------------------------------------------
# Baselines and evaluation


def aggregate(scores: np.ndarray, groups: np.ndarray, n_groups: int, how: str) -> np.ndarray:
    """Group scores from per-example attribution scores (queries × N): each training example's
    score averaged over the queries (the generated samples whose distribution F describes), then
    the ``mean`` or ``max`` over each group's examples."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")
    per_example = np.asarray(scores, np.float64).reshape(-1, len(groups)).mean(0)
    out = np.full(n_groups, np.nan)
    for g in range(n_groups):
        vals = per_example[groups == g]
        if len(vals):
            out[g] = vals.mean() if how == "mean" else vals.max()
    return out


def top_groups(attribution: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the ``ceil(fraction·n)`` groups with the largest attribution (ties: lower index)."""
    k = max(1, math.ceil(fraction * len(attribution) - 1e-9))
    order = np.lexsort((np.arange(len(attribution)), -np.asarray(attribution, np.float64)))
    return np.sort(order[:k])


# ------------------------------------------------------------------------------------------------
# Pruning


def magnitude_masks(unet, ratio: float) -> dict:
    """Global magnitude (L1) pruning: 0/1 masks that zero the ``ratio`` fraction of smallest-|w|
    weights over every convolution and linear weight matrix together (biases and norms are kept)."""
    import torch

    if not 0 <= ratio < 1:
        raise ValueError(f"shapley.prune.ratio must be in [0, 1), got {ratio}")
    prunable = {name: p for name, p in unet.named_parameters()
                if name.endswith(".weight") and p.dim() >= 2}
    flat = torch.cat([p.detach().abs().flatten() for p in prunable.values()])
    k = int(ratio * flat.numel())
    if k == 0:
        return {name: torch.ones_like(p) for name, p in prunable.items()}
    threshold = torch.kthvalue(flat, k).values
    return {name: (p.detach().abs() > threshold).to(p.dtype) for name, p in prunable.items()}


def apply_masks(unet, masks: dict) -> None:
    import torch

    named = dict(unet.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            named[name].mul_(m)


def count_parameters(unet, masks: dict | None = None) -> dict:
    """Total parameters and non-zero ones after pruning."""
    total = sum(p.numel() for p in unet.parameters())
    zeros = sum(int((m == 0).sum()) for m in (masks or {}).values())
    return {"parameters": int(total), "nonzero": int(total - zeros)}


# ------------------------------------------------------------------------------------------------
# Submodels: retrain, fine-tune, sparsified fine-tune; each evaluated by the global properties


def recipes(config: dict) -> dict:
    """Training recipes of the branch: ``retrain`` (from scratch: the LDS retrain recipe, so the
    group game is played with the benchmark's retrains), ``finetune`` / ``sparse`` (a few steps from
    θ_D or the pruned θ_D) and ``recovery`` (the pruned model fine-tuned on all of D)."""
    from dabench.config import training_recipe

    cfg = config["shapley"]
    retrain = {**training_recipe(config, "lds"), "checkpoint_steps": []}
    tune = {**retrain, "steps": cfg["finetune"]["steps"], "lr": cfg["finetune"]["lr"],
            "warmup_steps": 0}
    recovery = {**tune, "steps": cfg["prune"]["recovery_steps"]}
    return {"retrain": retrain, "finetune": tune, "sparse": tune, "recovery": recovery}


class Evaluator:
    """F(θ) of any model: generate the branch's fixed samples, apply the property model."""

    def __init__(self, classifier_path, reference_path, model_cfg: dict, generation_cfg: dict,
                 cfg: dict, seed: int):
        from dabench.io import load_npz
        from dabench.model import build_scheduler
        from dabench.properties import PropertyModel
        from dabench.sampling import sample_seeds

        self.model = PropertyModel(classifier_path)
        self.centroids = None if reference_path is None else load_npz(reference_path)["centroids"]
        self.scheduler = build_scheduler(model_cfg).config
        self.seeds = sample_seeds(seed, cfg["n_samples"], "shapley")
        self.generation_cfg, self.cfg = generation_cfg, cfg

    def samples(self, unet) -> np.ndarray:
        from dabench.sampling import generate

        return generate(unet, self.scheduler, self.seeds,
                        inference_steps=self.generation_cfg["inference_steps"],
                        eta=self.generation_cfg["eta"], keep_trajectory=False)["images"]

    def __call__(self, unet) -> tuple[dict, np.ndarray]:
        from dabench.properties import global_properties

        images = self.samples(unet)
        return global_properties(images, self.model, self.centroids, self.cfg["percentile"]), images


def write_design(train_path, cfg: dict, seed: int, out_path, info_path) -> dict:
    """Workflow stage: the groups (the training set's labels), the kernel subsets every way draws
    its first rows from, and the held-out subsets of each α for the group LDS."""
    from dabench.io import load_npz, save_json, save_npz

    groups, names = group_index(load_npz(train_path)["labels"])
    n = len(names)
    if n < 2:
        raise ValueError(f"shapley.groups: the training set has {n} label(s); group Shapley needs "
                         f"at least 2 groups")
    # At least 1024 rows, so that asking for more submodels never redraws the design.
    kernel = draw_kernel_subsets(n, max(1024, *cfg["submodels"].values()), seed)
    lds = cfg["lds"]
    heldout = [draw_group_subsets(n, a, lds["n_subsets"], seed, "heldout") for a in lds["alphas"]]
    alphas = np.repeat(np.asarray(lds["alphas"], np.float64), lds["n_subsets"])
    save_npz(out_path, groups=groups, kernel=kernel, heldout=np.concatenate(heldout),
             heldout_alpha=alphas)
    info = {"groups": [str(x) for x in names], "n_groups": n,
            "sizes": np.bincount(groups, minlength=n).tolist(), "n_kernel": len(kernel),
            "n_heldout": int(len(alphas)), "alphas": lds["alphas"]}
    save_json(info_path, info)
    return info


def write_reference(full_model_path, classifier_path, model_cfg: dict, generation_cfg: dict,
                    cfg: dict, seed: int, out_path, json_path) -> dict:
    """Workflow stage: the full model's samples fix the clusters (Ward, ``n_clusters``); F of θ_D
    and of θ_∅ (the untrained model: the full model's initialisation)."""
    from dabench import device as D
    from dabench import model as M
    from dabench.io import save_json, save_npz
    from dabench.properties import fit_clusters

    unet, meta = M.load_model(full_model_path)
    ev = Evaluator(classifier_path, None, model_cfg, generation_cfg, cfg, seed)
    images = ev.samples(unet)
    ev.centroids = fit_clusters(ev.model.embed(images), cfg["n_clusters"])
    full, _ = ev(unet)
    cfg_u = meta["unet_config"]
    empty = M.build_unet(model_cfg, cfg_u["in_channels"], cfg_u["sample_size"],
                         meta.get("init_seed", derive_seed(seed, "full-init"))).to(D.current())
    f_empty, empty_images = ev(empty)
    save_npz(out_path, centroids=ev.centroids, images=images, empty_images=empty_images,
             seeds=ev.seeds)
    out = {"full": full, "empty": f_empty, "n_clusters": int(len(ev.centroids)),
           "n_samples": int(len(images))}
    save_json(json_path, out)
    print(f"[dabench] shapley reference: F(θ_D) = {full}, F(θ_∅) = {f_empty}", flush=True)
    return out


def write_pruned(full_model_path, train_path, model_cfg: dict, recipe: dict, ratio: float,
                 seed: int, out_path) -> dict:
    """Workflow stage: global magnitude pruning of θ_D, then fine-tuning on all of D to recover
    (masks kept); the pruned model and its masks in one safetensors file."""
    from dabench import model as M
    from dabench.io import load_npz, save_tensors, sha256

    unet, meta = M.load_model(full_model_path)
    masks = magnitude_masks(unet, ratio)
    apply_masks(unet, masks)
    images = load_npz(train_path)["train_images"]
    tic = time.perf_counter()
    result = M.train(images, np.arange(len(images)), model_cfg, recipe,
                     seed=derive_seed(seed, "shapley-recovery"), init_seed=0,
                     init_state=(sha256(full_model_path), {k: v.clone() for k, v in
                                                         unet.state_dict().items()}),
                     masks=masks, progress="recovery fine-tune")
    seconds = time.perf_counter() - tic
    info = {"role": "pruned", "ratio": ratio, "recipe": recipe, "seconds": seconds,
            "unet_config": meta["unet_config"], "model_config": model_cfg,
            **count_parameters(result.unet, masks)}
    save_tensors(out_path, {**{f"model.{k}": v for k, v in result.unet.state_dict().items()},
                            **{f"mask.{k}": m for k, m in masks.items()}}, info)
    print(f"[dabench] pruned {ratio:.0%} of the weights: {info['nonzero']} of "
          f"{info['parameters']} parameters left; recovery fine-tune {seconds:.1f}s", flush=True)
    return info


def load_start(way: str, full_model_path, pruned_path) -> tuple | None:
    """``(init_state, masks)`` a way starts from: None for retraining from scratch."""
    from dabench.io import load_tensors, sha256

    if way == "retrain":
        return None
    path = full_model_path if way == "finetune" else pruned_path
    tensors, _ = load_tensors(path)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    masks = {k[len("mask."):]: v for k, v in tensors.items() if k.startswith("mask.")}
    return (sha256(path), state), (masks or None)


def chunk_rows(n: int, per_job: int, chunk: int) -> list[int]:
    return list(range(chunk * per_job, min(n, (chunk + 1) * per_job)))


def run_models(way: str, family: str, chunk: int, per_job: int, train_path, design_path,
               full_model_path, pruned_path, classifier_path, reference_path, model_cfg: dict,
               generation_cfg: dict, recipe: dict, cfg: dict, seed: int, out_path,
               partial_dir) -> dict:
    """Workflow stage: one job of group submodels — ``family`` ``kernel`` (the first
    ``shapley.submodels[way]`` kernel subsets) or ``heldout`` (retrained, for the group LDS).
    Each finished submodel is kept in ``partial_dir`` (a killed job resumes); the chunk file holds
    per submodel its row, the three properties, and its training and evaluation seconds."""
    from dabench import model as M
    from dabench.seeds import fingerprint
    from dabench.io import load_npz, save_npz
    from dabench.properties import PROPERTIES

    design = load_npz(design_path)
    subsets = design["kernel"][:cfg["submodels"][way]] if family == "kernel" else design["heldout"]
    images, groups = load_npz(train_path)["train_images"], design["groups"]
    start = load_start(way, full_model_path, pruned_path)
    ev = Evaluator(classifier_path, reference_path, model_cfg, generation_cfg, cfg, seed)
    key = fingerprint({"way": way, "recipe": recipe, "model": model_cfg, "seed": seed,
                       "start": None if start is None else start[0][0], "cfg": cfg,
                       "generation": generation_cfg})
    partial = Path(partial_dir)
    partial.mkdir(parents=True, exist_ok=True)
    rows = []
    items = chunk_rows(len(subsets), per_job, chunk)
    for n_done, l in enumerate(items):
        done = partial / f"{family}{l:04d}.{key}.npz"
        if done.exists():
            rows.append(load_npz(done))
            continue
        train_seed, init_seed = retrain_seeds(seed, 0, "shapley")
        tic = time.perf_counter()
        result = M.train(images, members(groups, subsets[l]), model_cfg, recipe, seed=train_seed,
                         init_seed=init_seed,
                         init_state=None if start is None else start[0],
                         masks=None if start is None else start[1],
                         resume_path=partial / f"{family}{l:04d}.{key}.resume.safetensors",
                         progress=f"{WAY_LABELS[way]} {family} {n_done + 1}/{len(items)}")
        t_train = time.perf_counter() - tic
        tic = time.perf_counter()
        props, _ = ev(result.unet)
        row = {"row": np.int64(l), "seconds_train": np.float64(t_train),
               "seconds_eval": np.float64(time.perf_counter() - tic),
               **{p: np.float64(props[p]) for p in PROPERTIES}}
        save_npz(done, **row)
        remove_leftovers(partial, f"{family}{l:04d}.{key}.resume*")
        rows.append(row)
        print(f"[dabench] {WAY_LABELS[way]} submodel {l} ({family}): train "
              f"{t_train:.1f}s, F {props}", flush=True)
    out = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]} if rows else {}
    save_npz(out_path, **out)
    return out


def load_chunks(paths: list) -> dict:
    from dabench.io import load_npz

    parts = [load_npz(p) for p in paths]
    parts = [p for p in parts if p]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(out["row"])
    return {k: v[order] for k, v in out.items()}


# ------------------------------------------------------------------------------------------------
# Attributions, counterfactual, tables


def shapley_values(design: dict, reference: dict, rows: dict, n_rows: int | None = None) -> dict:
    """KernelSHAP values per property from a way's submodels (the first ``n_rows`` of them)."""
    from dabench.properties import PROPERTIES

    take = slice(None) if n_rows is None else slice(0, n_rows)
    z = design["kernel"][rows["row"][take]]
    return {p: kernel_shap(z, rows[p][take], reference["empty"][p], reference["full"][p])
            for p in PROPERTIES}


def write_way_values(design_path, reference_json, chunk_paths: list, way: str, out_json) -> dict:
    """Workflow stage: the Shapley values of one way (KernelSHAP over all its submodels), per
    property, as ``{"shapley-<way>": entry}``."""
    from dabench.io import load_json, load_npz, save_json

    rows = load_chunks(chunk_paths)
    values = shapley_values(load_npz(design_path), load_json(reference_json), rows)
    out = {f"shapley-{way}": {"label": f"{WAY_LABELS[way]} Shapley", "family": "shapley",
                              "way": way, "n_submodels": int(len(rows["row"])),
                              "values": {p: v.tolist() for p, v in values.items()}}}
    save_json(out_json, out)
    return out


def write_baseline(design_path, scores_path, method_id: str, label: str, family: str,
                   out_json) -> dict:
    """Workflow stage: one method's per-example scores of the generated samples aggregated to
    groups by mean and by max, as ``{"<id>.mean": entry, "<id>.max": entry}`` (the same group
    scores stand for every property: the baselines do not see F)."""
    from dabench.io import load_npy, load_npz, save_json
    from dabench.properties import PROPERTIES

    design = load_npz(design_path)
    n = design["kernel"].shape[1]
    scores = load_npy(scores_path)
    out = {}
    for how in AGGREGATIONS:
        g = aggregate(scores, design["groups"], n, how).tolist()
        out[f"{method_id}.{how}"] = {"label": f"{label} ({how})", "family": family,
                                     "method_id": method_id, "aggregation": how,
                                     "values": {p: g for p in PROPERTIES}}
    save_json(out_json, out)
    return out


def load_attributions(paths) -> dict:
    from dabench.io import load_json

    out = {}
    for p in paths:
        out.update(load_json(p))
    return out


def run_counterfactual(key: str, attributions_json, train_path, design_path, classifier_path,
                       reference_path, model_cfg: dict, generation_cfg: dict, recipe: dict,
                       cfg: dict, seed: int, out_path, partial_dir) -> dict:
    """Workflow stage: retrain from scratch without the top ``fraction`` of groups by ``key``'s
    attribution of ``prop`` (``key`` = ``full``: nothing removed, the reference), one model per
    seed; F of each, and the first seed's samples for the image grid."""
    from dabench import model as M
    from dabench.io import load_npz, save_npz
    from dabench.properties import PROPERTIES

    prop, fraction = cfg["property"], cfg["counterfactual"]["fraction"]
    design = load_npz(design_path)
    n = design["kernel"].shape[1]
    if key == "full":
        removed = np.array([], dtype=np.int64)
    else:
        attributions = load_attributions([attributions_json])
        if key not in attributions:
            raise ValueError(f"shapley.counterfactual.methods: {key!r} is not an attribution of "
                             f"this run (have: {sorted(attributions)})")
        removed = top_groups(np.asarray(attributions[key]["values"][prop]), fraction)
    keep = np.setdiff1d(np.arange(n), removed)
    subset = np.zeros(n, bool)
    subset[keep] = True
    images = load_npz(train_path)["train_images"]
    ev = Evaluator(classifier_path, reference_path, model_cfg, generation_cfg, cfg, seed)
    partial = Path(partial_dir)
    partial.mkdir(parents=True, exist_ok=True)
    values, first = [], None
    tic = time.perf_counter()
    for r in range(cfg["counterfactual"]["n_seeds"]):
        train_seed, init_seed = retrain_seeds(seed, r, "shapley")
        result = M.train(images, members(design["groups"], subset), model_cfg, recipe,
                         seed=train_seed, init_seed=init_seed,
                         resume_path=partial / f"{key}_seed{r}.resume.safetensors",
                         progress=f"group counterfactual {key} seed {r}")
        props, samples = ev(result.unet)
        values.append([props[p] for p in PROPERTIES])
        first = samples if first is None else first
        print(f"[dabench] group counterfactual {key} seed {r}: removed groups {removed.tolist()}, "
              f"F {props}", flush=True)
    out = {"values": np.array(values), "removed": removed, "images": first[:8],
           "seconds": np.float64(time.perf_counter() - tic)}
    save_npz(out_path, **out)
    remove_leftovers(partial, f"{key}_seed*.resume*")
    return out


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


# ------------------------------------------------------------------------------------------------
# Results as frames (dabench.shapley_report writes them as tables and figures)


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


def runtime_and_budget(design: dict, reference: dict, heldout: dict, way_rows: dict,
                       pruned: dict, alphas: list, bootstrap: dict, seed: int):
    """Minutes per submodel of each way (paper Table 2) and group LDS against the compute budget
    in units of one retrain, every second submodel count (Figure 2, Table 4). ``way_rows``: way
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
        for m in range(2, len(cost) + 1, 2):
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
