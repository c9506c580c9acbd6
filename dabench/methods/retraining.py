"""Retraining-based methods (D-TRAK Appendix C.2): they read models retrained on random
α-subsets — the ``datamodel`` family of retrains (``lds.datamodel``) — instead of one model.

- ``trak-ensemble`` / ``d-trak-ensemble`` (Park et al.): the TRAK / D-TRAK score averaged over
  S models, each with its own features and kernel; member j is the family's model j.
- ``empirical-influence`` (Feldman & Zhang): difference in means over M retrained models,
  τ(x)_i = mean_{S∋i}(−f(x; θ_S)) − mean_{S∌i}(−f(x; θ_S)).
- ``datamodel`` (Ilyas et al.): ridge regression of −f(x; θ_S) on the subset indicators 1_S,
  with an intercept; λ chosen by LDS on the **tune** subsets.

``n_models`` takes the family's first models, so a sweep over it shows the methods as a function
of the number of retrains (Tables 7–8 of the D-TRAK paper).
"""

from __future__ import annotations

import numpy as np

from dabench import layout
from dabench.io import load_npy
from dabench.methods.base import AttributionMethod
from dabench.methods.kernel import DTRAK, TRAK

RIDGE_GRID = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]


def _check_family(n_models: int, config: dict, name: str) -> None:
    available = config["lds"]["datamodel"]["n_subsets"]
    if n_models > available:
        raise ValueError(f"{name} needs {n_models} retrained models but lds.datamodel.n_subsets "
                         f"is {available}")


def _check_n_models(params: dict, name: str) -> None:
    n = params["n_models"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name}: n_models must be a positive integer, got {n!r}")


class EnsembleMixin:
    """TRAK-family scores averaged over the first ``n_models`` models of the datamodel family."""

    family = "trak"
    abbreviations = {**TRAK.abbreviations, "n_models": "S"}
    checkpoint_features = False     # its members are the retrained models, not checkpoints

    def __init__(self, **params):
        super().__init__(**params)
        _check_n_models(self.params, self.name)

    def bind(self, config):
        _check_family(self.params["n_models"], config, self.name)

    @property
    def variant(self) -> str:
        return f"{super().variant}, S={self.params['n_models']}"

    def inputs(self, query_set):
        out = {"tune_subsets": layout.lds_subsets("tune"),
               "tune_outputs": layout.lds_outputs("tune", query_set)}
        for j in range(self.params["n_models"]):
            model = layout.member_name(j)
            out[f"train_features_{j}"] = layout.features(model, self.spec.id, "train")
            out[f"query_features_{j}"] = layout.features(model, self.spec.id, query_set)
        return out

    def member_inputs(self, inputs):
        return [(inputs[f"train_features_{j}"], inputs[f"query_features_{j}"])
                for j in range(self.params["n_models"])]


class TRAKEnsemble(EnsembleMixin, TRAK):
    name = "trak-ensemble"
    label = "TRAK (ensemble)"
    single = TRAK.name
    defaults = {**TRAK.defaults, "n_models": 4}


class DTRAKEnsemble(EnsembleMixin, DTRAK):
    name = "d-trak-ensemble"
    label = "D-TRAK (ensemble)"
    single = DTRAK.name
    defaults = {**DTRAK.defaults, "n_models": 4}


def empirical_influence(subsets: np.ndarray, outputs: np.ndarray, n_train: int) -> np.ndarray:
    """Difference in means, (Q, N): ``subsets`` (M, s) training indices, ``outputs`` (M, Q) f.
    An example in every or in no subset gets 0 (no contrast)."""
    from dabench.metrics import indicator

    inside = indicator(subsets, n_train).astype(np.float64)        # (M, N)
    y = -np.asarray(outputs, dtype=np.float64)                      # (M, Q)
    n_in, n_out = inside.sum(0), (1 - inside).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = (inside.T @ y) / n_in[:, None]
        mean_out = ((1 - inside).T @ y) / n_out[:, None]
    tau = np.where(((n_in > 0) & (n_out > 0))[:, None], mean_in - mean_out, 0.0)
    return tau.T


