"""Checkpoint methods that trace training: TracInCP, GAS, Diffusion-TracIn, Diffusion-ReTrac.

All four sum over C checkpoints θ_c of the full model, weighted by the learning rate η_c the
training log records at the checkpoint's last step (docs/computation.md §4):

- ``tracincp`` (Pruthi et al.): Σ_c η_c ⟨φ_c(x), φ_c(x_i)⟩, both sides the usual K-timestep
  feature of the loss;
- ``gas`` (Hammoudeh & Lowd): the same with cosine similarity (exact, unprojected norms);
- ``diffusion-tracin`` (Xie et al.): Σ_c η_c ⟨(1/K)Σ_k ∇ℓ(x, t_k, ε_k; θ_c), ∇ℓ(x_i, t_i^c, ε_i^c; θ_c)⟩,
  the training side **replayed**: at the timestep and noise x_i was trained with nearest
  checkpoint c (:func:`dabench.features.replay_schedule`);
- ``diffusion-retrac`` (Xie et al.): the same with every test-timestep gradient and every
  training gradient L2-normalised (the training norm is the exact one, before projection).

Besides test influence, each defines **self-influence** (the influence of x_i on itself, used for
outlier detection): the test side evaluated on x_i itself. GAS has none (it would be constant).
With ``projection: none`` the dot products are exact; otherwise they are estimated from
projected features (an unbiased count-sketch by default).
"""

from __future__ import annotations

import numpy as np

from dabench import layout
from dabench.features import FeatureSpec
from dabench.io import load_npy, load_npz
from dabench.methods.kernel import FEATURE_DEFAULTS, GradientFeatureMethod


