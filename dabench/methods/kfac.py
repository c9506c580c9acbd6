"""K-FAC and EK-FAC influence functions (Mlodozeniec et al., ICLR 2025; docs/computation.md §4).

τ(x, x_i) = ∇f(x)ᵀ (G + λI)⁻¹ ∇L(x_i), with f and L the diffusion loss averaged over the K
fixed (t, ε) of the gradient features and G the generalised Gauss-Newton of the diffusion MSE
loss, approximated per Linear / Conv2d layer (weight and bias jointly) by curvlinops:

- ``kfac``: G_l ≈ A_l ⊗ B_l, A the second moment of the layer's inputs (conv layers "expand":
  every spatial position an extra example), B that of the output gradients with targets drawn
  from the model's Gaussian (``fisher: mc``; ``type-2`` is exact and costs one backward pass per
  output);
- ``ekfac``: the same eigenbases, the eigenvalues refitted to the per-example gradients (George
  et al.).

The curvature is fitted on the training set, ``fit_passes`` passes each with fresh (t, ε). In
the eigenbasis Q = Q_A ⊗ Q_B with eigenvalues s, (G + λI)⁻¹ = Q diag(1 ⁄ (s + λ)) Qᵀ exactly
(damping added to the eigenvalues, not to the factors). A training gradient is kept as its
eigen-coordinates c_i = Qᵀ∇L(x_i) and a query's as Qᵀ∇f(x) ⁄ (s + λ); the score is their dot
product — exact with ``projection: none``, and with a projection P (paper scale) the unbiased
random-projection estimate ⟨Pᵀa, Pᵀb⟩ of it, so the N training gradients are computed once and
stored in k dimensions whatever λ is. λ = ``damping`` × the mean eigenvalue; the sidecar also
reports the tune-subset LDS of every λ in ``lambdas`` (is the paper's "no tuning" right?).
Parameters outside Linear / Conv2d layers (group norms) carry no curvature and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dabench import layout
from dabench.methods.model_methods import MODEL_METHOD_DEFAULTS, ModelMethod

DAMPING_GRID = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


@dataclass
class Eigenbasis:
    """Per layer: (parameter names (weight[, bias]), Q_A or None, Q_B, eigenvalues s (out, in'))."""

    layers: list

    @property
    def dim(self) -> int:
        return int(sum(s.numel() for *_, s in self.layers))

    def mean_eigenvalue(self) -> float:
        return float(sum(s.double().sum() for *_, s in self.layers) / self.dim)

    def eigenvalues(self):
        import torch

        return torch.cat([s.reshape(-1) for *_, s in self.layers])

    def coordinates(self, blocks: dict) -> list:
        """Qᵀg per layer, (B, out·in') blocks, from gradient blocks by parameter name."""
        import torch

        out = []
        for names, qa, qb, s in self.layers:
            w = blocks[names[0]]
            m = w.reshape(w.shape[0], s.shape[0], -1)
            if len(names) > 1:
                m = torch.cat([m, blocks[names[1]].reshape(w.shape[0], -1, 1)], dim=2)
            m = m.to(qb.dtype)
            v = torch.einsum("ij,bik->bjk", qb, m)
            if qa is not None:
                v = v @ qa
            out.append(v.reshape(v.shape[0], -1).float())
        return out


def supported_layers(model) -> list[tuple[str, list[str]]]:
    """(module name, [weight name, bias name]) of every Linear / Conv2d with trainable weights."""
    import torch

    out = []
    for name, module in model.named_modules():
        if type(module) not in (torch.nn.Linear, torch.nn.Conv2d):
            continue
        names = [f"{name}.{k}" if name else k
                 for k, p in module.named_parameters(recurse=False) if p.requires_grad]
        names.sort(key=lambda n: not n.endswith("weight"))
        if names and names[0].endswith("weight"):
            out.append((name, names))
    return out


def fit_eigenbasis(model_func, data, kind: str, fisher: str, num_data: int, seed: int,
                   batch_size_fn=None) -> Eigenbasis:
    """Fit (E)K-FAC of ``model_func`` (inputs → (B, D) outputs, an MSE loss) on ``data`` (an
    iterable of (inputs, targets) batches, the same on every iteration) with curvlinops, and
    return its eigenbasis with parameter names of ``model_func``."""
    import torch
    from curvlinops import EKFACLinearOperator, KFACLinearOperator

    layers = supported_layers(model_func)
    params = dict(model_func.named_parameters())
    flat = [params[n] for _, names in layers for n in names]
    cls = EKFACLinearOperator if kind == "ekfac" else KFACLinearOperator
    op = cls(model_func, torch.nn.MSELoss(), flat, data, fisher_type=fisher, kfac_approx="expand",
             separate_weight_and_bias=False, check_deterministic=False, num_data=num_data,
             seed=seed % 2**31, **({"batch_size_fn": batch_size_fn} if batch_size_fn else {}))
    out = []
    if kind == "ekfac":
        op.compute_eigenvalue_correction()
        state = op.state_dict()
        for module, names in layers:
            qa = state["input_covariances_eigenvectors"].get(module)
            qb = state["gradient_covariances_eigenvectors"][module]
            s = state["corrected_eigenvalues"][module]
            if isinstance(s, dict):         # a layer without bias: {its position: eigenvalues}
                (s,) = s.values()
            out.append((names, qa, qb, s.reshape(qb.shape[0], -1).clamp_min(0)))
        return Eigenbasis(out)
    op.compute_kronecker_factors()
    state = op.state_dict()
    for module, names in layers:
        ea, qa = torch.linalg.eigh(state["input_covariances"][module])
        eb, qb = torch.linalg.eigh(state["gradient_covariances"][module])
        out.append((names, qa, qb, torch.outer(eb.clamp_min(0), ea.clamp_min(0))))
    return Eigenbasis(out)


def _Denoiser(unet):
    """ε_θ(x_t, t[, c]) flattened to (B, D), as a module wrapping the UNet (``unet.`` names)."""
    import torch

    from dabench.model import denoise

    class Denoiser(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, batch):
            return denoise(self.unet, batch["x"], batch["t"], batch.get("cond")).flatten(1)

    return Denoiser()


class _FitData:
    """The training set as curvlinops batches ({x_t, t[, cond]}, ε) with fresh (t, ε) each pass,
    the same sequence on every iteration (seeded)."""

    def __init__(self, split, scheduler, seed: int, passes: int, batch: int, device):
        self.split, self.scheduler, self.seed = split, scheduler, seed
        self.passes, self.batch, self.device = passes, batch, device

    def __iter__(self):
        import torch

        from dabench.model import add_noise
        from dabench.seeds import derive_seed

        n, T = len(self.split), self.scheduler.config.num_train_timesteps
        for p in range(self.passes):
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "curvature", p))
            for a in range(0, n, self.batch):
                x0 = torch.as_tensor(self.split.images[a:a + self.batch])
                t = torch.randint(0, T, (len(x0),), generator=gen)
                eps = torch.randn(x0.shape, generator=gen)
                batch = {"x": add_noise(self.scheduler, x0, eps, t).to(self.device),
                         "t": t.to(self.device)}
                if self.split.cond is not None:
                    batch["cond"] = self.split.cond[a:a + self.batch].to(self.device)
                yield batch, eps.flatten(1).to(self.device)


