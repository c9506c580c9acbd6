"""Gradient-feature methods: gradient similarity and the TRAK family (SPEC §4).

All of them read projected gradient features φ (:mod:`dabench.features`) of the training set
(Φ, N×k) and of the queries, and differ only in how they turn them into scores:

- ``gradient``: ⟨φ(x), φ(x_i)⟩ or cosine (Charpiat et al.), F = loss;
- ``trak``: φ(x)ᵀ(ΦᵀΦ + λI)⁻¹φ(x_i) with F = loss (Park et al.);
- ``d-trak``: the same with F ∈ {square, mean, l1-norm, l2-norm, linf-norm, weighted-mse, …}
  (Zheng et al.);
- ``relative-if``: the TRAK score ⁄ ‖(ΦᵀΦ + λI)⁻¹φ(x_i)‖ (Barshan et al.);
- ``renormalized-if``: the TRAK score ⁄ ‖φ(x_i)‖ (Hammoudeh & Lowd).

λ is chosen from a grid by LDS on the **tune** subsets, never the test subsets; the grid is
relative to the mean non-zero eigenvalue of ΦᵀΦ, so one grid suits any model and scale.
"""

from __future__ import annotations

import numpy as np

from dabench import layout
from dabench.features import FeatureSpec
from dabench.io import load_checked_npy, load_npy
from dabench.methods.base import AttributionMethod

FEATURE_DEFAULTS = {"function": "loss", "n_timesteps": 10, "schedule": "uniform", "n_noises": 1,
                    "projection": "sparse", "k": 4096}
LAMBDA_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]


class KernelSolver:
    """(ΦᵀΦ + λI)⁻¹ applied to features, for many λ from one eigendecomposition.

    Works in the dual (N×N Gram matrix ΦΦᵀ) when N < k, else in the primal (k×k), in float64.
    """

    def __init__(self, train_features: np.ndarray):
        phi = np.asarray(train_features, dtype=np.float64)
        self.phi = phi
        self.n, self.k = phi.shape
        self.dual = self.n < self.k
        gram = phi @ phi.T if self.dual else phi.T @ phi
        self.eigvals, self.eigvecs = np.linalg.eigh(gram)
        self.eigvals = np.clip(self.eigvals, 0, None)
        rank = max(int((self.eigvals > self.eigvals.max() * 1e-10).sum()), 1)
        self.scale = float(self.eigvals.sum() / rank)   # mean non-zero eigenvalue
        # Projections of the training features on the eigenvectors, shared by every λ.
        self._train_coords = self.eigvecs.T @ phi.T if not self.dual else None   # (k, N)

    def absolute(self, relative_lambda: float) -> float:
        return relative_lambda * self.scale

    def scores(self, query_features: np.ndarray, relative_lambda: float) -> np.ndarray:
        """φ(x)ᵀ(ΦᵀΦ + λI)⁻¹φ(x_i): (Q, N) for query features (Q, k)."""
        lam = self.absolute(relative_lambda)
        q = np.asarray(query_features, dtype=np.float64)
        if self.dual:
            # Push-through: (ΦᵀΦ + λI)⁻¹Φᵀ = Φᵀ(ΦΦᵀ + λI)⁻¹.
            cross = q @ self.phi.T                                   # (Q, N)
            return ((cross @ self.eigvecs) / (self.eigvals + lam)) @ self.eigvecs.T
        coords = q @ self.eigvecs                                    # (Q, k)
        return (coords / (self.eigvals + lam)) @ self._train_coords

    def inverse_norms(self, relative_lambda: float) -> np.ndarray:
        """‖(ΦᵀΦ + λI)⁻¹φ(x_i)‖ for each training example, (N,)."""
        lam = self.absolute(relative_lambda)
        if self.dual:
            # Column i of Φᵀ(G + λI)⁻¹: squared norm Σ_j U_ij² e_j ⁄ (e_j + λ)².
            return np.sqrt((self.eigvecs ** 2) @ (self.eigvals / (self.eigvals + lam) ** 2))
        return np.linalg.norm(self._train_coords / (self.eigvals + lam)[:, None], axis=0)


class GradientFeatureMethod(AttributionMethod):
    """Base of every method that reads gradient features of the full model."""

    family = "gradient"
    defaults = dict(FEATURE_DEFAULTS)
    abbreviations = {"n_timesteps": "K", "k": "k", "n_noises": "e"}

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(**{key: self.params[key] for key in FEATURE_DEFAULTS})

    @property
    def n_timesteps(self) -> int:
        return self.params["n_timesteps"]

    @property
    def variant(self) -> str:
        parts = [self.params["function"]]
        for key in ("schedule", "projection", "k", "n_noises"):
            if self.params[key] != FEATURE_DEFAULTS[key]:
                parts.append(f"{key}={self.params[key]}")
        return ", ".join(parts)

    def inputs(self, query_set):
        fid = self.spec.id
        return {"train_features": layout.features("full", fid, "train"),
                "query_features": layout.features("full", fid, query_set)}


