"""Diffusion-ReTrac analyses of timestep-induced bias (docs/computation.md §6; Xie et al. §4.2, §6).

Pure functions first (each checked on small cases in ``tests/test_retrac.py``), then the
computations that turn checkpoints, features and scores into tidy frames
(:mod:`dabench.retrac_report` writes them as tables):

- :func:`norm_vs_timestep`: each training example's exact gradient norm at its logged training
  timestep, per checkpoint (paper Figure 1);
- :func:`timestep_norms`: gradient norms over timesteps — their mean over examples on a grid
  gives t_max (Definition 1); one example's curve over all T timesteps is Figure 3;
- :func:`correlation`: Algorithm 1 — Spearman between |t_i − t_max| and the rank of x_i's norm
  among all training examples, plus a linear fit (slope, p-value);
- :func:`rank_rise`: timestep manipulation — how far an uninfluential example's |score| rank
  rises when its training gradient is recomputed at t_max;
- :func:`distinct_proportion`: targeted attribution (Table 1);
- :func:`outlier_share` and :func:`source_precision`: outlier detection (Table 2) and image source
  tracing (Figure 4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dabench.seeds import derive_seed


# ------------------------------------------------------------------------------------------------
# Pure functions


def ranks_descending(values: np.ndarray) -> np.ndarray:
    """Rank 1 = largest value (ties by order of appearance), (N,) int."""
    order = np.argsort(-np.asarray(values), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def correlation(distance: np.ndarray, norm_rank: np.ndarray) -> dict:
    """Algorithm 1: Spearman ρ between |t_i − t_max| and the norm rank (1 = largest norm) of the
    sampled examples, and a least-squares line rank ≈ intercept + slope·distance."""
    from scipy import stats

    rho, p = stats.spearmanr(distance, norm_rank)
    fit = stats.linregress(np.asarray(distance, float), np.asarray(norm_rank, float))
    return {"spearman": float(rho), "spearman_p": float(p), "slope": float(fit.slope),
            "intercept": float(fit.intercept), "slope_p": float(fit.pvalue), "n": len(distance)}


def rank_rise(scores: np.ndarray, chosen: np.ndarray, new_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of |score| (1 = most influential) of the ``chosen`` training examples before and
    after each one alone gets ``new_scores`` (the other examples keep theirs)."""
    mag = np.abs(np.asarray(scores, dtype=np.float64))
    before = ranks_descending(mag)[chosen]
    after = np.empty(len(chosen), dtype=np.int64)
    for j, (i, value) in enumerate(zip(chosen, np.abs(new_scores))):
        others = np.delete(mag, i)
        # Ties keep the example below the others, as in ranks_descending's stable order.
        after[j] = 1 + int(np.sum(others > value)) + int(np.sum(others[:i] == value))
    return before, after


