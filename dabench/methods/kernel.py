"""Gradient-feature methods: gradient similarity and the TRAK family (docs/computation.md §4).

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
from dabench.io import checked_path, load_checked_npy, load_npy
from dabench.methods.base import AttributionMethod

FEATURE_DEFAULTS = {"function": "loss", "n_timesteps": 10, "schedule": "uniform", "n_noises": 1,
                    "projection": "sparse", "k": 4096}
LAMBDA_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
# ``checkpoint``: the training step of the full model's checkpoint the features are taken at
# (None: the final model) — D-TRAK's checkpoint selection study (dabench.checkpoint_selection).
MODEL_DEFAULTS = {"checkpoint": None}


class KernelSolver:
    """(ΦᵀΦ + λI)⁻¹ applied to features, for many λ from one eigendecomposition.

    ``train_features``: the (N, k) float32 features as an array or the path of their .npy. Works
    in the dual (the N×N Gram ΦΦᵀ) when N < k, else in the primal (k×k ΦᵀΦ). The Gram is
    accumulated in float64 from float32 row chunks (the primal streams Φ from disk and never
    holds it; the dual holds it once, in float32), decomposed in float64 with LAPACK's MRRR
    driver in place (two n×n float64 matrices at the peak, :meth:`peak_bytes`). A query set's
    projection on the eigenvectors is computed once and reused for every λ.
    """

    def __init__(self, train_features, chunk_bytes: int = 256 << 20):
        import scipy.linalg

        self.source = train_features
        shape = _rows_shape(train_features)
        self.n, self.k = shape
        self.dual = self.n < self.k
        self.chunk = max(1, int(chunk_bytes // (8 * self.k)))
        norms = np.empty(self.n)
        if self.dual:
            self.phi = _read(train_features, 0, self.n).astype(np.float32, copy=False)
            gram = np.empty((self.n, self.n))
            for a in range(0, self.n, self.chunk):
                xa = self.phi[a:a + self.chunk].astype(np.float64)
                norms[a:a + len(xa)] = np.linalg.norm(xa, axis=1)
                for b in range(a, self.n, self.chunk):
                    block = xa @ self.phi[b:b + self.chunk].astype(np.float64).T
                    gram[a:a + len(xa), b:b + block.shape[1]] = block
                    gram[b:b + block.shape[1], a:a + len(xa)] = block.T
        else:
            self.phi = None
            gram = np.zeros((self.k, self.k))
            for a, x in self._chunks():
                gram += x.T @ x
                norms[a:a + len(x)] = np.linalg.norm(x, axis=1)
        self.row_norms = norms
        self.eigvals, self.eigvecs = scipy.linalg.eigh(gram, overwrite_a=True, check_finite=False,
                                                       driver="evr")
        del gram
        self.eigvals = np.clip(self.eigvals, 0, None)
        rank = max(int((self.eigvals > self.eigvals.max() * 1e-10).sum()), 1)
        self.scale = float(self.eigvals.sum() / rank)   # mean non-zero eigenvalue
        self._coords = {}

    @staticmethod
    def peak_bytes(n: int, k: int, n_queries: int) -> int:
        """Memory of a solver and the scores of one query set at its peak."""
        m = min(n, k)
        held = 4 * n * k if n < k else 0
        return int(held + 2 * 8 * m * m + 3 * 8 * n_queries * max(n, k) + (256 << 20))

    def _chunks(self):
        for a in range(0, self.n, self.chunk):
            yield a, _read(self.source, a, a + self.chunk).astype(np.float64)

    def absolute(self, relative_lambda: float) -> float:
        return relative_lambda * self.scale

    def _query_coords(self, query_features: np.ndarray) -> np.ndarray:
        """q's coordinates in the eigenbasis (dual: of qΦᵀ), cached for the λ grid."""
        key = (id(query_features), query_features.shape)
        if key not in self._coords:
            q = np.asarray(query_features, dtype=np.float64)
            if self.dual:
                cross = np.empty((len(q), self.n))
                for a in range(0, self.n, self.chunk):
                    cross[:, a:a + self.chunk] = q @ self.phi[a:a + self.chunk].astype(np.float64).T
                coords = cross @ self.eigvecs                               # (Q, N)
            else:
                coords = q @ self.eigvecs                                   # (Q, k)
            self._coords = {key: (query_features, coords)}  # one query set at a time
        return self._coords[key][1]

    def scores(self, query_features: np.ndarray, relative_lambda: float) -> np.ndarray:
        """φ(x)ᵀ(ΦᵀΦ + λI)⁻¹φ(x_i): (Q, N) float64 for query features (Q, k)."""
        lam = self.absolute(relative_lambda)
        coords = self._query_coords(query_features) / (self.eigvals + lam)
        if self.dual:
            # Push-through: (ΦᵀΦ + λI)⁻¹Φᵀ = Φᵀ(ΦΦᵀ + λI)⁻¹.
            return coords @ self.eigvecs.T
        solved = coords @ self.eigvecs.T                                     # (Q, k)
        out = np.empty((len(solved), self.n))
        for a, x in self._chunks():
            out[:, a:a + len(x)] = solved @ x.T
        return out

    def inverse_norms(self, relative_lambda: float) -> np.ndarray:
        """‖(ΦᵀΦ + λI)⁻¹φ(x_i)‖ for each training example, (N,)."""
        lam = self.absolute(relative_lambda)
        if self.dual:
            # Column i of Φᵀ(G + λI)⁻¹: squared norm Σ_j U_ij² e_j ⁄ (e_j + λ)².
            return np.sqrt((self.eigvecs ** 2) @ (self.eigvals / (self.eigvals + lam) ** 2))
        out = np.empty(self.n)
        for a, x in self._chunks():
            out[a:a + len(x)] = np.linalg.norm((x @ self.eigvecs) / (self.eigvals + lam), axis=1)
        return out


