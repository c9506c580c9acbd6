"""The cooperative game of group Shapley: groups and subset indicators, subsets drawn from the
Shapley kernel or at a fixed α, KernelSHAP from the constrained least squares, per-example
scores aggregated to groups, the top groups. Pure NumPy, checked against brute force in
``tests/test_shapley.py``."""

from __future__ import annotations

import math

import numpy as np

from dabench.layout import SHAPLEY_WAYS
from dabench.seeds import derive_seed


WAYS = SHAPLEY_WAYS


WAY_LABELS = {"retrain": "Retraining", "finetune": "FT", "sparse": "Sparsified FT"}


AGGREGATIONS = ("mean", "max")


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


def shapley_values(design: dict, reference: dict, rows: dict, n_rows: int | None = None) -> dict:
    """KernelSHAP values per property from a way's submodels (the first ``n_rows`` of them)."""
    from dabench.properties import PROPERTIES

    take = slice(None) if n_rows is None else slice(0, n_rows)
    z = design["kernel"][rows["row"][take]]
    return {p: kernel_shap(z, rows[p][take], reference["empty"][p], reference["full"][p])
            for p in PROPERTIES}
