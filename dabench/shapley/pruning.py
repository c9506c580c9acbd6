"""Sparsified fine-tuning's pruning: global magnitude masks of the model's trainable weights (a
UNet trained whole: all of them; a LoRA adapter on a frozen base: the adapter's A and B, as the
sparsified-FT paper prunes the LoRA of its Stable Diffusion model), applied in place, and the
parameter counts they leave."""

from __future__ import annotations




def magnitude_masks(unet, ratio: float) -> dict:
    """Global magnitude (L1) pruning: 0/1 masks that zero the ``ratio`` fraction of smallest-|w|
    weights over every trainable convolution and linear weight matrix together (biases and norms
    are kept; a frozen base is not touched)."""
    import torch

    if not 0 <= ratio < 1:
        raise ValueError(f"shapley.prune.ratio must be in [0, 1), got {ratio}")
    prunable = {name: p for name, p in unet.named_parameters()
                if name.endswith(".weight") and p.dim() >= 2 and p.requires_grad}
    flat = torch.cat([p.detach().abs().flatten() for p in prunable.values()])
    k = int(ratio * flat.numel())
    if k == 0:
        return {name: torch.ones_like(p) for name, p in prunable.items()}
    threshold = torch.kthvalue(flat, k).values
    return {name: (p.detach().abs() > threshold).to(p.dtype) for name, p in prunable.items()}


def apply_masks(unet, masks: dict) -> None:
    import torch

    named = dict(unet.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            named[name].mul_(m)


def count_parameters(unet, masks: dict | None = None) -> dict:
    """Trainable parameters (those the game is played with) and non-zero ones after pruning."""
    total = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    zeros = sum(int((m == 0).sum()) for m in (masks or {}).values())
    return {"parameters": int(total), "nonzero": int(total - zeros)}
