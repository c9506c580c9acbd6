"""The counterfactual evaluation at a sampling step (D-TRAK Appendix E, its Figures 21–24).

Journey-TRAK (Georgiev et al.) attributes the noisy state x_s of a sampling trajectory at its
own timestep t_s, so its attributions differ from step to step. D-TRAK's Appendix E compares it
with methods that attribute the final image by removing each method's top-k influencers,
retraining, and **resuming the original trajectory at step s** with the retrained model (the
same x_s, the same later DDIM steps): the further the new final image moves from the original,
the more the removed examples shaped what was decided after step s.

- Methods that give one attribution per generated image (random, TRAK, D-TRAK) remove the same
  examples at every step: they reuse the counterfactual evaluation's retrained model
  (:mod:`dabench.counterfactual`, same removal, recipe and seeds) and only regenerate from each
  step (:func:`regenerate_from_steps`).
- **Per-step Journey-TRAK** scores x_s at t_s: the query feature is the mean over R noise
  resamples of ∇ℓ(x̂₀⁽ˢ⁾, t_s, ε_r), x̂₀⁽ˢ⁾ the model's clean estimate from x_s (as the
  ``journey`` features of :mod:`dabench.features`, one step at a time), scored with TRAK's kernel
  on the training features and the λ of a ``journey-trak`` method of the run
  (:func:`write_step_scores`); each (query, step) removes its own top-k and retrains
  (:func:`run_step_retrain`).

The step of a timestep τ is the DDIM step whose timestep is nearest τ (:func:`step_of`). Results
are one .npz per (method, query, timestep) in the layout of the counterfactual's, so its
summary (:func:`dabench.counterfactual.summarize`) applies per timestep.
"""

from __future__ import annotations

import time

import numpy as np

JOURNEY_STEP = "journey-trak-step"        # the per-step Journey-TRAK rows' method id


def step_of(trajectory_timesteps: np.ndarray, timestep: int) -> int:
    """The sampling step (index into the trajectory's states) whose timestep is nearest
    ``timestep`` (the earlier step on a tie); the final state (-1) is never chosen."""
    steps = np.asarray(trajectory_timesteps[:-1], dtype=np.int64)
    return int(np.argmin(np.abs(steps - int(timestep))))


def _trajectory_states(trajectory_path, queries) -> np.ndarray:
    """(S+1, Q, C, H, W) states of the queries' trajectories, read from the memory-mapped file."""
    from dabench.io import load_npy

    full = load_npy(trajectory_path, mmap=True)
    return np.ascontiguousarray(full[:, list(queries)])


def write_step_scores(model_path, model_cfg: dict, generation_path, trajectory_path,
                      train_features_path, journey_sidecar_path, queries: list[int],
                      timesteps: list[int], n_noises: int, seed: int, out_path) -> dict:
    """Workflow stage: per-step Journey-TRAK scores (T, Q, N) of the queries at each timestep's
    step, written as .npz with ``timesteps``, ``steps``, ``queries`` and the λ used."""
    import tempfile
    from pathlib import Path

    from dabench.data import conditioning
    from dabench.features import FeatureSpec, featurize, projection_seed
    from dabench.io import load_json, load_npz, save_npz
    from dabench.methods.kernel import KernelSolver
    from dabench.model import build_scheduler, load_model
    from dabench.sampling import journey_points
    from dabench.seeds import derive_seed

    side = load_json(journey_sidecar_path)
    params = side["params"]
    spec = FeatureSpec("loss", schedule="journey", projection=params["projection"],
                       k=params["k"])
    unet, _ = load_model(model_path)
    scheduler = build_scheduler(model_cfg)
    samples = load_npz(generation_path)
    cond = conditioning(samples)
    cond = None if cond is None else cond.take(queries)
    states = _trajectory_states(trajectory_path, queries)
    points, step_t = journey_points(unet, scheduler.config, states,
                                    samples["trajectory_timesteps"], cond=cond,
                                    uncond=None if cond is None else cond.uncond,
                                    guidance=model_cfg.get("guidance", 1.0))
    solver = KernelSolver(train_features_path)
    steps = [step_of(samples["trajectory_timesteps"], t) for t in timesteps]
    scores = np.empty((len(timesteps), len(queries), solver.n), dtype=np.float32)
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (t, s) in enumerate(zip(timesteps, steps)):
            # R copies of x̂₀⁽ˢ⁾ at t_s, one fresh noise each: the mean of their gradients.
            images = np.repeat(points[:, s:s + 1], n_noises, axis=1)
            t_grid = np.full(n_noises, step_t[s], dtype=np.int64)
            path = Path(tmp) / f"step{s}.npy"
            featurize(unet, scheduler, images, spec,
                      noise_seed=derive_seed(seed, "journey-step-noise", int(t)),
                      projection_seed=projection_seed(seed), out_path=path,
                      journey_timesteps=t_grid, cond=cond)
            scores[i] = solver.scores(np.load(path), side["lambda_relative"])
    save_npz(out_path, scores=scores, timesteps=np.asarray(timesteps, dtype=np.int64),
             steps=np.asarray(steps, dtype=np.int64),
             step_timesteps=np.asarray([step_t[s] for s in steps], dtype=np.int64),
             queries=np.asarray(queries, dtype=np.int64),
             lambda_relative=np.float64(side["lambda_relative"]),
             seconds=np.float64(time.perf_counter() - tic))
    print(f"[dabench] per-step Journey-TRAK scores: {len(queries)} queries x timesteps "
          f"{list(timesteps)} (steps {steps}), {n_noises} noises each", flush=True)
    return {"steps": steps}


