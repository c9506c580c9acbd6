"""The loss as self-influence: a reference row for outlier detection (docs/computation.md §6).

Diffusion-ReTrac's outlier experiment ranks training examples by self-influence τ(x_i, x_i);
the rare examples it plants are also the ones the model fits worst. This reference scores every
training example by its own diffusion loss ℓ(x_i; θ), averaged over the K fixed (t, ε) of the
gradient features — no gradients at all — so the outlier table shows how much of a
self-influence method's success a plain loss already has. It defines self-influence only: no
attribution scores, no LDS row.
"""

from __future__ import annotations

from dabench import layout
from dabench.methods.model_methods import MODEL_METHOD_DEFAULTS, ModelMethod


class LossSelfInfluence(ModelMethod):
    name = "loss"
    label = "Loss (reference)"
    family = "reference"
    query_sets = ()                 # self-influence only
    has_self_influence = True
    defaults = dict(MODEL_METHOD_DEFAULTS)

    def inputs(self, query_set):
        raise ValueError("the loss reference defines self-influence only, not attribution scores")

    def score(self, inputs, query_set):
        raise ValueError("the loss reference defines self-influence only, not attribution scores")

    def self_inputs(self):
        return {"model": layout.FULL_MODEL, "train_images": layout.TRAIN_DATA}

    def self_influence(self, inputs):
        unet, scheduler, _ = self.model(inputs)
        return self.losses(unet, scheduler, self.split(inputs, "train")).mean(1)

    def model_work(self, n_train, n_queries, sizes, config):
        return [("forward", n_train * self.params["n_timesteps"] * self.params["n_noises"])]
