"""Attribution by unlearning (Wang et al., NeurIPS 2024; docs/computation.md §4).

Unlearn the query with one Fisher-preconditioned gradient-ascent step on its loss, then score
every training example by how much its own loss went up:

    θ' = θ + η · u ⁄ ‖u‖ · ‖θ_S‖,   u = (F + δ·mean F)⁻¹ ∇ℓ(x; θ)   on the parameter subset S,
    τ_i = ℓ(x_i; θ') − ℓ(x_i; θ),

ℓ the diffusion loss averaged over the K fixed (t, ε) of the gradient features (the same for θ
and θ', so the difference is the step's effect alone), F the diagonal empirical Fisher of the
training set's per-example loss gradients and δ its damping. The step's length is ``step`` of
‖θ_S‖ (scale-free: one setting suits any model). No per-example training gradients are formed:
one gradient per query, and N·K forward passes per query. ``params``: the names (substrings)
of the parameters in S; ``[]`` = every trainable parameter (the papers unlearn a subset of a
large model; at this scale all of it is small).
"""

from __future__ import annotations

import numpy as np

from dabench.methods.model_methods import MODEL_METHOD_DEFAULTS, ModelMethod, progress_bar


class Unlearning(ModelMethod):
    name = "unlearning"
    label = "Unlearning"
    family = "unlearning"
    family_label = "unlearning-based"
    colour = "#bcbd22"
    shown = ("step",)
    defaults = {**MODEL_METHOD_DEFAULTS, "step": 0.01, "fisher_damping": 0.1, "params": []}

    def __init__(self, **params):
        super().__init__(**params)
        if not float(self.params["step"]) > 0:
            raise ValueError(f"step must be positive, got {self.params['step']!r}")
        if not float(self.params["fisher_damping"]) > 0:
            raise ValueError(f"fisher_damping must be positive, got {self.params['fisher_damping']!r}")
        if not isinstance(self.params["params"], list):
            raise ValueError(f"params must be a list of parameter-name substrings, got "
                             f"{self.params['params']!r}")

    def subset(self, unet) -> list[bool]:
        """Whether each trainable parameter (in :func:`trainable` order) is in S."""
        from dabench.gradients import trainable

        names = [n for n, _ in trainable(unet)]
        chosen = [not self.params["params"] or any(s in n for s in self.params["params"])
                  for n in names]
        if not any(chosen):
            raise ValueError(f"params {self.params['params']} match no trainable parameter")
        return chosen

    def _prepare(self, inputs):
        """(unet, scheduler, training split, subset mask, diagonal Fisher blocks, their mean,
        ‖θ_S‖, base losses)."""
        if getattr(self, "_prepared", None) is not None:
            return self._prepared
        import torch

        from dabench.gradients import trainable

        unet, scheduler, _ = self.model(inputs)
        train = self.split(inputs, "train")
        chosen = self.subset(unet)
        fisher = None
        for _, blocks in self.gradient_batches(unet, scheduler, train,
                                               progress="unlearning Fisher"):
            sq = [b.double().pow(2).sum(0) if c else None for b, c in zip(blocks, chosen)]
            fisher = sq if fisher is None else [None if a is None else a + b
                                                for a, b in zip(fisher, sq)]
        fisher = [None if f is None else (f / len(train)).float() for f in fisher]
        mean = float(sum(f.sum() for f in fisher if f is not None)
                     / sum(f.numel() for f in fisher if f is not None))
        norm_theta = float(torch.sqrt(sum(p.detach().double().pow(2).sum()
                                          for (_, p), c in zip(trainable(unet), chosen) if c)))
        base = self.losses(unet, scheduler, train).mean(1)
        self._prepared = (unet, scheduler, train, chosen, fisher, mean, norm_theta, base)
        return self._prepared

    def step_direction(self, blocks, chosen, fisher, mean, norm_theta, params):
        """The step Δθ per trainable parameter (None outside S) for one query's gradient."""
        import torch

        u = [None if not c else g.reshape(-1) / (f + self.params["fisher_damping"] * mean)
             for g, c, f in zip(blocks, chosen, fisher)]
        norm_u = torch.sqrt(sum(x.double().pow(2).sum() for x in u if x is not None))
        scale = float(self.params["step"] * norm_theta / norm_u.clamp_min(1e-30))
        return [None if x is None else (scale * x).reshape(p.shape) for x, p in zip(u, params)]

    def score(self, inputs, query_set):
        import torch

        from dabench.gradients import trainable

        unet, scheduler, train, chosen, fisher, mean, norm_theta, base = self._prepare(inputs)
        queries = self.split(inputs, "query", query_set)
        params = [p for _, p in trainable(unet)]
        # θ is restored by copy, not by subtracting the step again (float rounding would drift).
        original = [p.detach().clone() if c else None for p, c in zip(params, chosen)]
        out = np.empty((len(queries), len(train)))
        bar = progress_bar(len(queries), f"unlearning {query_set}", unit="query")
        for idx, blocks in self.gradient_batches(unet, scheduler, queries):
            for row, i in enumerate(idx):
                delta = self.step_direction([b[row] for b in blocks], chosen, fisher, mean,
                                            norm_theta, params)
                with torch.no_grad():
                    for p, d in zip(params, delta):
                        if d is not None:
                            p.add_(d)
                    try:
                        out[i] = self.losses(unet, scheduler, train).mean(1) - base
                    finally:
                        for p, o in zip(params, original):
                            if o is not None:
                                p.copy_(o)
                bar.update(1)
        bar.close()
        return out

    def model_work(self, n_train, n_queries, sizes, config):
        items = self.params["n_timesteps"] * self.params["n_noises"]
        return [("gradients", n_train + sum(n_queries), items),
                ("forward", n_train * items * (1 + sum(n_queries)))]

