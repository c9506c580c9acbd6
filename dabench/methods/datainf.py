"""DataInf (Kwon et al., ICLR 2024; docs/computation.md §4): influence with a closed-form inverse
per layer, made for LoRA adapters.

The damped Gauss-Newton of one layer l, H_l + λ_l I with H_l = (1/n) Σ_i g_il g_ilᵀ, is inverted
as if the rank-one terms could be inverted one at a time (Sherman-Morrison on each, then
averaged):

    (H_l + λ_l I)⁻¹ ≈ (1 ⁄ (n λ_l)) Σ_i (I − g_il g_ilᵀ ⁄ (λ_l + ‖g_il‖²)),

so that, with g the loss gradient averaged over the K fixed (t, ε) of the gradient features,

    τ(x, x_j) = Σ_l (1 ⁄ λ_l) [ ⟨q_l, g_jl⟩ − (1/n) Σ_i ⟨q_l, g_il⟩⟨g_il, g_jl⟩ ⁄ (λ_l + ‖g_il‖²) ]

— only inner products within each layer: the N×N Gram and the Q×N cross products per layer,
never a d×d matrix. λ_l = ``damping`` × the mean squared gradient entry of the layer
(Kwon et al.'s 0.1). A layer is one module's trainable parameters (a LoRA factor pair's A and B
are separate layers, as in the paper). With ``projection: sparse`` each layer's gradient is
count-sketched to at most ``k`` dimensions (paper scale), with ``none`` the inner products are
exact.
"""

from __future__ import annotations

import numpy as np

from dabench.methods.model_methods import MODEL_METHOD_DEFAULTS, ModelMethod


def datainf_scores(query_layers: list, train_layers: list, damping: float) -> np.ndarray:
    """τ (Q, N) from per-layer query (Q, d_l) and training (N, d_l) gradients."""
    n = train_layers[0].shape[0]
    out = np.zeros((query_layers[0].shape[0], n))
    for q, g in zip(query_layers, train_layers):
        q, g = np.asarray(q, dtype=np.float64), np.asarray(g, dtype=np.float64)
        lam = damping * float(np.mean(g ** 2))
        if lam <= 0:                         # a layer with no gradient carries no influence
            continue
        gram = g @ g.T
        cross = q @ g.T
        out += (cross - (cross / (lam + np.diag(gram))[None]) @ gram / n) / lam
    return out


MAX_LAYERS = 512


class DataInf(ModelMethod):
    name = "datainf"
    label = "DataInf"
    family = "curvature"
    shown = ("damping",)
    defaults = {**MODEL_METHOD_DEFAULTS, "damping": 0.1, "projection": "none", "k": 4096}

    def __init__(self, **params):
        super().__init__(**params)
        if not float(self.params["damping"]) > 0:
            raise ValueError(f"damping must be positive, got {self.params['damping']!r}")
        if self.params["projection"] not in ("none", "sparse"):
            raise ValueError(f"projection must be none or sparse, got {self.params['projection']!r}")

    def _layers(self, unet) -> list[list[int]]:
        """Trainable-parameter positions of each layer (module), in :func:`trainable` order."""
        from dabench.gradients import trainable

        groups: dict[str, list[int]] = {}
        for i, (name, _) in enumerate(trainable(unet)):
            groups.setdefault(name.rsplit(".", 1)[0], []).append(i)
        return list(groups.values())

    def _projectors(self, unet, layers):
        from dabench.features import projection_seed
        from dabench.gradients import trainable
        from dabench.projection import CountSketchProjector
        from dabench.seeds import derive_seed

        sizes = [p.numel() for _, p in trainable(unet)]
        out = []
        for j, group in enumerate(layers):
            d = sum(sizes[i] for i in group)
            if self.params["projection"] == "none" or d <= self.params["k"]:
                out.append(None)
            else:
                out.append(CountSketchProjector(d, self.params["k"],
                                                derive_seed(projection_seed(self.params["seed"]), j)))
        return out

    def _gradients(self, unet, scheduler, split, layers, projectors, desc) -> list[np.ndarray]:
        """Per layer, (n, d_l) float32 gradients (projected where the layer is large)."""
        import torch

        out = None
        for idx, blocks in self.gradient_batches(unet, scheduler, split, progress=desc):
            parts = []
            for group, proj in zip(layers, projectors):
                block = [blocks[i] for i in group]
                flat = torch.cat(block, dim=1) if proj is None else proj.project(block)
                parts.append(flat.float().cpu().numpy())
            if out is None:
                out = [np.empty((len(split), p.shape[1]), dtype=np.float32) for p in parts]
            for o, p in zip(out, parts):
                o[idx] = p
        return out

    def _prepare(self, inputs):
        if getattr(self, "_prepared", None) is None:
            unet, scheduler, _ = self.model(inputs)
            layers = self._layers(unet)
            projectors = self._projectors(unet, layers)
            train = self._gradients(unet, scheduler, self.split(inputs, "train"), layers,
                                    projectors, "datainf train gradients")
            self._prepared = (unet, scheduler, layers, projectors, train)
        return self._prepared

    def score(self, inputs, query_set):
        unet, scheduler, layers, projectors, train = self._prepare(inputs)
        queries = self._gradients(unet, scheduler, self.split(inputs, "query", query_set), layers,
                                  projectors, f"datainf {query_set} gradients")
        return datainf_scores(queries, train, float(self.params["damping"]))

    def model_work(self, n_train, n_queries, sizes, config):
        items = self.params["n_timesteps"] * self.params["n_noises"]
        # Projected: at most k per layer; declared for up to MAX_LAYERS layers (a LoRA adapter of
        # the papers' UNets has fewer).
        dim = sizes.p if self.params["projection"] == "none" else min(sizes.p,
                                                                       self.params["k"] * MAX_LAYERS)
        return [("gradients", n_train + sum(n_queries), items),
                ("host", 4 * dim * (n_train + max(n_queries, default=0)))]

    def cost(self, n_train, n_queries, sizes, config):
        dim = sizes.p if self.params["projection"] == "none" else self.params["k"]
        return (8 * n_train * n_train * 3 + 8 * n_queries * n_train * 3 + (64 << 20),
                2.0 * (n_train + n_queries) * n_train * dim)
