"""Counterfactual evaluation (docs/computation.md §5, D-TRAK §4.4).

For a generated query x (initial noise seed s): remove the k training examples a method scores
highest for x, retrain from scratch on the rest with the full model's recipe, initialisation and
training seed, and regenerate from the same x_T (DDIM, deterministic). The further the new image
moves from x — pixel L2 distance up, embedding cosine similarity down — the more the removed
examples mattered, i.e. the more faithful the attribution. ``random`` removes k examples chosen
at random (a control every method should beat).

- :func:`choose_queries`, :func:`removal_set`: pure, seeded.
- :func:`run_counterfactual`: one retrain + regeneration (a workflow job).
- :func:`summarize`: per-query distances and per-method medians
  (:mod:`dabench.counterfactual_report` writes them as tables and figures).
"""

from __future__ import annotations

import time

import numpy as np

from dabench.io import remove_leftovers, resume_pattern
from dabench.seeds import derive_seed

RANDOM = "random"


def choose_queries(n_generation: int, n_queries: int, seed: int) -> list[int]:
    """A seeded choice of generated queries (indices into the generation set), sorted."""
    if n_queries > n_generation:
        raise ValueError(f"counterfactual.n_queries={n_queries} exceeds the {n_generation} "
                         f"generated samples (generation.n_samples)")
    rng = np.random.default_rng(derive_seed(seed, "counterfactual-queries"))
    return sorted(rng.choice(n_generation, size=n_queries, replace=False).tolist())


def n_removed(n_train: int, fraction: float) -> int:
    return max(1, int(round(fraction * n_train)))


def removal_set(scores: np.ndarray | None, k: int, n_train: int, seed: int, query: int) -> np.ndarray:
    """The k training indices removed for one query: the k highest scores (ties: lower index
    first), or k at random (seeded per query) when ``scores`` is None. Sorted."""
    if scores is None:
        rng = np.random.default_rng(derive_seed(seed, "counterfactual-random", query))
        return np.sort(rng.choice(n_train, size=k, replace=False))
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != n_train:
        raise ValueError(f"scores cover {len(scores)} training examples, the training set has {n_train}")
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def run_counterfactual(train_path, generation_path, scores_path, method_id: str, query: int,
                       fraction: float, model_cfg: dict, recipe: dict, generation_cfg: dict,
                       seed: int, out_path, model_path, resume_path) -> dict:
    """Workflow stage: remove, retrain, regenerate one query; write the result .npz (original and
    counterfactual image, removed indices) and the retrained model."""
    from dabench import model as M
    from dabench.data import conditioning
    from dabench.io import load_npy, load_npz, save_npz
    from dabench.sampling import generate

    train = load_npz(train_path)
    images = train["train_images"]
    samples = load_npz(generation_path)
    if not 0 <= query < len(samples["images"]):
        raise ValueError(f"query {query} is not in the generation set ({len(samples['images'])})")
    n_train = len(images)
    k = n_removed(n_train, fraction)
    row = None if scores_path is None else load_npy(scores_path)[query]
    removed = removal_set(row, k, n_train, seed, query)
    recipe = {**recipe, "checkpoint_steps": []}
    tic = time.perf_counter()
    unet = retrain_without(train, removed, model_cfg, recipe, seed, resume_path,
                           f"counterfactual {method_id} query {query}")
    query_cond = conditioning(samples)
    regenerated = generate(unet, M.build_scheduler(model_cfg).config,
                           samples["seeds"][query:query + 1],
                           inference_steps=generation_cfg["inference_steps"],
                           eta=generation_cfg["eta"], keep_trajectory=False,
                           cond=None if query_cond is None else query_cond.take([query]),
                           uncond=None if query_cond is None else query_cond.uncond,
                           guidance=model_cfg.get("guidance", 1.0))["images"][0]
    seconds = time.perf_counter() - tic
    M.save_model(model_path, unet,
                 {"role": "counterfactual", "method_id": method_id, "query": query,
                  "removed": removed.tolist(), "steps": recipe["steps"], "seed": seed,
                  **M.model_metadata(model_cfg, recipe, images.shape)})
    out = result(samples, model_cfg, query, regenerated, removed, row, seconds)
    save_npz(out_path, **out)
    remove_leftovers(*resume_pattern(resume_path))
    print(f"[dabench] counterfactual {method_id} query {query}: removed {k}, retrained and "
          f"regenerated in {seconds:.1f}s", flush=True)
    return out


