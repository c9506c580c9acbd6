"""The branch's workflow stages that make and evaluate models: the design (groups, kernel and
held-out subsets), the reference F of the full model, the pruned start of sparsified FT, the
submodels of each way (retrain, fine-tune, sparsified fine-tune) evaluated by the global
properties, the baselines' group scores and the group counterfactual."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dabench.io import remove_leftovers
from dabench.seeds import derive_seed, retrain_seeds
from dabench.shapley.game import (
    AGGREGATIONS, WAY_LABELS, aggregate, draw_group_subsets, draw_kernel_subsets, group_index,
    members, shapley_values, top_groups)
from dabench.shapley.pruning import apply_masks, count_parameters, magnitude_masks


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
    """F(θ) of any model: generate the branch's fixed samples, apply the property model.

    A text-to-image model (``train_path``: its training set, for the prompts) samples guided by
    the training prompts in turn (as its generated queries are); any latent model is judged on
    the decoded images."""

    def __init__(self, classifier_path, reference_path, model_cfg: dict, generation_cfg: dict,
                 cfg: dict, seed: int, train_path=None):
        from dabench.io import load_npz
        from dabench.model import build_scheduler
        from dabench.properties import PropertyModel
        from dabench.sampling import generation_prompts, sample_seeds

        self.model = PropertyModel(classifier_path, cfg.get("aesthetic"))
        self.centroids = None if reference_path is None else load_npz(reference_path)["centroids"]
        self.scheduler = build_scheduler(model_cfg).config
        self.seeds = sample_seeds(seed, cfg["n_samples"], "shapley")
        self.generation_cfg, self.cfg, self.model_cfg = generation_cfg, cfg, model_cfg
        self.cond, self.vae = None, None
        if model_cfg.get("family") == "latent":
            if train_path is None:
                raise ValueError("a latent model's samples need its training set's prompts")
            self.cond, _ = generation_prompts(load_npz(train_path), len(self.seeds))
        if model_cfg.get("base"):
            from dabench.latent import load_autoencoder

            # Once per job.
            self.vae = load_autoencoder(model_cfg["base"], model_cfg.get("scaling_factor"))

    def samples(self, unet) -> np.ndarray:
        from dabench.sampling import generate

        cond = self.cond
        out = generate(unet, self.scheduler, self.seeds,
                       inference_steps=self.generation_cfg["inference_steps"],
                       eta=self.generation_cfg["eta"], keep_trajectory=False, cond=cond,
                       uncond=None if cond is None else cond.uncond,
                       guidance=self.model_cfg.get("guidance", 1.0))["images"]
        if self.vae is None:
            return out
        from dabench.latent import decode_latents

        return decode_latents(self.vae.to(next(unet.parameters()).device), out)

    def __call__(self, unet) -> tuple[dict, np.ndarray]:
        from dabench.properties import global_properties

        images = self.samples(unet)
        return global_properties(images, self.model, self.centroids, self.cfg["percentile"]), images


def _training_set(train_path) -> tuple[np.ndarray, object, np.ndarray | None]:
    """The training images (a latent model's: latents), their conditioning (None unless
    latent: :func:`dabench.data.conditioning`) and a latent model's latents of the mirrored
    images (flip augmentation; None otherwise)."""
    from dabench.data import FLIPPED, conditioning
    from dabench.io import load_npz

    data = load_npz(train_path)
    return data["train_images"], conditioning(data), data.get(FLIPPED)


def empty_model(unet, meta: dict, model_cfg: dict, seed: int):
    """θ_∅ of the full model ``unet`` (with its sidecar ``meta``), the model trained on no data: a
    UNet trained whole, the full model's initialisation; a LoRA fine-tune, its base (a copy of the
    full model with every adapter weight zero)."""
    import copy

    import torch

    from dabench import device as D
    from dabench import model as M

    if meta.get("model_family") == "latent":
        empty = copy.deepcopy(unet)
        with torch.no_grad():
            for p in empty.parameters():
                if p.requires_grad:
                    p.zero_()
        return empty
    cfg_u = meta["unet_config"]
    return M.build_unet(model_cfg, cfg_u["in_channels"], cfg_u["sample_size"],
                        meta.get("init_seed", derive_seed(seed, "full-init"))).to(D.current())


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
                    cfg: dict, seed: int, out_path, json_path, train_path=None) -> dict:
    """Workflow stage: the full model's samples fix the clusters (Ward, ``n_clusters``); F of θ_D
    and of θ_∅ (:func:`empty_model`). ``train_path``: the training set (a latent model's prompts)."""
    from dabench import model as M
    from dabench.io import save_json, save_npz
    from dabench.properties import fit_clusters

    unet, meta = M.load_model(full_model_path)
    ev = Evaluator(classifier_path, None, model_cfg, generation_cfg, cfg, seed, train_path)
    images = ev.samples(unet)
    ev.centroids = fit_clusters(ev.model.embed(images), cfg["n_clusters"])
    full, _ = ev(unet)
    f_empty, empty_images = ev(empty_model(unet, meta, model_cfg, seed))
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
    from dabench import training as T
    from dabench.io import save_tensors, sha256

    unet, meta = M.load_model(full_model_path)
    masks = magnitude_masks(unet, ratio)
    apply_masks(unet, masks)
    images, cond, flipped = _training_set(train_path)
    start = {k[len("model."):]: v.clone() for k, v in M.model_tensors(unet).items()}
    tic = time.perf_counter()
    result = T.train(images, np.arange(len(images)), model_cfg, recipe,
                     seed=derive_seed(seed, "shapley-recovery"), init_seed=0,
                     init_state=(sha256(full_model_path), start), masks=masks, cond=cond,
                     flipped=flipped, progress="recovery fine-tune")
    seconds = time.perf_counter() - tic
    info = {"role": "pruned", "ratio": ratio, "recipe": recipe, "seconds": seconds,
            **{k: meta[k] for k in ("unet_config", "model_family", "base", "lora") if k in meta},
            "model_config": model_cfg, **count_parameters(result.unet, masks)}
    save_tensors(out_path, {**M.model_tensors(result.unet),
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


def per_job(cfg: dict, way: str) -> int:
    """Submodels of ``way`` per job: ``shapley.submodels_per_job``, one number or one per way."""
    value = cfg["submodels_per_job"]
    return int(value[way] if isinstance(value, dict) else value)


def n_submodels(cfg: dict, family: str, way: str) -> int:
    """How many ``kernel`` submodels of ``way``, or ``heldout`` retrains, the branch trains."""
    if family == "kernel":
        return cfg["submodels"][way]
    return len(cfg["lds"]["alphas"]) * cfg["lds"]["n_subsets"]


def n_chunks(cfg: dict, family: str, way: str) -> int:
    """Jobs of the ``kernel`` submodels of ``way`` or of the ``heldout`` retrains."""
    return -(-n_submodels(cfg, family, way) // per_job(cfg, way))


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
    from dabench import training as T
    from dabench.seeds import fingerprint
    from dabench.io import load_npz, save_npz
    from dabench.properties import PROPERTIES

    design = load_npz(design_path)
    subsets = design["kernel"][:cfg["submodels"][way]] if family == "kernel" else design["heldout"]
    (images, cond, flipped), groups = _training_set(train_path), design["groups"]
    start = load_start(way, full_model_path, pruned_path)
    ev = Evaluator(classifier_path, reference_path, model_cfg, generation_cfg, cfg, seed,
                   train_path)
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
        result = T.train(images, members(groups, subsets[l]), model_cfg, recipe, seed=train_seed,
                         init_seed=init_seed,
                         init_state=None if start is None else start[0],
                         masks=None if start is None else start[1], cond=cond,
                         flipped=flipped,
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


def write_training_score(design_path, train_path, classifier_path, aesthetic: dict | None,
                         out_json) -> dict:
    """Workflow stage: the baseline that looks at no model. Each training image's quality score —
    the property model's per-image score: the classifier's logit margin, or the aesthetic
    predictor with ``aesthetic`` — aggregated to its group by mean and by max, as
    ``{"training-score.mean": entry, "training-score.max": entry}`` (a latent model's images:
    its pixels). The same group scores stand for every property, as a method baseline's."""
    from dabench.data import display_images
    from dabench.io import load_npz, save_json
    from dabench.layout import TRAINING_SCORE
    from dabench.properties import PROPERTIES, PropertyModel

    design = load_npz(design_path)
    n = design["kernel"].shape[1]
    images = display_images(load_npz(train_path), "train_images")
    scores = PropertyModel(classifier_path, aesthetic).quality_scores(images)
    what = "Aesthetic score" if aesthetic else "Quality score"
    out = {}
    for how in AGGREGATIONS:
        g = aggregate(scores[None, :], design["groups"], n, how).tolist()
        out[f"{TRAINING_SCORE}.{how}"] = {
            "label": f"{what} of the training images ({how})", "family": "similarity",
            "method_id": TRAINING_SCORE, "aggregation": how,
            "values": {p: g for p in PROPERTIES}}
    save_json(out_json, out)
    return out


def load_attributions(paths) -> dict:
    from dabench.io import load_json

    out = {}
    for p in paths:
        out.update(load_json(p))
    return out


def counterfactual_parts(cfg: dict) -> list[range]:
    """The seeds of each group-counterfactual job: ``n_seeds`` in runs of ``seeds_per_job``."""
    n = cfg["counterfactual"]["n_seeds"]
    per = cfg["counterfactual"].get("seeds_per_job") or n
    return [range(a, min(n, a + per)) for a in range(0, n, per)]


def run_counterfactual(key: str, part: int, attributions_json, train_path, design_path,
                       classifier_path, reference_path, model_cfg: dict, generation_cfg: dict,
                       recipe: dict, cfg: dict, seed: int, out_path, partial_dir) -> dict:
    """Workflow stage: retrain from scratch without the top ``fraction`` of groups by ``key``'s
    attribution of ``prop`` (``key`` = ``full``: nothing removed, the reference), one model per
    seed of ``part`` (:func:`counterfactual_parts`); F of each, and the first seed's samples for
    the image grid. :func:`merge_counterfactual` joins the parts."""
    from dabench import training as T
    from dabench.io import load_npz, save_npz
    from dabench.properties import PROPERTIES

    prop, fraction = cfg["property"], cfg["counterfactual"]["fraction"]
    parts = counterfactual_parts(cfg)
    if not 0 <= part < len(parts):
        raise ValueError(f"group counterfactual part {part}: shapley.counterfactual has "
                         f"{len(parts)} part(s) of seeds")
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
    images, cond, flipped = _training_set(train_path)
    ev = Evaluator(classifier_path, reference_path, model_cfg, generation_cfg, cfg, seed,
                   train_path)
    partial = Path(partial_dir)
    partial.mkdir(parents=True, exist_ok=True)
    values, first = [], None
    tic = time.perf_counter()
    for r in parts[part]:
        train_seed, init_seed = retrain_seeds(seed, r, "shapley")
        result = T.train(images, members(design["groups"], subset), model_cfg, recipe,
                         seed=train_seed, init_seed=init_seed, cond=cond, flipped=flipped,
                         resume_path=partial / f"{key}_seed{r}.resume.safetensors",
                         progress=f"group counterfactual {key} seed {r}")
        props, samples = ev(result.unet)
        values.append([props[p] for p in PROPERTIES])
        first = samples if first is None else first
        print(f"[dabench] group counterfactual {key} seed {r}: removed groups {removed.tolist()}, "
              f"F {props}", flush=True)
    out = {"values": np.array(values), "removed": removed, "images": first[:8],
           "seeds": np.array(list(parts[part]), dtype=np.int64),
           "seconds": np.float64(time.perf_counter() - tic)}
    save_npz(out_path, **out)
    for r in parts[part]:
        remove_leftovers(partial, f"{key}_seed{r}.resume*")
    return out


def merge_counterfactual(parts: list[dict]) -> dict:
    """One group counterfactual from its jobs' results (in part order): the values of every
    seed, the first part's images, the summed seconds."""
    if not parts:
        raise ValueError("a group counterfactual needs at least one part")
    removed = parts[0]["removed"]
    if any(not np.array_equal(p["removed"], removed) for p in parts):
        raise ValueError("the parts of a group counterfactual removed different groups")
    return {"values": np.concatenate([p["values"] for p in parts]), "removed": removed,
            "images": parts[0]["images"],
            "seconds": np.float64(sum(float(p["seconds"]) for p in parts))}