def _rows_shape(features) -> tuple[int, int]:
    if isinstance(features, np.ndarray):
        return features.shape
    from dabench.io import npy_header

    return npy_header(features)[0]


def _read(features, start: int, stop: int) -> np.ndarray:
    if isinstance(features, np.ndarray):
        return features[start:stop]
    from dabench.io import read_rows

    return read_rows(features, start, stop)


class GradientFeatureMethod(AttributionMethod):
    """Base of every method that reads gradient features of the full model."""

    family = "gradient"
    defaults = {**FEATURE_DEFAULTS, **MODEL_DEFAULTS}
    abbreviations = {"n_timesteps": "K", "k": "k", "n_noises": "e"}
    # Whether its features may come from a training checkpoint (``checkpoint``) instead of the
    # final model: not for methods whose features are tied to other models or trajectories.
    checkpoint_features = True

    def __init__(self, **params):
        super().__init__(**params)
        self.spec  # a bad feature parameter (n_timesteps: 0, an unknown function) fails here
        step = self.params.get("checkpoint")
        if step is not None:
            if not self.checkpoint_features:
                raise ValueError(f"{self.name} cannot take its features from a checkpoint "
                                 f"(checkpoint: {step!r})")
            if isinstance(step, bool) or not isinstance(step, int) or step < 1:
                raise ValueError(f"checkpoint must be a positive training step, got {step!r}")

    def bind(self, config):
        step = self.params.get("checkpoint")
        available = sorted(config["train"]["checkpoint_steps"])
        if step is not None and step not in available:
            raise ValueError(f"checkpoint {step} is not in train.checkpoint_steps {available}")

    @property
    def feature_model(self) -> str:
        """The model name of its features: ``full`` or the checkpoint's ``stepNNNNNN``."""
        step = self.params.get("checkpoint")
        return "full" if step is None else layout.checkpoint_name(step)

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
        if self.params.get("checkpoint") is not None:
            parts.append(f"checkpoint={self.params['checkpoint']}")
        return ", ".join(parts)

    def inputs(self, query_set):
        fid, model = self.spec.id, self.feature_model
        return {"train_features": layout.features(model, fid, "train"),
                "query_features": layout.features(model, fid, query_set)}

    def feature_dim(self, sizes) -> int:
        return sizes.p if self.params["projection"] == "none" else self.params["k"]

    def cost(self, n_train, n_queries, sizes, config):
        k = self.feature_dim(sizes)
        return (8 * 2 * (n_train + n_queries) * k + 3 * 8 * n_queries * n_train + (64 << 20),
                2.0 * n_queries * n_train * k)


