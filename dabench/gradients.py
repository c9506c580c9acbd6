"""Per-example gradients of a diffusion model's output functions, within a memory budget.

The feature of an example averages gradients over its J *items*, an item being one (image, t, ε):
the K timesteps × n noises of docs/computation.md §3, the logged (t, ε) of a replayed training
example, or the
S sampling steps of a Journey-TRAK trajectory (each with its own image x̂₀⁽ˢ⁾). Two strategies
compute (1/J) Σ_j ∇_θ F(x_j, t_j, ε_j; θ) per example, chosen by :func:`plan_gradients`:

- ``vmap``: B examples at once with ``torch.func`` (``functional_call`` + ``vmap(grad)``) — the
  fastest for small models, where B·J items make one batched pass; it holds B·J items'
  activations and B gradients;
- ``loop``: one example at a time, its items in chunks of ordinary batched forward/backward
  passes accumulating into ``.grad`` — for large models (the papers' 35.7M UNet: a gradient is
  143 MB, and vmap holds ~3× the activations of a plain backward); it holds one gradient and one
  chunk's activations, whatever J is.

Diffusion-ReTrac's ``normalize`` divides every item's gradient by its L2 norm before averaging;
it is accumulated item-chunk by item-chunk (one running sum beside the chunk's gradients).

Gradients are returned as *blocks*, one (B, p_i) tensor per parameter in ``named_parameters``
order (:func:`example_gradients`), so that the projection (:mod:`dabench.projection`) and the
norms read them without a flat copy. Memory planning uses the model's activation bytes per
sample from :func:`dabench.profile.unet_profile` and the coefficients below, measured on the
papers' UNet (CPU, torch 2.13; ``scripts/benchmarks/featurize_memory.py``) with a margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Peak bytes per item, as a multiple of the model's saved-activation bytes per sample (the
# meta-device count of dabench.profile): measured 0.85-0.91 (vmap) and 0.23-0.25 (plain
# backward) on the 35.7M UNet at 32x32; the margins cover allocator slack and other layouts.
VMAP_ITEM_FACTOR = 1.25
LOOP_ITEM_FACTOR = 0.5
# vmap pays off only when it batches several examples; below this the loop is faster and leaner.
MIN_VMAP_BATCH = 4
# On a CPU, vmap of a large model is slower per item than the loop (35.7M UNet, one thread:
# 0.9 s vs 0.36-0.5 s per item), so above this many parameters the CPU always loops.
CPU_VMAP_MAX_PARAMS = 10_000_000


def _loss(out, noise, w):
    return ((out - noise) ** 2).flatten(1).mean(1)


OUTPUT_FUNCTIONS = {
    "loss": _loss,
    "square": lambda out, noise, w: (out ** 2).flatten(1).mean(1),
    "mean": lambda out, noise, w: out.flatten(1).mean(1),
    "l1-norm": lambda out, noise, w: out.flatten(1).abs().sum(1),
    "l2-norm": lambda out, noise, w: out.flatten(1).norm(dim=1),
    "linf-norm": lambda out, noise, w: out.flatten(1).abs().amax(1),
    "weighted-mse": lambda out, noise, w: _loss(out, noise, w) * w,
}


def vlb_weights(scheduler):
    """β_t² / (2 σ_t² α_t (1 - ᾱ_t)) with σ_t² = β_t: the DDPM variational-bound weight, (T,)."""
    betas = scheduler.betas.double()
    alphas = 1 - betas
    abar = scheduler.alphas_cumprod.double()
    return (betas ** 2 / (2 * betas * alphas * (1 - abar))).float()


@dataclass(frozen=True)
class GradientPlan:
    """How a batch of per-example gradients is computed: ``mode`` vmap or loop, ``batch``
    examples per call (1 in loop mode), ``item_chunk`` items per forward pass (all J in vmap
    mode), ``peak_bytes`` the estimated memory of the gradient work."""

    mode: str
    batch: int
    item_chunk: int
    peak_bytes: int


def plan_gradients(n_params: int, activation_bytes: int, items: int, normalize: bool,
                   budget_bytes: int, n_examples: int | None = None,
                   max_items: int | None = None, device: str = "cpu") -> GradientPlan:
    """The largest computation that fits ``budget_bytes``.

    ``n_params``: p; ``activation_bytes``: saved activations of one sample's forward pass;
    ``items``: J per example; ``max_items``: a cap on B·J (the CPU default batches keep to
    2048, 512 with normalisation, as before memory planning). Below :data:`MIN_VMAP_BATCH`
    examples per call (or all of fewer, at least 2), and on a CPU for models over
    :data:`CPU_VMAP_MAX_PARAMS` parameters, the loop runs, with item chunks sized to the budget (at least one item,
    so a budget below one item's need still runs, over it)."""
    grad = 4 * n_params
    max_items = max_items or (512 if normalize else 2048)
    vmap_item = VMAP_ITEM_FACTOR * activation_bytes + (grad if normalize else 0)
    per_example = items * vmap_item + grad
    batch = int(budget_bytes // per_example)
    batch = min(batch, max(1, max_items // items))
    if n_examples is not None:
        batch = min(batch, n_examples)
    enough = MIN_VMAP_BATCH if n_examples is None else min(MIN_VMAP_BATCH, max(n_examples, 2))
    if device == "cpu" and n_params > CPU_VMAP_MAX_PARAMS:
        batch = 0
    if batch >= enough:
        return GradientPlan("vmap", batch, items, int(batch * per_example))
    fixed = grad * (2 if normalize else 1)
    if normalize:
        item = LOOP_ITEM_FACTOR * activation_bytes    # one item per pass: its own gradient
        chunk = 1
    else:
        item = LOOP_ITEM_FACTOR * activation_bytes
        chunk = int(max(1, (budget_bytes - fixed) // item))
    chunk = min(chunk, items)
    return GradientPlan("loop", 1, chunk, int(fixed + chunk * item))


def _item_inputs(scheduler, x, noise, t):
    """x_t of J items: ``x`` (J, C, H, W) or (C, H, W) shared, ``noise`` (J, C, H, W), ``t`` (J,)."""
    from dabench.model import add_noise

    if x.ndim == noise.ndim - 1:
        x = x.unsqueeze(0).expand(noise.shape[0], *x.shape)
    return add_noise(scheduler, x, noise, t)


def _vmap_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab, normalize):
    """Blocks (B, p_i) of (1/J)Σ_j ∇F per example, all B·J items in one vmapped call."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in unet.named_parameters()}
    buffers = {k: v.detach() for k, v in unet.named_buffers()}
    b = x0.shape[0]
    x_dim = 0
    t_dim = None if timesteps.ndim == 1 else 0

    def output(p, x, noise, t):
        xt = _item_inputs(scheduler, x, noise, t)
        out = functional_call(unet, (p, buffers), (xt, t)).sample
        return fn(out.float(), noise, None if wtab is None else wtab[t]).mean()

    if not normalize:
        grads = vmap(grad(output), in_dims=(None, x_dim, 0, t_dim))(params, x0, noises, timesteps)
        return [grads.pop(name).reshape(b, -1) for name in list(params)]
    # One gradient per (example, item), each L2-normalised, then averaged.
    per_item = x0.ndim == noises.ndim
    single = vmap(grad(output), in_dims=(None, 0 if per_item else None, 0, 0))
    x_items = x0.unsqueeze(2) if per_item else x0
    t_items = timesteps.unsqueeze(-1)                       # (J, 1) or (B, J, 1)
    grads = vmap(single, in_dims=(None, 0, 0, t_dim))(params, x_items, noises.unsqueeze(2),
                                                       t_items)
    j = noises.shape[1]
    sq = sum(g.reshape(b, j, -1).double().pow(2).sum(-1) for g in grads.values())
    inv = (1.0 / sq.sqrt().clamp_min(1e-30)).float()[..., None]           # (B, J, 1)
    return [(grads.pop(name).reshape(b, j, -1) * inv).mean(dim=1) for name in list(params)]


def _loop_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab, normalize, chunk):
    """Blocks (1, p_i) of one example's (1/J)Σ_j ∇F, items in chunks of ordinary backward passes
    accumulating into ``.grad`` (normalised: one item per pass, summed into a running total)."""
    import torch

    params = [p for _, p in unet.named_parameters()]
    j_total = noises.shape[1]
    per_item = x0.ndim == noises.ndim

    def value(sl):
        x = x0[0, sl] if per_item else x0[0]
        t = timesteps[sl] if timesteps.ndim == 1 else timesteps[0, sl]
        noise = noises[0, sl]
        out = unet(_item_inputs(scheduler, x, noise, t), t).sample
        return fn(out.float(), noise, None if wtab is None else wtab[t])

    unet.zero_grad(set_to_none=True)
    if not normalize:
        for start in range(0, j_total, chunk):
            (value(slice(start, start + chunk)).sum() / j_total).backward()
        return [p.grad.reshape(1, -1) for p in params]
    total = [torch.zeros_like(p).reshape(1, -1) for p in params]
    for j in range(j_total):
        value(slice(j, j + 1)).sum().backward()
        norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params))
        scale = 1.0 / (max(norm, 1e-30) * j_total)
        for acc, p in zip(total, params):
            acc.add_(p.grad.reshape(1, -1), alpha=scale)
        unet.zero_grad(set_to_none=True)
    return total


def example_gradients(unet, scheduler, x0, timesteps, noises, function: str,
                      normalize: bool = False, plan: GradientPlan | None = None):
    """(1/J) Σ_j ∇_θ F(x_j, t_j, ε_j; θ) of each example, as blocks (B, p_i) per parameter.

    ``x0``: (B, C, H, W), shared by an example's items, or (B, J, C, H, W), one image per item;
    ``timesteps``: (J,) shared by the examples, or (B, J); ``noises``: (B, J, C, H, W).
    ``plan`` (:func:`plan_gradients`) picks vmap or the loop; the loop takes one example
    (B = 1). Loop blocks are views of the model's ``.grad``: read them before the next call."""
    fn = OUTPUT_FUNCTIONS[function]
    wtab = vlb_weights(scheduler).to(x0.device) if function == "weighted-mse" else None
    if plan is None or plan.mode == "vmap":
        return _vmap_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab, normalize)
    if x0.shape[0] != 1:
        raise ValueError(f"the loop strategy takes one example per call, got {x0.shape[0]}")
    return _loop_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab, normalize,
                           plan.item_chunk)


def block_norms(blocks) -> "torch.Tensor":
    """Exact L2 norm of each row of the gradient given as blocks, (B,) float64."""
    return sum(b.double().pow(2).sum(1) for b in blocks).sqrt()


def per_example_gradients(unet, scheduler, x0, timesteps, noises, function: str,
                          normalize: bool = False, plan: GradientPlan | None = None):
    """:func:`example_gradients` as one flat (B, p) float32 tensor (tests, small models)."""
    import torch

    if plan is not None and plan.mode == "loop" and x0.shape[0] > 1:
        rows = [torch.cat([b.clone() for b in example_gradients(
            unet, scheduler, x0[i:i + 1], timesteps if timesteps.ndim == 1 else timesteps[i:i + 1],
            noises[i:i + 1], function, normalize, plan)], dim=1) for i in range(x0.shape[0])]
        return torch.cat(rows)
    return torch.cat([b.float() for b in example_gradients(unet, scheduler, x0, timesteps, noises,
                                                           function, normalize, plan)], dim=1)


def n_params(unet) -> int:
    return int(sum(p.numel() for p in unet.parameters() if p.requires_grad))


def batches(n: int, plan: GradientPlan):
    """Index arrays of the examples of each call."""
    for start in range(0, n, plan.batch):
        yield np.arange(start, min(n, start + plan.batch))
