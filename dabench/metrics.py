"""The LDS metric and its companions — pure functions of arrays (docs/computation.md §2).

- :func:`lds_per_query`: Spearman over subsets between the attribution's prediction
  Σ_{i∈S} τ(x)_i and −f(x; θ_S), per query.
- :func:`bootstrap_mean_ci`: the mean over queries with a percentile bootstrap interval.
- :func:`ceiling_per_query`: the retraining ceiling (one seed against the mean of the others).
- :func:`spearman_rows`, :func:`indicator`, :func:`check_subsets`: their building blocks.

Methods that tune on the LDS (λ of the TRAK family, the datamodel's ridge) and every experiment
that reports one import it from here.
"""

from __future__ import annotations

import numpy as np

from dabench.seeds import derive_seed


def check_subsets(subsets: np.ndarray, n_train: int, source: str) -> None:
    """Refuse a subset matrix with indices outside [0, n_train), naming ``source``."""
    subsets = np.asarray(subsets)
    bad = subsets[(subsets < 0) | (subsets >= n_train)]
    if bad.size:
        raise ValueError(f"{source}: subset index {int(bad.flat[0])} is out of range "
                         f"[0, {n_train}) ({bad.size} such indices)")


def indicator(subsets: np.ndarray, n_train: int) -> np.ndarray:
    """(M, s) index rows -> (M, N) float32 0/1 membership matrix."""
    out = np.zeros((len(subsets), n_train), dtype=np.float32)
    np.put_along_axis(out, np.asarray(subsets), 1.0, axis=1)
    return out


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b``.

    ``a``, ``b``: (Q, M). Returns (Q,) float64; NaN where a row is constant. Ties get average ranks
    (as ``scipy.stats.spearmanr``).
    """
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denom = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(1) / denom, np.nan)


def lds_per_query(scores: np.ndarray, subsets: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """LDS of each query: Spearman over subsets of g_τ(x, S_j) = Σ_{i∈S_j} τ(x)_i and -f(x; θ_{S_j}).

    ``scores``: (Q, N) attributions, positive = helps; ``subsets``: (M, s) training indices;
    ``outputs``: (M, Q) model outputs f (mean loss, seed-averaged). Returns (Q,) in [-1, 1].
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] != outputs.shape[1]:
        raise ValueError(f"scores have {scores.shape[0]} queries but outputs {outputs.shape[1]}")
    check_subsets(subsets, scores.shape[1], "lds_per_query")
    predicted = scores @ indicator(subsets, scores.shape[1]).T.astype(np.float64)  # (Q, M)
    return spearman_rows(predicted, -np.asarray(outputs, dtype=np.float64).T)


def best_by_tune_lds(candidates, subsets: np.ndarray, outputs: np.ndarray
                     ) -> tuple[float, np.ndarray, dict[float, float]]:
    """The λ search of every method that tunes one: ``candidates`` yields (λ, scores (Q, N));
    the winner has the highest mean LDS on the tune ``subsets``/``outputs`` (the first on ties).
    Returns (best λ, its scores, λ -> mean tune LDS). Only the best scores are kept."""
    tune, best, best_scores = {}, None, None
    for lam, scores in candidates:
        tune[lam] = float(np.nanmean(lds_per_query(scores, subsets, outputs)))
        if best is None or tune[lam] > tune[best]:
            best, best_scores = lam, scores
    if best is None:
        raise ValueError("the λ search needs at least one candidate λ")
    return best, best_scores, tune


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float, int]:
    """Mean of ``values`` (NaNs dropped) and its percentile bootstrap interval over resampled
    entries. Returns ``(mean, low, high, n_used)``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    rng = np.random.default_rng(derive_seed(seed, "bootstrap"))
    draws = rng.integers(0, values.size, size=(n_boot, values.size))
    low, high = percentile_interval(values[draws].mean(1), confidence)
    return float(values.mean()), low, high, int(values.size)


def percentile_interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap statistics ``draws`` (finite ones; NaN,
    NaN when there are none) — the one percentile rule of every interval dabench reports."""
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def group_lds(attribution: np.ndarray, subsets: np.ndarray, values: np.ndarray,
              n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Group LDS (docs/computation.md §7): Spearman between a global property F(θ_S) of the
    held-out retrains and the additive prediction Σ_{g∈S} τ_g, in percent, with a bootstrap
    interval over the held-out subsets. ``attribution`` (G,), ``subsets`` (M, G) 0/1 group
    indicators, ``values`` (M,) F of each subset's model."""
    pred = np.asarray(subsets, np.float64) @ np.asarray(attribution, np.float64)
    values = np.asarray(values, np.float64)
    lds = spearman_rows(pred[None], values[None])[0]
    # Every bootstrap resample at once (rows of indices), NaN where a resample is constant.
    rng = np.random.default_rng(derive_seed(seed, "group-lds-bootstrap"))
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    lo, hi = percentile_interval(spearman_rows(pred[idx], values[idx]), confidence)
    return {"lds": 100 * lds, "ci_low": 100 * lo, "ci_high": 100 * hi,
            "n_subsets": int(len(values))}


def ceiling_per_query(outputs_per_seed: np.ndarray) -> np.ndarray:
    """The retraining ceiling of each query.

    ``outputs_per_seed``: (R, M, Q), R >= 2. For each seed r, the Spearman over subsets between
    f of seed r and the mean f of the other seeds; averaged over r. Returns (Q,).
    """
    outputs_per_seed = np.asarray(outputs_per_seed, dtype=np.float64)
    n_seeds = outputs_per_seed.shape[0]
    if n_seeds < 2:
        raise ValueError("the retraining ceiling needs at least 2 seeds per subset")
    total = outputs_per_seed.sum(0)
    per_seed = [spearman_rows(outputs_per_seed[r].T, ((total - outputs_per_seed[r]) / (n_seeds - 1)).T)
                for r in range(n_seeds)]
    return np.nanmean(np.stack(per_seed), axis=0)