class GradientSimilarity(GradientFeatureMethod):
    name = "gradient"
    label = "Gradient"
    defaults = {**FEATURE_DEFAULTS, "similarity": "dot"}

    @property
    def variant(self) -> str:
        return f"{self.params['similarity']}, " + super().variant

    def score(self, inputs, query_set):
        from dabench.methods.pixel import similarity

        return similarity(load_checked_npy(inputs["query_features"]),
                          load_checked_npy(inputs["train_features"]), self.params["similarity"])


class TRAK(GradientFeatureMethod):
    name = "trak"
    label = "TRAK"
    family = "trak"
    defaults = {**FEATURE_DEFAULTS, "lambdas": LAMBDA_GRID}

    def inputs(self, query_set):
        return {**super().inputs(query_set), "tune_subsets": layout.lds_subsets("tune"),
                "tune_outputs": layout.lds_outputs("tune", query_set)}

    def normalise(self, scores: np.ndarray, solver: KernelSolver, relative_lambda: float) -> np.ndarray:
        """Hook for the influence-function variants: per-training-example rescaling."""
        return scores

    def members(self, inputs) -> list[tuple[KernelSolver, np.ndarray]]:
        """(solver of the training features, query features) of each model scored with; the
        scores are their average (one model here, S for the ensembles)."""
        return [(KernelSolver(load_checked_npy(inputs["train_features"])),
                 load_checked_npy(inputs["query_features"]))]

    def score_all(self, inputs) -> tuple[np.ndarray, dict]:
        """Scores at the λ with the best tune-subset LDS, and the tune LDS of every λ. λ is
        relative to each model's mean eigenvalue; an ensemble shares one relative λ."""
        from dabench.lds import lds_per_query

        members = self.members(inputs)
        subsets, outputs = load_npy(inputs["tune_subsets"]), load_npy(inputs["tune_outputs"])
        tune = {}
        best, best_scores = None, None
        for lam in self.params["lambdas"]:
            scores = np.mean([self.normalise(solver.scores(queries, lam), solver, lam)
                              for solver, queries in members], axis=0)
            value = float(np.nanmean(lds_per_query(scores, subsets, outputs)))
            tune[lam] = value
            if best is None or value > tune[best]:
                best, best_scores = lam, scores
        solver = members[0][0]
        return best_scores, {"lambda_relative": best, "lambda_absolute": solver.absolute(best),
                             "tune_lds_by_lambda": {str(k): v for k, v in tune.items()},
                             "eigenvalue_scale": solver.scale, "dual": solver.dual,
                             "n_models": len(members)}

    def score(self, inputs, query_set):
        scores, self.selection = self.score_all(inputs)
        return scores

    def extra_metadata(self) -> dict:
        return getattr(self, "selection", {})


class DTRAK(TRAK):
    name = "d-trak"
    label = "D-TRAK"
    defaults = {**TRAK.defaults, "function": "square"}


class JourneyTRAK(TRAK):
    """Journey-TRAK (Georgiev et al.) as D-TRAK adapts it: the mean over the S sampling steps of
    the TRAK scores of the generated sample's journey. At step s the model's clean estimate x̂₀⁽ˢ⁾
    is re-noised at the step's own timestep t_s; the TRAK score is linear in the query feature, so
    the mean of scores is the score of the mean feature (1/S)Σ_s ∇ℓ(x̂₀⁽ˢ⁾, t_s, ε_s) — the
    ``journey`` feature. The training side is TRAK's K-timestep loss feature. Generated queries
    only: a validation image has no trajectory."""

    name = "journey-trak"
    label = "Journey-TRAK"
    query_sets = ("generation",)

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["function"] != "loss":
            raise ValueError(f"journey-trak uses TRAK's loss on both sides, got function "
                             f"{self.params['function']!r}")

    @property
    def journey_spec(self) -> FeatureSpec:
        return FeatureSpec("loss", schedule="journey", projection=self.params["projection"],
                           k=self.params["k"])

    def inputs(self, query_set):
        return {"train_features": layout.features("full", self.spec.id, "train"),
                "query_features": layout.features("full", self.journey_spec.id, query_set),
                "tune_subsets": layout.lds_subsets("tune"),
                "tune_outputs": layout.lds_outputs("tune", query_set)}


class RelativeIF(TRAK):
    name = "relative-if"
    label = "Relative IF"
    family = "influence"

    def normalise(self, scores, solver, relative_lambda):
        return scores / np.maximum(solver.inverse_norms(relative_lambda), 1e-30)[None]


class RenormalizedIF(TRAK):
    name = "renormalized-if"
    label = "Renormalized IF"
    family = "influence"

    def normalise(self, scores, solver, relative_lambda):
        return scores / np.maximum(np.linalg.norm(solver.phi, axis=1), 1e-30)[None]