def regenerate_from_steps(unet, model_cfg: dict, generation_cfg: dict, samples: dict,
                          states: np.ndarray, query: int, column: int, steps: list[int]) -> list:
    """The final image of query ``query`` when its original trajectory (``states[:, column]``)
    is resumed at each step of ``steps`` with ``unet``: a list of (C, H, W) arrays."""
    from dabench.data import conditioning
    from dabench.model import build_scheduler
    from dabench.sampling import generate

    cond = conditioning(samples)
    qc = None if cond is None else cond.take([query])
    scheduler_config = build_scheduler(model_cfg).config
    out = []
    for s in steps:
        out.append(generate(unet, scheduler_config,
                            samples["seeds"][query:query + 1],
                            inference_steps=generation_cfg["inference_steps"],
                            eta=generation_cfg["eta"], keep_trajectory=False, cond=qc,
                            uncond=None if qc is None else qc.uncond,
                            guidance=model_cfg.get("guidance", 1.0), start_step=s,
                            start_states=states[s, column:column + 1])["images"][0])
    return out


def run_shared_regeneration(model_path, generation_path, trajectory_path, query: int,
                            timesteps: list[int], model_cfg: dict, generation_cfg: dict,
                            out_paths: list) -> list[dict]:
    """Workflow stage: a one-attribution-per-image method (or the random control) at every step:
    the counterfactual evaluation's retrained model for (method, query) resumes the query's
    trajectory at each timestep's step. Writes one result per timestep (``out_paths``)."""
    from dabench.counterfactual import result
    from dabench.io import load_npz, save_npz
    from dabench.model import load_model

    unet, meta = load_model(model_path)
    if int(meta["query"]) != query:
        raise ValueError(f"{model_path} was retrained for query {meta['query']}, not {query}")
    samples = load_npz(generation_path)
    states = _trajectory_states(trajectory_path, [query])
    steps = [step_of(samples["trajectory_timesteps"], t) for t in timesteps]
    tic = time.perf_counter()
    images = regenerate_from_steps(unet, model_cfg, generation_cfg, samples, states, query, 0,
                                   steps)
    seconds = time.perf_counter() - tic
    removed = np.asarray(meta["removed"], dtype=np.int64)
    results = []
    for t, s, img, path in zip(timesteps, steps, images, out_paths):
        out = result(samples, model_cfg, query, img, removed, None, seconds / len(steps),
                     timestep=t, step=s)
        save_npz(path, **out)
        results.append(out)
    return results


def run_step_retrain(train_path, generation_path, trajectory_path, scores_path, query: int,
                     timestep: int, fraction: float, model_cfg: dict, recipe: dict,
                     generation_cfg: dict, seed: int, out_path, resume_path) -> dict:
    """Workflow stage: per-step Journey-TRAK at one (query, timestep): remove the top-k of its
    step's scores, retrain with the full model's recipe and seeds, resume the trajectory at the
    step with the retrained model."""
    from dabench.counterfactual import n_removed, removal_set, result, retrain_without
    from dabench.io import load_npz, remove_leftovers, resume_pattern, save_npz

    step_scores = load_npz(scores_path)
    qi = np.flatnonzero(step_scores["queries"] == query)
    ti = np.flatnonzero(step_scores["timesteps"] == timestep)
    if not len(qi) or not len(ti):
        raise ValueError(f"{scores_path} has no scores for query {query} at timestep {timestep}")
    row = step_scores["scores"][ti[0], qi[0]]
    train = load_npz(train_path)
    n_train = len(train["train_images"])
    removed = removal_set(row, n_removed(n_train, fraction), n_train, seed, query)
    samples = load_npz(generation_path)
    tic = time.perf_counter()
    unet = retrain_without(train, removed, model_cfg, recipe, seed, resume_path,
                           f"per-step Journey-TRAK query {query} t={timestep}")
    states = _trajectory_states(trajectory_path, [query])
    step = int(step_scores["steps"][ti[0]])
    image = regenerate_from_steps(unet, model_cfg, generation_cfg, samples, states, query, 0,
                                  [step])[0]
    out = result(samples, model_cfg, query, image, removed, row, time.perf_counter() - tic,
                 timestep=timestep, step=step)
    save_npz(out_path, **out)
    remove_leftovers(*resume_pattern(resume_path))
    return out


def summarize_steps(results: dict, embed):
    """``results``: method id -> result dicts of every (query, timestep). Returns (per-query,
    per-(method, timestep) medians) as :func:`dabench.counterfactual.summarize`, per timestep."""
    import pandas as pd

    from dabench.counterfactual import summarize

    timesteps = sorted({int(r["timestep"]) for rs in results.values() for r in rs}, reverse=True)
    per_query, summary = [], []
    for t in timesteps:
        at = {m: [r for r in rs if int(r["timestep"]) == t] for m, rs in results.items()}
        pq, sm = summarize({m: rs for m, rs in at.items() if rs}, embed)
        per_query.append(pq.assign(timestep=t))
        summary.append(sm.assign(timestep=t))
    return pd.concat(per_query, ignore_index=True), pd.concat(summary, ignore_index=True)
