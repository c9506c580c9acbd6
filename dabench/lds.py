"""The LDS benchmark's ground truth (docs/computation.md §2): subsets, retrains, model outputs, and
the workflow stages that evaluate scores with :mod:`dabench.metrics`.

- :func:`draw_subsets`: the tune and test subset families, disjoint, from the seed.
- :func:`retrain_items` / :func:`run_retrains`: the (subset, seed) retrains packed into jobs; each
  retrain trains from scratch (same initialisation and noise seed across subsets), computes the
  model output f(x; θ_S) on every query set and is recorded as soon as it finishes, so a killed
  job resumes where it stopped.
- :func:`collect_outputs`: per-seed and seed-averaged outputs, subsets × queries.

The metric itself (LDS per query, bootstrap, ceiling) is :mod:`dabench.metrics`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from dabench import architecture as A
from dabench.io import remove_leftovers
from dabench.metrics import bootstrap_mean_ci, ceiling_per_query, check_subsets, lds_per_query
from dabench.seeds import derive_seed, fingerprint, retrain_seeds

# ------------------------------------------------------------------------------------------------
# Subsets


def draw_subsets(n_train: int, alpha: float, n_tune: int, n_test: int, seed: int) -> dict:
    """Return ``{"tune": (M_tune, s), "test": (M_test, s)}`` int64 arrays of sorted training
    indices, s = floor(alpha · n_train). No subset appears twice, within or across families."""
    size = int(alpha * n_train)
    rng = np.random.default_rng(derive_seed(seed, "lds-subsets"))
    seen, rows = set(), []
    while len(rows) < n_tune + n_test:
        row = np.sort(rng.choice(n_train, size=size, replace=False))
        key = row.tobytes()
        if key in seen:
            if len(seen) > 10 * (n_tune + n_test):
                raise ValueError(f"cannot draw {n_tune + n_test} distinct subsets of size {size} "
                                 f"from {n_train} examples")
            continue
        seen.add(key)
        rows.append(row)
    rows = np.stack(rows).astype(np.int64)
    return {"tune": rows[:n_tune], "test": rows[n_tune:]}


def draw_family(n_train: int, alpha: float, n: int, seed: int, purpose: str,
                exclude: list | tuple = ()) -> np.ndarray:
    """(n, s) sorted subsets of a further family (the datamodel family), seeded by ``purpose``,
    none equal to each other or to a row of the ``exclude`` arrays (the tune/test subsets)."""
    size = int(alpha * n_train)
    rng = np.random.default_rng(derive_seed(seed, purpose))
    seen = {np.asarray(r, dtype=np.int64).tobytes() for rows in exclude for r in rows}
    rows, tries = [], 0
    while len(rows) < n:
        row = np.sort(rng.choice(n_train, size=size, replace=False)).astype(np.int64)
        tries += 1
        if row.tobytes() in seen:
            if tries > 10 * (n + len(seen)):
                raise ValueError(f"cannot draw {n} further distinct subsets of size {size} "
                                 f"from {n_train} examples")
            continue
        seen.add(row.tobytes())
        rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, size), dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# Retrains


def retrain_items(n_subsets: int, n_seeds: int) -> list[tuple[int, int]]:
    """All (subset j, seed r) retrains of a family, in job-packing order."""
    return [(j, r) for j in range(n_subsets) for r in range(n_seeds)]


def n_chunks(n_subsets: int, n_seeds: int, per_job: int) -> int:
    return -(-n_subsets * n_seeds // per_job)


def chunk_items(n_subsets: int, n_seeds: int, per_job: int, chunk: int) -> list[tuple[int, int]]:
    items = retrain_items(n_subsets, n_seeds)
    if not 0 <= chunk < n_chunks(n_subsets, n_seeds, per_job):
        raise ValueError(f"chunk {chunk} does not exist ({len(items)} retrains, {per_job} per job)")
    return items[chunk * per_job:(chunk + 1) * per_job]


def write_datamodel_subsets(n_train: int, alpha: float, n: int, seed: int, exclude_paths: list,
                            subsets_path, index_dir) -> np.ndarray:
    """Workflow stage: the datamodel family's subsets (disjoint from the tune and test subsets
    in ``exclude_paths``), as ``lds/datamodel/subsets.npy`` plus one index file per subset."""
    from dabench.data import write_index_file
    from dabench.io import load_npy, save_npy

    rows = draw_family(n_train, alpha, n, seed, "datamodel-subsets",
                       [load_npy(p) for p in exclude_paths])
    folder = Path(index_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for j, row in enumerate(rows):
        write_index_file(folder / f"subset_{j:04d}.txt", row,
                         f"datamodel subset {j}: indices into the training set D")
    save_npy(subsets_path, rows)
    return rows


def run_retrains(
    images: np.ndarray,
    subsets: np.ndarray,
    items: list[tuple[int, int]],
    model_cfg: dict,
    recipe: dict,
    output_cfg: dict,
    queries: dict[str, np.ndarray],
    master_seed: int,
    partial_dir: str | Path,
    model_dir: str | Path | None = None,
    family: str = "test",
    progress: bool = True,
    cond=None,
    query_conds: dict | None = None,
    flipped: np.ndarray | None = None,
) -> dict:
    """Train one model per (subset, seed) item and compute f(x; θ) on each query set.

    ``images``: (N, C, H, W) training set D; ``subsets``: (M, s); ``queries``: name -> (Q, C, H, W).
    Each finished retrain is stored in ``partial_dir`` at once (its training also keeps a resume
    state there), so a re-run after a kill continues where it stopped. Returns
    ``{"subset": (n,), "seed": (n,), "seconds": (n,), "outputs.<query set>": (n, Q)}``.
    A latent model: ``cond`` / ``query_conds`` (name -> ...) are the examples' and the queries'
    :class:`dabench.data.Conditioning`; ``flipped``: the latents of the mirrored training images
    (flip augmentation, :func:`dabench.training.train`).
    """
    from dabench import model as M
    from dabench import training as T
    from dabench.io import load_npz, save_npz

    partial_dir = Path(partial_dir)
    partial_dir.mkdir(parents=True, exist_ok=True)
    scheduler = M.build_scheduler(model_cfg)
    grid = A.timestep_grid(model_cfg["num_train_timesteps"], output_cfg["timesteps"])
    key = fingerprint({"model": model_cfg, "recipe": recipe, "output": output_cfg,
                       "seed": master_seed, "queries": {k: v.shape for k, v in queries.items()}})
    rows = []
    for n_done, (j, r) in enumerate(items):
        done_file = partial_dir / f"subset{j:04d}_seed{r}.{key}.npz"
        stem = f"subset{j:04d}_seed{r}.{key}"
        trained = partial_dir / f"{stem}.trained.safetensors"
        train_seed, init_seed = retrain_seeds(master_seed, r)
        final = None if model_dir is None else Path(model_dir) / f"subset{j:04d}_seed{r}.safetensors"

        def save_final(unet, final=final, j=j, r=r, train_seed=train_seed, init_seed=init_seed):
            M.save_model(final, unet,
                         {"family": family, "subset": j, "seed": r, "steps": recipe["steps"],
                          "members": subsets[j].tolist(), "train_seed": train_seed,
                          "init_seed": init_seed,
                          **M.model_metadata(model_cfg, recipe, images.shape)})

        if done_file.exists() and (final is None or final.exists() or trained.exists()):
            if final is not None and not final.exists():
                # Snakemake cleared the job's model folder before re-running it: the finished
                # retrain's weights come back from the partial folder, not from retraining.
                save_final(M.load_model(trained)[0])
            rows.append(load_npz(done_file))
            continue
        tic = time.perf_counter()
        label = f"{family} retrain {n_done + 1}/{len(items)} (subset {j}, seed {r})"
        unet = None
        if trained.exists():
            # Killed while computing the outputs: the trained model is kept, not retrained.
            try:
                unet, _ = M.load_model(trained)
            except Exception:  # a partial write: train again
                unet = None
        if unet is None:
            result = T.train(images, subsets[j], model_cfg, recipe, seed=train_seed,
                             init_seed=init_seed,
                             resume_path=partial_dir / f"{stem}.resume.safetensors",
                             progress=label if progress else False, cond=cond,
                             flipped=flipped)
            unet = result.unet
            M.save_model(trained, unet, {"family": family, "subset": j, "seed": r,
                                         **M.model_metadata(model_cfg, recipe, images.shape)})
        outputs = {f"outputs.{name}": M.model_output(unet, scheduler, q, grid,
                                                     output_cfg["noises"],
                                                     derive_seed(master_seed, "output", name),
                                                     resume_path=partial_dir / f"{stem}.{name}.outputs.npz",
                                                     cond=(query_conds or {}).get(name))
                   for name, q in queries.items()}
        if final is not None:
            save_final(unet)
        row = {"subset": np.int64(j), "seed": np.int64(r),
               "seconds": np.float64(time.perf_counter() - tic), **outputs}
        save_npz(done_file, **row)
        # The trained weights stay until the job ends (clear_partial): a re-run whose model
        # folder was cleared restores them from here.
        remove_leftovers(partial_dir, f"{stem}.*",
                         keep=[done_file, trained, trained.with_suffix(".json")])
        rows.append(row)
        if progress:
            print(f"[dabench] {label} done in {row['seconds']:.1f}s", flush=True)
    return {k: np.stack([np.asarray(row[k]) for row in rows]) for k in rows[0]}


def clear_partial(partial_dir: str | Path) -> None:
    shutil.rmtree(partial_dir, ignore_errors=True)


def collect_outputs(chunks: list[dict], n_subsets: int, n_seeds: int, query_set: str) -> np.ndarray:
    """Assemble chunk results into (R, M, Q) float32 outputs of ``query_set``; every retrain must
    be present exactly once."""
    key = f"outputs.{query_set}"
    n_queries = chunks[0][key].shape[1]
    out = np.full((n_seeds, n_subsets, n_queries), np.nan, dtype=np.float32)
    for chunk in chunks:
        for j, r, row in zip(chunk["subset"], chunk["seed"], chunk[key]):
            out[r, j] = row
    missing = np.argwhere(np.isnan(out[:, :, 0]))
    if missing.size:
        r, j = missing[0]
        raise ValueError(f"retrain of subset {j}, seed {r} is missing ({len(missing)} missing)")
    return out


# ------------------------------------------------------------------------------------------------
# Workflow stages


def write_subsets(n_train: int, lds_cfg: dict, seed: int, subset_paths: dict, index_dirs: dict) -> dict:
    """Draw both families; write ``lds/<family>/subsets.npy`` and one plain index file per subset
    under ``subsets/<family>/``."""
    from dabench.data import write_index_file
    from dabench.io import save_npy

    families = draw_subsets(n_train, lds_cfg["alpha"], lds_cfg["tune"]["n_subsets"],
                            lds_cfg["test"]["n_subsets"], seed)
    for family, rows in families.items():
        folder = Path(index_dirs[family])
        folder.mkdir(parents=True, exist_ok=True)
        for j, row in enumerate(rows):
            write_index_file(folder / f"subset_{j:04d}.txt", row,
                             f"{family} subset {j}: indices into the training set D")
        save_npy(subset_paths[family], rows)
    return families


def run_retrain_job(train_path, subsets_path, query_paths: dict, family: str, chunk: int,
                    n_seeds: int, per_job: int, model_cfg: dict, recipe: dict, output_cfg: dict,
                    seed: int, chunk_path, model_dir, partial_dir, save_models: bool = True) -> dict:
    """Workflow stage: the retrains of one job (chunk) of a family, written as one .npz."""
    from dabench.io import load_npy, load_npz, save_npz

    from dabench.data import FLIPPED, conditioning

    train = load_npz(train_path)
    images = train["train_images"]
    subsets = load_npy(subsets_path)
    check_subsets(subsets, len(images), str(subsets_path))
    items = chunk_items(len(subsets), n_seeds, per_job, chunk)
    query_data = {name: load_npz(path) for name, path in query_paths.items()}
    queries = {name: d["images"] for name, d in query_data.items()}
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    result = run_retrains(images, subsets, items, model_cfg, recipe, output_cfg, queries, seed,
                          partial_dir, model_dir if save_models else None, family,
                          cond=conditioning(train), flipped=train.get(FLIPPED),
                          query_conds={name: conditioning(d) for name, d in query_data.items()})
    save_npz(chunk_path, **result)
    clear_partial(partial_dir)
    return result


def write_family_outputs(chunk_paths: list, n_subsets: int, n_seeds: int, out_paths: dict) -> None:
    """Workflow stage: ``out_paths``: query set -> (seed-averaged path, per-seed path)."""
    from dabench.io import load_npz, save_npy

    chunks = [load_npz(p) for p in chunk_paths]
    for query_set, (mean_path, per_seed_path) in out_paths.items():
        per_seed = collect_outputs(chunks, n_subsets, n_seeds, query_set)
        save_npy(per_seed_path, per_seed)
        save_npy(mean_path, per_seed.mean(0).astype(np.float32))


def _record(values: np.ndarray, lds_cfg: dict, seed: int, **fields) -> dict:
    mean, low, high, n_used = bootstrap_mean_ci(values, lds_cfg["bootstrap"], lds_cfg["confidence"],
                                                seed)
    return {**fields, "lds": 100 * mean, "ci_low": 100 * low, "ci_high": 100 * high,
            "n_queries": n_used, "per_query": [None if not np.isfinite(v) else float(v)
                                               for v in values]}


def write_ceiling(per_seed_path, query_set: str, lds_cfg: dict, seed: int, out_path) -> dict:
    """Workflow stage: the retraining ceiling of one query set (test family), as an LDS record."""
    from dabench.io import load_npy, save_json

    per_seed = load_npy(per_seed_path)
    record = _record(ceiling_per_query(per_seed), lds_cfg, seed, method_id="ceiling",
                     method="ceiling", label="Retraining ceiling", family="reference",
                     variant=f"each seed vs mean of the others (R={per_seed.shape[0]})",
                     query_set=query_set, n_timesteps=None, n_subsets=int(per_seed.shape[1]),
                     subset_family="test")
    save_json(out_path, record)
    return record


def evaluate_scores(scores_path, subsets_path, outputs_path, method_id: str, method_entry: dict,
                    query_set: str, subset_family: str, lds_cfg: dict, seed: int, out_path) -> dict:
    """Workflow stage: LDS of one method on one query set, as a record with its bootstrap CI."""
    from dabench.io import load_json, load_npy, save_json
    from dabench.methods import build

    scores = load_npy(scores_path)
    outputs = load_npy(outputs_path)
    subsets = load_npy(subsets_path)
    meta = load_json(Path(scores_path).with_suffix(".json"))
    method = build(method_entry)
    record = _record(lds_per_query(scores, subsets, outputs), lds_cfg, seed, method_id=method_id,
                     method=method.name, label=method.label, family=method.family,
                     variant=method.variant, query_set=query_set,
                     n_timesteps=meta.get("n_timesteps"), n_subsets=int(len(subsets)),
                     subset_family=subset_family, n_models=method.n_models)
    save_json(out_path, record)
    return record


def scored_methods(config: dict) -> dict[str, dict]:
    """id -> entry of every method a run scores and evaluates on the LDS: the benchmarked ones
    (``methods``), the ablation settings (:mod:`dabench.ablations`) and the checkpoint study's
    (:mod:`dabench.checkpoint_selection`)."""
    from dabench.ablations import ablation_methods
    from dabench.checkpoint_selection import study_methods

    return {**config["methods"],
            **{i: a["entry"] for i, a in ablation_methods(config["ablations"]).items()},
            **{i: s["entry"] for i, s in study_methods(config).items()}}