class GradientSimilarity(GradientFeatureMethod):
    name = "gradient"
    label = "Gradient"
    defaults = {**FEATURE_DEFAULTS, **MODEL_DEFAULTS, "similarity": "dot"}

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
    defaults = {**FEATURE_DEFAULTS, **MODEL_DEFAULTS, "lambdas": LAMBDA_GRID}
    tunes_lambda = True

    def inputs(self, query_set):
        return {**super().inputs(query_set), "tune_subsets": layout.lds_subsets("tune"),
                "tune_outputs": layout.lds_outputs("tune", query_set)}

    def cost(self, n_train, n_queries, sizes, config):
        k, m = self.feature_dim(sizes), min(n_train, self.feature_dim(sizes))
        n_models = self.params.get("n_models", 1)
        lambdas = len(self.params["lambdas"])
        peak = KernelSolver.peak_bytes(n_train, k, n_queries) \
            + (lambdas + 1) * 8 * n_queries * n_train + 4 * n_queries * k
        gram = 2.0 * n_train * k * m
        eigh = 10.0 * m ** 3
        scores = lambdas * 2.0 * n_queries * m * max(n_train, k) + 2.0 * n_queries * n_train * k
        return peak, n_models * (gram + eigh + scores)

    def normalise(self, scores: np.ndarray, solver: KernelSolver, relative_lambda: float) -> np.ndarray:
        """Hook for the influence-function variants: per-training-example rescaling."""
        return scores

    def member_inputs(self, inputs) -> list[tuple[str, str]]:
        """(training features, query features) paths of each model scored with; the scores are
        their average (one model here, S for the ensembles)."""
        return [(inputs["train_features"], inputs["query_features"])]

    def _solver(self, train_path) -> KernelSolver:
        """The solver of one training-feature file, kept for the next query set of the job
        (one at a time: an ensemble's members are built one after another)."""
        cached = getattr(self, "_cached_solver", None)
        if cached is None or cached[0] != str(train_path):
            self._cached_solver = None
            self._cached_solver = (str(train_path), KernelSolver(checked_path(train_path)))
        return self._cached_solver[1]

    def score_all(self, inputs) -> tuple[np.ndarray, dict]:
        """Scores at the λ with the best tune-subset LDS, and the tune LDS of every λ. λ is
        relative to each model's mean eigenvalue; an ensemble shares one relative λ. Members are
        solved one at a time (their scores summed per λ), so an ensemble holds one solver."""
        from dabench.metrics import best_by_tune_lds

        members = self.member_inputs(inputs)
        subsets, outputs = load_npy(inputs["tune_subsets"]), load_npy(inputs["tune_outputs"])
        lambdas = list(self.params["lambdas"])
        sums, first = None, None
        for train_path, query_path in members:
            solver = self._solver(train_path)
            queries = load_checked_npy(query_path)
            parts = [self.normalise(solver.scores(queries, lam), solver, lam) for lam in lambdas]
            sums = parts if sums is None else [a + b for a, b in zip(sums, parts)]
            first = first or {"eigenvalue_scale": solver.scale, "dual": solver.dual,
                              "absolute": {lam: solver.absolute(lam) for lam in lambdas}}
        best, best_scores, tune = best_by_tune_lds(
            ((lam, total / len(members)) for lam, total in zip(lambdas, sums)), subsets, outputs)
        return best_scores, {"lambda_relative": best, "lambda_absolute": first["absolute"][best],
                             "tune_lds_by_lambda": {str(k): v for k, v in tune.items()},
                             "eigenvalue_scale": first["eigenvalue_scale"], "dual": first["dual"],
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
    checkpoint_features = False     # its query side follows the final model's trajectories

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
        return scores / np.maximum(solver.row_norms, 1e-30)[None]
