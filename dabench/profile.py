"""What one sample costs a UNet: parameters, FLOPs, activation memory — without running it.

:func:`unet_profile` builds the ``UNet2DModel`` of a config on torch's ``meta`` device (no
memory, no weights), runs one sample forward and backward under ``FlopCounterMode`` and counts
the bytes autograd saves for the backward pass. The numbers are exact functions of the
architecture and resolution, the same on every machine, and cost ~0.3 s (plus importing
diffusers); they are cached on disk (``.cache/profiles/`` in the repository, or
``$DABENCH_CACHE``) so that planning a workflow does not pay for them twice.

Used by the featurization's memory planning (:mod:`dabench.gradients`) and by the resources
every rule declares (:mod:`dabench.resources`).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from dabench.layout import REPO_ROOT
from dabench.seeds import fingerprint

# Bump when what is measured changes: cached profiles of an older version are recomputed.
VERSION = 2


def cache_dir() -> Path:
    return Path(os.environ.get("DABENCH_CACHE", REPO_ROOT / ".cache")) / "profiles"


def _measure(unet_kwargs: dict) -> dict:
    import torch
    from diffusers import UNet2DModel
    from torch.utils.flop_counter import FlopCounterMode

    from dabench.architecture import classic_attention

    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in unet_kwargs.items()}
    context = kwargs.pop("_context_length", None)
    with torch.device("meta"):
        if context is None:
            unet = UNet2DModel(**kwargs)
        else:
            from diffusers import UNet2DConditionModel

            unet = UNet2DConditionModel(**kwargs)
    classic_attention(unet)
    size = kwargs["sample_size"]
    res = size if isinstance(size, int) else size[0]
    x = torch.zeros(1, kwargs.get("in_channels", 3), res, res, device="meta")
    t = torch.zeros(1, dtype=torch.long, device="meta")
    extra = {}
    if context is not None:
        extra["encoder_hidden_states"] = torch.zeros(1, context, kwargs["cross_attention_dim"],
                                                     device="meta")
    saved = [0]

    def pack(tensor):
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    # enable_grad: callers may hold no_grad (model_output does), and the backward is measured too.
    with torch.enable_grad():
        with FlopCounterMode(display=False) as forward:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                out = unet(x, t, **extra).sample
        with FlopCounterMode(display=False) as backward:
            out.sum().backward()
    # in + out features of the attention projections a LoRA adapts: its parameters per rank.
    from dabench.latent import LORA_TARGETS

    lora_dims = sum(m.in_features + m.out_features for name, m in unet.named_modules()
                    if isinstance(m, torch.nn.Linear) and name.endswith(LORA_TARGETS))
    return {"params": int(sum(p.numel() for p in unet.parameters())),
            "lora_dims_per_rank": int(lora_dims),
            "forward_flops": int(forward.get_total_flops()),
            "backward_flops": int(backward.get_total_flops()),
            "activation_bytes": int(saved[0]),
            "output_bytes": int(out.numel() * 4),
            "version": VERSION}


@functools.lru_cache(maxsize=64)
def _cached(key: str, payload: str) -> dict:
    path = cache_dir() / f"unet-{key}.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("version") == VERSION:
                return data
        except (OSError, ValueError):
            pass
    data = _measure(json.loads(payload))
    try:
        from dabench.io import save_json

        save_json(path, data)
    except OSError:
        pass                            # a read-only checkout: measure again next time
    return data


def unet_profile(unet_kwargs: dict) -> dict:
    """``params`` p, ``forward_flops`` / ``backward_flops`` of one sample, ``activation_bytes``
    autograd saves for one sample's backward, ``output_bytes`` of one output — for the
    ``UNet2DModel(**unet_kwargs)`` (:func:`dabench.architecture.unet_config`)."""
    payload = json.dumps(unet_kwargs, sort_keys=True, default=list)
    return dict(_cached(fingerprint(json.loads(payload)), payload))


def config_profile(model_cfg: dict, channels: int, resolution: int) -> dict:
    """:func:`unet_profile` of a config's ``model`` section at the data's shape."""
    from dabench.architecture import unet_config

    return unet_profile(unet_config(model_cfg, channels, resolution))


# Text context length assumed for a conditional UNet that does not carry its own (Stable
# Diffusion's CLIP: 77 tokens; the longest context over-estimates memory, never under).
DEFAULT_CONTEXT_LENGTH = 77


def module_profile(unet) -> dict:
    """:func:`unet_profile` of a built (or loaded) UNet2DModel, from its config; of a
    conditional UNet (``UNet2DConditionModel``, a LoRA adapter's frozen parameters included)
    with a text context of ``unet.context_length`` tokens (set by :mod:`dabench.latent`)."""
    cfg = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    if type(unet).__name__ == "UNet2DConditionModel":
        context = getattr(unet, "context_length", DEFAULT_CONTEXT_LENGTH)
        return unet_profile({**cfg, "_context_length": int(context)})
    from dabench.architecture import unet_config_keys

    return unet_profile({k: cfg[k] for k in unet_config_keys() if k in cfg})
