"""Which training examples the example grids show: proponents and opponents of queries (D-TRAK
Appendix D.2; Diffusion-ReTrac Figures 5 and 7) and the training examples of highest and lowest
self-influence (D-TRAK Appendix D.3; Diffusion-ReTrac Appendix C.1).

Scores follow docs/computation.md §9: positive = the training example helps the query (lowers its
loss), so
proponents are the largest scores and opponents the smallest (most negative).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dabench.naming import display_name


def pick_queries(n_total: int, n: int, labels=None) -> np.ndarray:
    """``n`` query indices for a grid, the same for every method: evenly spaced over the query
    set, or, given per-query ``labels``, taking turns over the labels in order of appearance
    (first query of each label, then the second of each, ...) so every source is shown."""
    n = min(int(n), int(n_total))
    if labels is None:
        return np.unique(np.linspace(0, n_total - 1, n).round().astype(np.int64))
    labels = np.asarray(labels)
    order = list(dict.fromkeys(labels.tolist()))
    queues = [np.flatnonzero(labels == lab).tolist() for lab in order]
    picked = []
    while len(picked) < n:
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return np.array(sorted(picked), dtype=np.int64)


def extremes(values, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the ``k`` largest values, largest first; of the ``k`` smallest, smallest
    first). Ties keep dataset order, so the choice is deterministic."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"expected one score per training example, got shape {values.shape}")
    k = min(int(k), len(values))
    top = np.argsort(-values, kind="stable")[:k]
    bottom = np.argsort(values, kind="stable")[:k]
    return top, bottom


def method_names(paths: dict) -> dict:
    """method id -> display name from each scores file's JSON sidecar: the method's label, with
    its variant when the variants differ between the methods shown (or the label repeats)."""
    meta = {m: json.loads(Path(p).with_suffix(".json").read_text()) for m, p in paths.items()}
    labels = {m: d.get("label", m) for m, d in meta.items()}
    variants = {m: d.get("variant") or "" for m, d in meta.items()}
    show_variant = (len(set(variants.values())) > 1
                    or len(set(labels.values())) < len(labels))
    return {m: display_name(labels[m], variants[m] if show_variant else None) for m in paths}


def proponent_rows(score_paths: dict, queries: np.ndarray, k: int) -> dict:
    """method -> list over ``queries`` of (proponent indices, opponent indices)."""
    rows = {}
    for name, path in score_paths.items():
        scores = np.load(path, mmap_mode="r")
        if max(queries) >= scores.shape[0]:
            raise ValueError(f"{path}: {scores.shape[0]} queries, the grid asks for query "
                             f"{int(max(queries))}")
        rows[name] = [extremes(np.asarray(scores[q]), k) for q in queries]
    return rows


def write_proponents_figure(train_path, query_path, score_paths: dict, n_queries: int, k: int,
                            pdf_path, png_path, by_source: bool = False) -> dict:
    """Workflow stage: the grid of proponents and opponents of ``n_queries`` queries for each
    method (``score_paths``: method id -> scores .npy); ``by_source`` takes the queries in turn
    from each source (the outlier experiment's main set and outliers). Returns what it showed."""
    from dabench import figures
    from dabench.io import load_npz

    from dabench.data import display_images

    # A latent model's examples are shown decoded (its pixels), not as latents.
    train = display_images(load_npz(train_path), "train_images")
    query_data = load_npz(query_path)
    queries_img = display_images(query_data)
    labels = query_data.get("origin") if by_source else None
    queries = pick_queries(len(queries_img), n_queries, labels)
    rows = proponent_rows(score_paths, queries, k)
    names = method_names(score_paths)
    named = {names[m]: r for m, r in rows.items()}
    figures.plot_proponents(queries_img[queries], queries, train, named, pdf_path, png_path)
    return {"queries": queries, "rows": rows}


def write_self_influence_figure(train_path, self_paths: dict, k: int, pdf_path, png_path,
                                mark_outliers: bool = False) -> dict:
    """Workflow stage: for each method (``self_paths``: method id -> self-influence .npy), the
    ``k`` training examples of highest and of lowest self-influence; ``mark_outliers`` frames
    the outlier set's examples (training ``origin`` 1), as in the outlier experiment."""
    from dabench import figures
    from dabench.io import load_npz

    from dabench.data import display_images

    data = load_npz(train_path)
    train = display_images(data, "train_images")
    outliers = data["origin"] == 1 if mark_outliers and "origin" in data else None
    rows = {}
    for m, path in self_paths.items():
        values = np.load(path)
        if len(values) != len(train):
            raise ValueError(f"{path}: {len(values)} self-influence values for {len(train)} "
                             f"training examples")
        rows[m] = extremes(values, k)
    names = method_names(self_paths)
    named = {names[m]: r for m, r in rows.items()}
    figures.plot_self_influence(train, named, pdf_path, png_path, outliers=outliers)
    return rows