def result(samples: dict, model_cfg: dict, query: int, image, removed: np.ndarray, row,
           seconds: float, **extra) -> dict:
    """One counterfactual's result arrays: the original and regenerated sample, what was removed
    (and how many of those the method scored positive; -1 for the random control, ``row``
    None), plus ``extra`` (e.g. the timestep of a step counterfactual). A latent model's samples
    are compared as latents (D-TRAK's latent distance); their pixels are decoded for the figures
    and the embedder."""
    out = {"original": samples["images"][query], "counterfactual": image, "removed": removed,
           "query": np.int64(query), "k": np.int64(len(removed)),
           **{key: np.int64(value) for key, value in extra.items()},
           "n_positive_removed": np.int64(-1 if row is None else int((row[removed] > 0).sum())),
           "seconds": np.float64(seconds)}
    if "pixels" in samples:
        from dabench.latent import decode_with_base

        out["original_pixels"] = samples["pixels"][query]
        out["counterfactual_pixels"] = decode_with_base(
            model_cfg["base"], np.asarray(image)[None],
            scaling_factor=model_cfg.get("scaling_factor"))[0]
    return out


def retrain_without(train: dict, removed: np.ndarray, model_cfg: dict, recipe: dict, seed: int,
                    resume_path, label: str):
    """The full model's training (recipe, initialisation and training seeds, augmentation) on
    the training set without ``removed``; returns the trained UNet. No checkpoints are kept."""
    from dabench import training as T
    from dabench.data import FLIPPED, conditioning

    images = train["train_images"]
    keep = np.setdiff1d(np.arange(len(images)), removed)
    # A latent model: retrained on the kept examples' prompts.
    result = T.train(images, keep, model_cfg, {**recipe, "checkpoint_steps": []},
                     seed=derive_seed(seed, "full-train"), init_seed=derive_seed(seed, "full-init"),
                     resume_path=resume_path, progress=label, cond=conditioning(train),
                     flipped=train.get(FLIPPED))
    return result.unet


def pixel_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L2 distance per image pair on the [0, 1] pixel scale (images given in [-1, 1])."""
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) / 2
    return np.sqrt((d.reshape(len(d), -1) ** 2).sum(1))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def summarize(results: dict, embed) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """``results``: method id -> list of result dicts (:func:`run_counterfactual`); ``embed``:
    images -> embeddings. Returns (per-query table, per-method table with medians)."""
    import pandas as pd

    rows = []
    for method_id, items in results.items():
        original = np.stack([r["original"] for r in items])
        new = np.stack([r["counterfactual"] for r in items])
        space = "latent" if "original_pixels" in items[0] else "pixel"
        if space == "latent":
            # A latent model: L2 between the latents, cosine between the decoded images' embeddings.
            from dabench.latent import latent_distance

            l2 = latent_distance(original, new)
            original = np.stack([r["original_pixels"] for r in items])
            new = np.stack([r["counterfactual_pixels"] for r in items])
        else:
            l2 = pixel_l2(original, new)
        cos = cosine(embed(original), embed(new))
        for r, d, c in zip(items, l2, cos):
            rows.append({"method_id": method_id, "query": int(r["query"]), "k": int(r["k"]),
                         "space": space,
                         "l2": float(d), "cosine": float(c),
                         "n_positive_removed": int(r["n_positive_removed"]),
                         "seconds": float(r["seconds"])})
    per_query = pd.DataFrame(rows)
    summary = (per_query.groupby("method_id", sort=False)
               .agg(median_l2=("l2", "median"), median_cosine=("cosine", "median"),
                    mean_l2=("l2", "mean"), mean_cosine=("cosine", "mean"),
                    n_queries=("query", "size"), k=("k", "first"), space=("space", "first"),
                    retrain_seconds=("seconds", "mean"))
               .reset_index())
    return per_query, summary