class RidgeDatamodel:
    """Ridge regression of y = −f on subset indicators for many λ from one eigendecomposition
    (dual form: M models ≪ N examples). λ is relative to the mean non-zero eigenvalue of the
    centred Gram matrix, as TRAK's."""

    def __init__(self, subsets: np.ndarray, outputs: np.ndarray, n_train: int):
        from dabench.metrics import indicator

        x = indicator(subsets, n_train).astype(np.float64)
        self.x = x - x.mean(0)
        y = -np.asarray(outputs, dtype=np.float64)
        self.y = y - y.mean(0)
        self.eigvals, self.eigvecs = np.linalg.eigh(self.x @ self.x.T)
        self.eigvals = np.clip(self.eigvals, 0, None)
        rank = max(int((self.eigvals > self.eigvals.max() * 1e-10).sum()), 1)
        self.scale = float(self.eigvals.sum() / rank) if self.eigvals.max() > 0 else 1.0

    def weights(self, relative_lambda: float) -> np.ndarray:
        """(Q, N): w = Xcᵀ(XcXcᵀ + λI)⁻¹yc per query (= (XcᵀXc + λI)⁻¹Xcᵀyc)."""
        lam = relative_lambda * self.scale
        coef = self.eigvecs @ ((self.eigvecs.T @ self.y) / (self.eigvals + lam)[:, None])
        return (self.x.T @ coef).T


class RetrainingMethod(AttributionMethod):
    family = "retraining"
    defaults = {"n_models": 16}
    abbreviations = {"n_models": "M"}

    def __init__(self, **params):
        super().__init__(**params)
        _check_n_models(self.params, self.name)

    def bind(self, config):
        _check_family(self.params["n_models"], config, self.name)

    @property
    def variant(self) -> str:
        return f"M={self.params['n_models']}"

    def inputs(self, query_set):
        return {"train_subsets": layout.lds_subsets(layout.DATAMODEL),
                "train_outputs": layout.lds_outputs(layout.DATAMODEL, query_set),
                "n_train": layout.TRAIN_DATA}

    def family_data(self, inputs) -> tuple[np.ndarray, np.ndarray, int]:
        from dabench.io import load_npz

        m = self.params["n_models"]
        subsets = load_npy(inputs["train_subsets"])
        outputs = load_npy(inputs["train_outputs"])
        if len(subsets) < m or len(outputs) < m:
            raise ValueError(f"{self.name} needs {m} retrained models, {inputs['train_subsets']} "
                             f"has {len(subsets)}")
        return subsets[:m], outputs[:m], len(load_npz(inputs["n_train"])["train_images"])


class EmpiricalInfluence(RetrainingMethod):
    name = "empirical-influence"
    label = "Empirical influence"

    def score(self, inputs, query_set):
        return empirical_influence(*self.family_data(inputs))


class Datamodel(RetrainingMethod):
    name = "datamodel"
    label = "Datamodel"
    defaults = {"n_models": 16, "lambdas": RIDGE_GRID}
    tunes_lambda = True

    def inputs(self, query_set):
        return {**super().inputs(query_set), "tune_subsets": layout.lds_subsets("tune"),
                "tune_outputs": layout.lds_outputs("tune", query_set)}

    def score(self, inputs, query_set):
        from dabench.metrics import best_by_tune_lds

        subsets, outputs, n_train = self.family_data(inputs)
        ridge = RidgeDatamodel(subsets, outputs, n_train)
        tune_subsets, tune_outputs = load_npy(inputs["tune_subsets"]), load_npy(inputs["tune_outputs"])
        best, best_w, tune = best_by_tune_lds(
            ((lam, ridge.weights(lam)) for lam in self.params["lambdas"]), tune_subsets,
            tune_outputs)
        self.selection = {"lambda_relative": best, "lambda_absolute": best * ridge.scale,
                          "tune_lds_by_lambda": {str(k): v for k, v in tune.items()}}
        return best_w

    def extra_metadata(self):
        return getattr(self, "selection", {})