class CheckpointMethod(GradientFeatureMethod):
    """Base: Σ_c η_c · combine(test side at θ_c, training side at θ_c)."""

    family = "tracin"
    # ``checkpoints: []`` = every step of train.checkpoint_steps (filled in by config validation).
    defaults = {**FEATURE_DEFAULTS, "checkpoints": []}
    replay = False          # training side at the logged (t, ε) instead of the K timesteps
    unit = False            # ReTrac: normalise every single gradient
    has_self_influence = True
    uses_checkpoints = True

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["function"] != "loss":
            raise ValueError(f"{self.name} traces the training loss: function must be 'loss', "
                             f"got {self.params['function']!r}")
        steps = self.params["checkpoints"]
        if not isinstance(steps, list) or not all(isinstance(s, int) and s > 0 for s in steps):
            raise ValueError(f"checkpoints must be a list of positive training steps, got {steps!r}")

    def bind(self, config):
        available = sorted(config["train"]["checkpoint_steps"])
        if not self.params["checkpoints"]:
            self.params["checkpoints"] = available
        missing = sorted(set(self.params["checkpoints"]) - set(available))
        if missing:
            raise ValueError(f"checkpoints {missing} are not in train.checkpoint_steps {available}")
        if not self.params["checkpoints"]:
            raise ValueError("needs checkpoints of the full model: set train.checkpoint_steps")

    @property
    def checkpoints(self) -> list[int]:
        if not self.params["checkpoints"]:
            raise ValueError(f"method {self.name}: no checkpoints (set train.checkpoint_steps)")
        return sorted(self.params["checkpoints"])

    @property
    def query_spec(self) -> FeatureSpec:
        keys = {k: self.params[k] for k in FEATURE_DEFAULTS}
        return FeatureSpec(**keys, normalize=self.unit)

    @property
    def train_spec(self) -> FeatureSpec:
        if self.replay:
            return FeatureSpec(self.params["function"], schedule="replay",
                               projection=self.params["projection"], k=self.params["k"])
        return self.query_spec

    @property
    def variant(self) -> str:
        parts = [f"C={len(self.params['checkpoints']) or 'all'}"]
        for key in ("schedule", "projection", "k", "n_noises"):
            if self.params[key] != FEATURE_DEFAULTS[key]:
                parts.append(f"{key}={self.params[key]}")
        return ", ".join(parts)

    # -- inputs ----------------------------------------------------------------------------------

    def _side_inputs(self, query_split: str) -> dict:
        out = {"training_log": layout.TRAINING_LOG}
        for step in self.checkpoints:
            model = layout.checkpoint_name(step)
            out[f"query_{step}"] = layout.features(model, self.query_spec.id, query_split)
            out[f"train_{step}"] = layout.features(model, self.train_spec.id, "train")
            out[f"train_norms_{step}"] = layout.feature_norms(model, self.train_spec.id, "train")
            out[f"query_norms_{step}"] = layout.feature_norms(model, self.query_spec.id, query_split)
        return out

    def inputs(self, query_set):
        return self._side_inputs(query_set)

    def self_inputs(self) -> dict:
        """Inputs of :meth:`self_influence`: the test side evaluated on the training set."""
        return self._side_inputs("train")

    # -- scores ----------------------------------------------------------------------------------

    def cost(self, n_train, n_queries, sizes, config):
        k = self.feature_dim(sizes)
        c = len(self.params["checkpoints"]) or len(config["train"]["checkpoint_steps"])
        return (3 * 8 * n_queries * n_train + 8 * n_queries * k + 3 * (256 << 20),
                c * 2.0 * n_queries * n_train * k)

    def learning_rates(self, inputs) -> dict[int, float]:
        """η_c: the learning rate of the last optimizer step before checkpoint c."""
        lr = load_npz(inputs["training_log"])["lr"]
        return {s: float(lr[min(s, len(lr)) - 1]) for s in self.checkpoints}

    def combine(self, query, train, query_norms, train_norms) -> np.ndarray:
        """(Q, k) × (N, k) -> (Q, N) at one checkpoint."""
        if self.unit:
            train = train / np.maximum(train_norms, 1e-30)[:, None]
        return query @ train.T

    def combine_self(self, query, train, query_norms, train_norms) -> np.ndarray:
        """Row-wise version of :meth:`combine` for x_i against itself, (N,)."""
        if self.unit:
            train = train / np.maximum(train_norms, 1e-30)[:, None]
        return np.einsum("nk,nk->n", query, train)

    def _accumulate(self, inputs, combine, rowwise: bool = False,
                    chunk_bytes: int = 256 << 20) -> np.ndarray:
        """Σ_c η_c combine(…) over the checkpoints, the training rows read in float32 chunks and
        combined in float64 (``rowwise``: self-influence, the query side chunked alike)."""
        from dabench.io import npy_header, read_rows
        from dabench.io import checked_path

        total = None
        self.learning_rate_by_checkpoint = self.learning_rates(inputs)
        for step, eta in self.learning_rate_by_checkpoint.items():
            train_path = checked_path(inputs[f"train_{step}"])
            query_path = checked_path(inputs[f"query_{step}"])
            (n, k), _, _ = npy_header(train_path)
            qn = load_npy(inputs[f"query_norms_{step}"]).astype(np.float64)
            tn = load_npy(inputs[f"train_norms_{step}"]).astype(np.float64)
            q = None if rowwise else read_rows(query_path, 0, len(qn)).astype(np.float64)
            part = np.empty(n if rowwise else (len(qn), n))
            rows = max(1, chunk_bytes // (8 * k))
            for a in range(0, n, rows):
                t = read_rows(train_path, a, a + rows).astype(np.float64)
                b = a + len(t)
                if rowwise:
                    part[a:b] = combine(read_rows(query_path, a, b).astype(np.float64), t,
                                        qn[a:b], tn[a:b])
                else:
                    part[:, a:b] = combine(q, t, qn, tn[a:b])
            total = eta * part if total is None else total + eta * part
        return total

    def score(self, inputs, query_set):
        return self._accumulate(inputs, self.combine)

    def self_influence(self, inputs) -> np.ndarray:
        if not self.has_self_influence:
            raise ValueError(f"{self.name} defines no self-influence")
        return self._accumulate(inputs, self.combine_self, rowwise=True)

    def extra_metadata(self) -> dict:
        return {"checkpoints": self.checkpoints,
                "learning_rates": {str(k): v for k, v in
                                   getattr(self, "learning_rate_by_checkpoint", {}).items()},
                "query_feature": self.query_spec.id, "train_feature": self.train_spec.id}


class TracInCP(CheckpointMethod):
    name = "tracincp"
    label = "TracInCP"

    def combine_self(self, query, train, query_norms, train_norms):
        # ‖φ_c(x_i)‖² of the exact gradient (query and train side are the same feature).
        return train_norms ** 2


class GAS(CheckpointMethod):
    name = "gas"
    label = "GAS"
    has_self_influence = False

    def combine(self, query, train, query_norms, train_norms):
        return (query @ train.T) / np.maximum(np.outer(query_norms, train_norms), 1e-30)


class DiffusionTracIn(CheckpointMethod):
    name = "diffusion-tracin"
    label = "Diffusion-TracIn"
    replay = True


class DiffusionReTrac(CheckpointMethod):
    name = "diffusion-retrac"
    label = "Diffusion-ReTrac"
    replay = True
    unit = True
