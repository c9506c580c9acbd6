"""DAS, the Diffusion Attribution Score (Lin et al., ICLR 2025; docs/computation.md §4).

D-TRAK's kernel score on features of the mean UNet output whose every per-timestep gradient is
L2-normalised before averaging (the ``mean`` output function, ``unit`` features), multiplied per
training example by a residual weight:

    τ(x, x_i) = φ(x)ᵀ(ΦᵀΦ + λI)⁻¹φ(x_i) · r_i,
    r_i = (1/K) Σ_k u_ik,  u_i = (√mse_i1, …, √mse_iK) ⁄ ‖(√mse_i1, …, √mse_iK)‖,

mse_ik the denoising MSE of x_i at the k-th of the features' own (t, ε). ``das0`` also divides
by (1 − h_ii)², h_ii = φ_iᵀ(ΦᵀΦ + λI)⁻¹φ_i the leverage of x_i (the leave-one-out correction).
λ is tuned on the tune subsets like TRAK's. The weights need the model (forward passes only),
so DAS scores in a model job.
"""

from __future__ import annotations

import numpy as np

from dabench.features import FeatureSpec
from dabench.methods.kernel import TRAK
from dabench.methods.model_methods import MODEL_METHOD_DEFAULTS, ModelMethod


def residual_weights(mse: np.ndarray) -> np.ndarray:
    """r_i from (N, K) per-item MSEs: √mse normalised to unit length over the items, averaged."""
    root = np.sqrt(np.clip(mse, 0, None))
    return (root / np.maximum(np.linalg.norm(root, axis=1, keepdims=True), 1e-30)).mean(1)


def leverages(solver, relative_lambda: float) -> np.ndarray:
    """h_ii = φ_iᵀ(ΦᵀΦ + λI)⁻¹φ_i of every training row of a :class:`KernelSolver`."""
    lam = solver.absolute(relative_lambda)
    ratio = solver.eigvals / (solver.eigvals + lam)
    if solver.dual:
        # ΦΦᵀ = U diag(e) Uᵀ: h = diag(ΦΦᵀ(ΦΦᵀ + λI)⁻¹) = Σ_j U_ij² e_j ⁄ (e_j + λ).
        return (solver.eigvecs ** 2) @ ratio
    out = np.empty(solver.n)
    for a, x in solver._chunks():
        out[a:a + len(x)] = ((x @ solver.eigvecs) ** 2 / (solver.eigvals + lam)).sum(1)
    return out


class DAS(TRAK, ModelMethod):
    name = "das"
    label = "DAS"
    family = "trak"
    checkpoint_features = False
    leverage = False
    defaults = {**TRAK.defaults, **MODEL_METHOD_DEFAULTS, "function": "mean"}

    @property
    def spec(self) -> FeatureSpec:
        p = self.params
        return FeatureSpec(p["function"], p["n_timesteps"], p["schedule"], p["n_noises"],
                           p["projection"], p["k"], normalize=True)

    @property
    def variant(self) -> str:
        return TRAK.variant.fget(self) + ", unit"

    def bind(self, config):
        TRAK.bind(self, config)
        ModelMethod.bind(self, config)

    def inputs(self, query_set):
        return {**TRAK.inputs(self, query_set), **ModelMethod.inputs(self, query_set)}

    def weights(self, inputs) -> np.ndarray:
        """r_i of every training example, once per job."""
        if getattr(self, "_weights", None) is None:
            unet, scheduler, _ = self.model(inputs)
            mse = self.losses(unet, scheduler, self.split(inputs, "train"))
            self._weights = residual_weights(mse)
        return self._weights

    def normalise(self, scores, solver, relative_lambda):
        out = scores * self._weights[None]
        if self.leverage:
            out = out / np.maximum(1.0 - leverages(solver, relative_lambda), 1e-6)[None] ** 2
        return out

    def score(self, inputs, query_set):
        self.weights(inputs)
        return super().score(inputs, query_set)

    def extra_metadata(self) -> dict:
        r = self._weights
        return {**super().extra_metadata(),
                "residual_weight": {"min": float(r.min()), "mean": float(r.mean()),
                                    "max": float(r.max())}}

    def model_work(self, n_train, n_queries, sizes, config):
        return [("forward", n_train * self.params["n_timesteps"] * self.params["n_noises"])]


class DAS0(DAS):
    name = "das0"
    label = "DAS0"
    leverage = True