class KFACInfluence(ModelMethod):
    name = "kfac"
    label = "K-FAC influence"
    family = "curvature"
    family_label = "influence functions (GGN)"
    colour = "#e377c2"
    kind = "kfac"
    shown = ("damping",)
    defaults = {**MODEL_METHOD_DEFAULTS, "damping": 1e-3, "lambdas": DAMPING_GRID,
                "fisher": "mc", "fit_passes": 1, "fit_batch": 32, "projection": "none",
                "k": 4096}

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["fisher"] not in ("mc", "type-2"):
            raise ValueError(f"fisher must be mc or type-2, got {self.params['fisher']!r}")
        if not float(self.params["damping"]) > 0:
            raise ValueError(f"damping must be positive, got {self.params['damping']!r}")
        for key in ("fit_passes", "fit_batch"):
            if isinstance(self.params[key], bool) or not isinstance(self.params[key], int) \
                    or self.params[key] < 1:
                raise ValueError(f"{key} must be a positive integer, got {self.params[key]!r}")

    def inputs(self, query_set):
        return {**super().inputs(query_set), "tune_subsets": layout.lds_subsets("tune"),
                "tune_outputs": layout.lds_outputs("tune", query_set)}

    # -- the training side, once per job -----------------------------------------------------------

    def _prepare(self, inputs):
        key = str(inputs["model"])
        if getattr(self, "_prepared", (None,))[0] == key:
            return self._prepared[1]
        import time

        from dabench.seeds import derive_seed

        unet, scheduler, _ = self.model(inputs)
        train = self.split(inputs, "train")
        device = next(unet.parameters()).device
        tic = time.perf_counter()
        denoiser = _Denoiser(unet)
        # The batch is the config's, never sized to the device: the (t, ε) and the sampled
        # targets are drawn batch by batch, so another batch would give another curvature.
        batch = self.params["fit_batch"]
        data = _FitData(train, scheduler, self.params["seed"], self.params["fit_passes"],
                        batch, device)
        basis = fit_eigenbasis(denoiser, data, self.kind, self.params["fisher"],
                               len(train) * self.params["fit_passes"],
                               derive_seed(self.params["seed"], "curvature-labels"),
                               batch_size_fn=lambda batch: batch["x"].shape[0])
        fit_seconds = time.perf_counter() - tic
        projector = self._projector(basis.dim)
        rows = np.empty((len(train), projector.k), dtype=np.float32)
        for idx, blocks in self.gradient_batches(unet, scheduler, train,
                                                 progress=f"{self.name} train gradients"):
            rows[idx] = self._project(projector, basis.coordinates(self._named(unet, blocks)))
        # (k, N) float64 for the scores' products, made once for every query set of the job.
        train_t = rows.T.astype(np.float64)
        del rows
        self._prepared = (key, (unet, scheduler, basis, projector, train_t))
        self.timing = {"curvature_seconds": fit_seconds, "fit_batch": batch,
                       "train_gradient_seconds": time.perf_counter() - tic - fit_seconds}
        return self._prepared[1]

    def _projector(self, dim: int):
        from dabench.features import projection_seed
        from dabench.projection import make_projector

        return make_projector(self.params["projection"], dim, self.params["k"],
                              projection_seed(self.params["seed"]))

    @staticmethod
    def _project(projector, blocks) -> np.ndarray:
        return projector.project(blocks).cpu().numpy()

    @staticmethod
    def _named(unet, blocks) -> dict:
        from dabench.gradients import trainable

        return {"unet." + name: b for (name, _), b in zip(trainable(unet), blocks)}

    def query_features(self, inputs, query_set, relative: list[float]) -> dict:
        """λ -> (Q, k) projected, damped query coordinates Pᵀ[Qᵀ∇f ⁄ (s + λ)], batch by batch
        (the unprojected coordinates of one batch at a time: Q × p never exists)."""
        import torch

        unet, scheduler, basis, projector, _ = self._prepare(inputs)
        queries = self.split(inputs, "query", query_set)
        device = next(unet.parameters()).device
        s = basis.eigenvalues().to(device)
        scale = basis.mean_eigenvalue()
        out = {lam: np.empty((len(queries), projector.k), dtype=np.float32) for lam in relative}
        for idx, blocks in self.gradient_batches(unet, scheduler, queries,
                                                 progress=f"{self.name} {query_set} gradients"):
            coords = torch.cat(basis.coordinates(self._named(unet, blocks)), dim=1)
            for lam in relative:
                out[lam][idx] = self._project(projector, [coords / (s + lam * scale)])
        return out

    def score(self, inputs, query_set):
        from dabench.io import load_npy
        from dabench.metrics import best_by_tune_lds

        _, _, basis, _, train = self._prepare(inputs)
        chosen = float(self.params["damping"])
        grid = sorted(set(map(float, self.params["lambdas"])) | {chosen})
        features = self.query_features(inputs, query_set, grid)

        def scores(lam):
            return features[lam].astype(np.float64) @ train

        _, _, tune = best_by_tune_lds(((lam, scores(lam)) for lam in grid),
                                      load_npy(inputs["tune_subsets"]),
                                      load_npy(inputs["tune_outputs"]))
        scale = basis.mean_eigenvalue()
        self.selection = {"damping_relative": chosen, "damping_absolute": chosen * scale,
                          "eigenvalue_scale": scale, "curvature_dim": basis.dim,
                          "tune_lds_by_damping": {str(k): v for k, v in tune.items()},
                          **getattr(self, "timing", {})}
        return scores(chosen)

    def extra_metadata(self) -> dict:
        return getattr(self, "selection", {})

    def model_work(self, n_train, n_queries, sizes, config):
        items = self.params["n_timesteps"] * self.params["n_noises"]
        passes = self.params["fit_passes"] * (2 if self.kind == "ekfac" else 1)
        dim = self.params["k"] if self.params["projection"] != "none" else sizes.p
        grid = len(self.params["lambdas"]) + 1
        # The curvature fit in batches of fit_batch, beside its factors and their eigenvectors,
        # ≤ 80 bytes per parameter (a 3×3 convolution's input factor is ~9·in⁄out times its
        # weight).
        return [("train", n_train * passes, self.params["fit_batch"], 80 * sizes.p),
                ("gradients", n_train + sum(n_queries), items),
                ("host", 4 * dim * (n_train + grid * max(n_queries, default=0)))]

    def cost(self, n_train, n_queries, sizes, config):
        dim = self.params["k"] if self.params["projection"] != "none" else sizes.p
        grid = len(self.params["lambdas"]) + 1
        return (4 * dim * (n_train + grid * n_queries) + 8 * dim * n_train
                + 2 * 8 * n_queries * n_train + (64 << 20), 2.0 * grid * n_queries * n_train * dim)


class EKFACInfluence(KFACInfluence):
    name = "ekfac"
    label = "EK-FAC influence"
    kind = "ekfac"