def least_influential(scores_row: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` training examples with the smallest |score| (Diffusion-TracIn's "uninfluential",
    neither proponent nor opponent) — at most half the training set."""
    n = max(1, min(n, len(scores_row) // 2))
    return np.argsort(np.abs(scores_row), kind="stable")[:n]


def distinct_proportion(scores: np.ndarray, k: int) -> float:
    """Proportion of distinct training examples among the Q·k top-k proponents of Q queries
    (paper Table 1; 1 = every query has its own proponents)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return len(np.unique(top)) / top.size


def outlier_share(self_influence: np.ndarray, is_outlier: np.ndarray, top: int) -> float:
    """Share of outliers among the ``top`` training examples of highest self-influence."""
    order = np.argsort(-np.asarray(self_influence), kind="stable")[:top]
    return float(np.mean(np.asarray(is_outlier)[order]))


def source_precision(scores: np.ndarray, query_origin: np.ndarray, train_origin: np.ndarray,
                     k: int) -> np.ndarray:
    """Per query: the share of its top-k proponents from the query's own source, (Q,)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :min(k, scores.shape[1])]
    return (np.asarray(train_origin)[top] == np.asarray(query_origin)[:, None]).mean(axis=1)


# ------------------------------------------------------------------------------------------------
# Gradients


def gradient_norms(unet, scheduler, images: np.ndarray, timesteps: np.ndarray,
                   noise_seeds: np.ndarray) -> np.ndarray:
    """Exact ‖∇_θ ℓ(x_b, t_b, ε_b; θ)‖ for rows b, ε_b from its seed, (B,)."""
    return np.concatenate([norms for _, _, norms in
                           _gradients(unet, scheduler, images, timesteps, noise_seeds)])


def _gradients(unet, scheduler, images, timesteps, noise_seeds, projectors=()):
    """Per row b: ∇ℓ(x_b, t_b, ε_b) in batches planned for the job's memory budget
    (:func:`dabench.gradients.plan_gradients`, one item per example). Yields ``(rows, projected,
    norms)``: the batch's row indices, each projector's (B, k) projection as float64 arrays, and
    the exact norms — the gradients themselves never leave the batch."""
    import torch

    from dabench import device as D
    from dabench.gradients import block_norms, example_gradients, plan_gradients
    from dabench.model import example_noise
    from dabench.profile import module_profile

    device = next(unet.parameters()).device
    shape = tuple(images.shape[1:])
    p = sum(q.numel() for q in unet.parameters())
    plan = plan_gradients(p, module_profile(unet)["activation_bytes"], 1, False,
                          D.memory_budget(device), n_examples=max(len(images), 1),
                          device=device.type)
    for start in range(0, len(images), plan.batch):
        sl = slice(start, start + plan.batch)
        x0 = torch.as_tensor(images[sl], device=device)
        t = torch.as_tensor(np.asarray(timesteps[sl]), device=device)[:, None]
        noise = example_noise(np.asarray(noise_seeds[sl]), shape)[:, None].to(device)
        blocks = example_gradients(unet, scheduler, x0, t, noise, "loss", plan=plan)
        norms = block_norms(blocks).cpu().numpy()
        projected = [proj.project(blocks).double().cpu().numpy() for proj in projectors]
        del blocks
        yield np.arange(sl.start, sl.start + len(norms)), projected, norms


def timestep_norms(unet, scheduler, images: np.ndarray, grid: np.ndarray,
                   noise_seeds: np.ndarray) -> np.ndarray:
    """Gradient norms of each image (its own fixed noise) at each grid timestep, (B, len(grid))."""
    b = len(images)
    reps = np.repeat(np.arange(b), len(grid))
    norms = gradient_norms(unet, scheduler, images[reps], np.tile(grid, b), noise_seeds[reps])
    return norms.reshape(b, len(grid))


# ------------------------------------------------------------------------------------------------
# Workflow stages


def norm_analyses(checkpoints: dict, model_cfg: dict, train_path, training_log_path,
                  replay_norm_paths: dict, cfg: dict, seed: int) -> dict[str, pd.DataFrame]:
    """Norm vs timestep, t_max and one example's curve, Algorithm 1, per checkpoint.

    ``checkpoints``: step -> checkpoint path; ``replay_norm_paths``: step -> the exact norms of
    the replayed training gradients (``features/stepN/<replay id>/train.norms.npy``)."""
    from dabench.data import FLIPPED
    from dabench.features import replay_schedule, trained_views
    from dabench.io import load_npy, load_npz
    from dabench.architecture import timestep_grid
    from dabench.model import build_scheduler, load_model

    train = load_npz(train_path)
    images, flipped = train["train_images"], train.get(FLIPPED)
    log = load_npz(training_log_path)
    n = len(images)
    scheduler = build_scheduler(model_cfg)
    T = scheduler.config.num_train_timesteps
    grid = timestep_grid(T, cfg["timestep_grid"])
    rng = np.random.default_rng(derive_seed(seed, "retrac-analyses"))
    probe = np.sort(rng.choice(n, size=min(cfg["t_max_examples"], n), replace=False))
    sample = np.sort(rng.choice(n, size=min(cfg["n_correlation"], n), replace=False))
    steps = sorted(checkpoints)
    # Figure 3 shows three stages of training: first, middle and last checkpoint.
    shown = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
    norm_rows, curve_rows, corr_rows, point_rows, t_max = [], [], [], [], {}
    for step in steps:
        replay = replay_schedule(log, step, n)
        norms = load_npy(replay_norm_paths[step]).astype(np.float64)
        norm_rows.append(pd.DataFrame({"checkpoint": step, "example": np.arange(n),
                                       "timestep": replay["timestep"], "norm": norms,
                                       "trained_at_step": replay["step"]}))
        unet, _ = load_model(checkpoints[step])
        # Each probe example with the noise (and view) it was trained with nearest this
        # checkpoint.
        views = trained_views(images, replay["flip"], flipped)
        curves = timestep_norms(unet, scheduler, views[probe], grid, replay["noise_seed"][probe])
        mean = curves.mean(axis=0)
        t_max[step] = int(grid[int(np.argmax(mean))])
        curve_rows.append(pd.DataFrame({"checkpoint": step, "timestep": grid, "norm": mean,
                                        "curve": f"mean of {len(probe)} examples", "example": -1,
                                        "training_timestep": -1}))
        if step in shown:
            # One example across every timestep 0 … T-1 (or retrac.curve_timesteps of them),
            # with its training noise.
            ex = int(probe[0])
            every = np.arange(T) if cfg.get("curve_timesteps") is None else \
                timestep_grid(T, cfg["curve_timesteps"])
            curve = timestep_norms(unet, scheduler, views[[ex]], every,
                                   replay["noise_seed"][[ex]])[0]
            curve_rows.append(pd.DataFrame({"checkpoint": step, "timestep": every, "norm": curve,
                                            "curve": "one example", "example": ex,
                                            "training_timestep": int(replay["timestep"][ex])}))
        distance = np.abs(replay["timestep"][sample] - t_max[step])
        rank = ranks_descending(norms)[sample]
        corr_rows.append({"checkpoint": step, "t_max": t_max[step],
                          "spearman_t_norm_all": float(pd.Series(replay["timestep"]).corr(
                              pd.Series(norms), method="spearman")),
                          **correlation(distance, rank)})
        point_rows.append(pd.DataFrame({"checkpoint": step, "example": sample,
                                        "distance": distance, "norm_rank": rank}))
    return {"norms": pd.concat(norm_rows, ignore_index=True),
            "single_example": pd.concat(curve_rows, ignore_index=True),
            "correlation": pd.DataFrame(corr_rows),
            "correlation_points": pd.concat(point_rows, ignore_index=True),
            "t_max": t_max}


def manipulation(methods: dict, method_inputs: dict, checkpoints: dict, model_cfg: dict,
                 train_path, training_log_path, query_set: str, t_max: dict, cfg: dict,
                 seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Timestep manipulation (paper §4.2): for seeded queries, Diffusion-TracIn's least
    influential examples get their training gradient recomputed at t = t_max (same noise) at every
    checkpoint; each method's |score| rank before and after is recorded.

    ``methods``: id -> built checkpoint method (Diffusion-TracIn, Diffusion-ReTrac);
    ``method_inputs``: id -> its inputs on ``query_set`` plus ``scores`` (its score file).
    The first method's scores choose the uninfluential examples."""
    from dabench.data import FLIPPED
    from dabench.features import projection_seed, replay_schedule, trained_views
    from dabench.io import load_checked_npy, load_npy, load_npz
    from dabench.model import build_scheduler, load_model
    from dabench.projection import make_projector

    train = load_npz(train_path)
    images, flipped = train["train_images"], train.get(FLIPPED)
    log = load_npz(training_log_path)
    n = len(images)
    scheduler = build_scheduler(model_cfg)
    ids = list(methods)
    scores = {m: load_npy(method_inputs[m]["scores"]).astype(np.float64) for m in ids}
    q_total = scores[ids[0]].shape[0]
    rng = np.random.default_rng(derive_seed(seed, "retrac-manipulation"))
    queries = np.sort(rng.choice(q_total, size=min(cfg["n_queries"], q_total), replace=False))
    chosen = {q: least_influential(scores[ids[0]][q], cfg["n_examples"]) for q in queries}
    union = np.unique(np.concatenate(list(chosen.values())))
    pos = {int(i): j for j, i in enumerate(union)}
    new = {m: np.zeros((len(queries), len(union))) for m in ids}
    etas = {m: methods[m].learning_rates(method_inputs[m]) for m in ids}
    for step in sorted(checkpoints):
        replay = replay_schedule(log, step, n)
        unet, _ = load_model(checkpoints[step])
        t = np.full(len(union), t_max[step])
        # Methods sharing a training feature share its projection; gradients are projected
        # batch by batch (never all of them at once: 4000 of the paper UNet's are 570 GB).
        specs = sorted({(methods[m].train_spec.projection, methods[m].train_spec.k) for m in ids})
        p = sum(q.numel() for q in unet.parameters())
        projectors = [make_projector(name, p, k, projection_seed(seed)) for name, k in specs]
        projected = {spec: np.empty((len(union), proj.k)) for spec, proj in zip(specs, projectors)}
        norms = np.empty(len(union))
        # Each example as it was trained (mirrored where the log says so), at t_max.
        views = trained_views(images[union], replay["flip"][union],
                              None if flipped is None else flipped[union])
        for rows, parts, batch_norms in _gradients(unet, scheduler, views, t,
                                                   replay["noise_seed"][union], projectors):
            norms[rows] = batch_norms
            for spec, part in zip(specs, parts):
                projected[spec][rows] = part
        for m in ids:
            method, inputs = methods[m], method_inputs[m]
            spec = method.train_spec
            query = load_checked_npy(inputs[f"query_{step}"]).astype(np.float64)[queries]
            new[m] += etas[m][step] * method.combine(query, projected[spec.projection, spec.k],
                                                     None, norms)
    summary, points = [], []
    for m in ids:
        before_all, after_all = [], []
        for qi, q in enumerate(queries):
            sel = chosen[q]
            before, after = rank_rise(scores[m][q], sel, new[m][qi, [pos[int(i)] for i in sel]])
            before_all.append(before)
            after_all.append(after)
            points.append(pd.DataFrame({"method_id": m, "method": methods[m].label, "query": q,
                                        "example": sel, "rank_before": before,
                                        "rank_after": after}))
        before, after = np.concatenate(before_all), np.concatenate(after_all)
        rise = before - after
        summary.append({"method_id": m, "method": methods[m].label, "query_set": query_set,
                        "n_queries": len(queries), "n_examples": len(chosen[queries[0]]),
                        "n_train": n, "mean_rank_before": before.mean(),
                        "mean_rank_after": after.mean(), "mean_rank_rise": rise.mean(),
                        "median_rank_rise": float(np.median(rise)),
                        "share_rising": float(np.mean(rise > 0))})
    return pd.DataFrame(summary), pd.concat(points, ignore_index=True)


def targeted_table(entries: dict, score_paths: dict, ks: list[int], n_queries: int | None = None,
                   seed: int = 0) -> pd.DataFrame:
    """Targeted attribution (Table 1) for every method: ``score_paths[(id, query_set)]``; the
    same ``n_queries`` random queries (seeded, per query set) for every method."""
    from dabench.io import load_npy
    from dabench.methods import build

    rows = []
    for (method_id, qs), path in sorted(score_paths.items()):
        method = build(entries[method_id])
        scores = load_npy(path)
        q, n = scores.shape
        if n_queries is not None and n_queries < q:
            rng = np.random.default_rng(derive_seed(seed, "retrac-targeted", qs))
            scores = scores[np.sort(rng.choice(q, size=n_queries, replace=False))]
        for k in ks:
            k = min(k, n)
            rows.append({"method_id": method_id, "method": method.label, "variant": method.variant,
                         "n_timesteps": method.n_timesteps,
                         "family": method.family, "query_set": qs, "k": k,
                         "distinct": distinct_proportion(scores, k), "n_queries": len(scores),
                         "max_possible": min(1.0, n / (len(scores) * k))})
    return pd.DataFrame(rows)


def outlier_tables(entries: dict, self_paths: dict, score_paths: dict, train_path, validation_path,
                   dataset_info: dict, multiples: list[float], ks: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outlier detection (Table 2) from self-influence and image source tracing (Figure 4) from
    test influence on held-out images of both sources, for every checkpoint method."""
    from dabench.io import load_npy, load_npz
    from dabench.methods import build

    train_origin = load_npz(train_path)["origin"]
    val_origin = load_npz(validation_path)["origin"]
    n_out, n = int(train_origin.sum()), len(train_origin)
    cfg = dataset_info["config"]
    names = {0: f"{cfg['dataset']} {cfg.get('classes')}",
             1: f"{cfg['outliers']['dataset']} {cfg['outliers'].get('classes')} (outliers)"}
    detection = []
    for method_id, path in sorted(self_paths.items()):
        method, values = build(entries[method_id]), load_npy(path)
        for m in multiples:
            top = max(1, int(round(m * n_out)))
            detection.append({"method_id": method_id, "method": method.label, "top": top,
                              "multiple": m, "outlier_share": outlier_share(values, train_origin, top),
                              "best_possible": min(1.0, n_out / top), "random": n_out / n,
                              "n_outliers": n_out, "n_train": n})
    tracing = []
    for method_id, path in sorted(score_paths.items()):
        method, scores = build(entries[method_id]), load_npy(path)
        for origin in (0, 1):
            rows = val_origin == origin
            if not rows.any():
                continue
            for k in ks:
                prec = source_precision(scores[rows], val_origin[rows], train_origin, k)
                tracing.append({"method_id": method_id, "method": method.label,
                                "query_source": names[origin], "origin": origin, "k": k,
                                "precision": float(prec.mean()),
                                "random": float(np.mean(train_origin == origin)),
                                "n_queries": int(rows.sum())})
    return pd.DataFrame(detection), pd.DataFrame(tracing)
