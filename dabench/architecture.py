"""The model a config describes, without torch: what planning a workflow needs to know.

The Snakefile asks every rule for its memory and time (:mod:`dabench.resources`) while it
parses, in every SLURM job too; importing torch for that would cost each job seconds. So the
pure functions of the config live here, and :mod:`dabench.model` builds the model from them.

- :func:`unet_config`: the ``diffusers.UNet2DModel`` arguments of the ``model`` section at the
  data's shape (:func:`unet_config_keys`: the arguments a saved model records).
- :func:`timestep_grid`: the evenly spaced timesteps of the LDS output and the ReTrac curves.
- :func:`classic_attention`: the attention processor every built UNet uses (vmap-able).
- :data:`FORWARD_FACTOR`: peak bytes of a no-grad forward per sample, as a multiple of the
  activations a backward pass would save (measured, :mod:`dabench.profile`).
"""

from __future__ import annotations

import numpy as np

UNET_KEYS = ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
             "norm_num_groups", "attention_head_dim", "dropout")


def unet_config_keys() -> tuple[str, ...]:
    """The ``UNet2DModel`` arguments :func:`unet_config` sets (and a saved model records)."""
    return ("sample_size", "in_channels", "out_channels") + UNET_KEYS


def unet_config(model_cfg: dict, channels: int, resolution: int) -> dict:
    """kwargs of ``UNet2DModel`` from the ``model`` config section and the data's shape."""
    cfg = {k: model_cfg[k] for k in UNET_KEYS}
    cfg["block_out_channels"] = tuple(cfg["block_out_channels"])
    cfg["down_block_types"] = tuple(cfg["down_block_types"])
    cfg["up_block_types"] = tuple(cfg["up_block_types"])
    return dict(sample_size=resolution, in_channels=channels, out_channels=channels, **cfg)


def timestep_grid(num_train_timesteps: int, n: int) -> np.ndarray:
    """n evenly spaced timesteps 0, T/n, 2T/n, … (all T when n = T)."""
    n = min(n, num_train_timesteps)
    return (np.arange(n) * num_train_timesteps // n).astype(np.int64)


# Peak bytes of a no-grad forward per sample, as a multiple of the saved-activation count.
FORWARD_FACTOR = 0.5


def classic_attention(unet):
    """Use diffusers' classic attention processor: SDPA has no vmap rule on CPU, and per-example
    gradients (torch.func.vmap) go through every attention layer."""
    from diffusers.models.attention_processor import Attention, AttnProcessor

    for module in unet.modules():
        if isinstance(module, Attention):
            module.set_processor(AttnProcessor())
    return unet
