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


def trainable(unet) -> list:
    """(name, parameter) of what attribution differentiates: the trainable parameters — all of a
    pixel UNet, the LoRA factors of an adapter on a frozen base (docs/computation.md §10)."""
    return [(k, p) for k, p in unet.named_parameters() if p.requires_grad]


def _denoise_items(unet, xt, t, cond):
    """ε_θ of J items; ``cond`` (L, D), one example's conditioning shared by its items, or None."""
    from dabench.model import denoise

    return denoise(unet, xt, t, None if cond is None else cond.expand(xt.shape[0], *cond.shape))


def _vmap_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab, normalize, cond=None):
    """Blocks (B, p_i) of (1/J)Σ_j ∇F per example, all B·J items in one vmapped call."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in trainable(unet)}
    frozen = {k: v.detach() for k, v in unet.named_parameters() if not v.requires_grad}
    frozen.update({k: v.detach() for k, v in unet.named_buffers()})
    b = x0.shape[0]
    x_dim = 0
    t_dim = None if timesteps.ndim == 1 else 0
    c_dim = None if cond is None else 0

    def output(p, x, noise, t, c):
        xt = _item_inputs(scheduler, x, noise, t)
        out = functional_call(unet, (p, frozen), (xt, t),
                              {} if c is None else {"encoder_hidden_states":
                                                    c.expand(xt.shape[0], *c.shape)}).sample
        return fn(out.float(), noise, None if wtab is None else wtab[t]).mean()

    if not normalize:
        grads = vmap(grad(output), in_dims=(None, x_dim, 0, t_dim, c_dim))(
            params, x0, noises, timesteps, cond)
        return [grads.pop(name).reshape(b, -1) for name in list(params)]
    # One gradient per (example, item), each L2-normalised, then averaged.
    per_item = x0.ndim == noises.ndim
    single = vmap(grad(output), in_dims=(None, 0 if per_item else None, 0, 0, None))
    x_items = x0.unsqueeze(2) if per_item else x0
    t_items = timesteps.unsqueeze(-1)                       # (J, 1) or (B, J, 1)
    grads = vmap(single, in_dims=(None, 0, 0, t_dim, c_dim))(params, x_items, noises.unsqueeze(2),
                                                              t_items, cond)
    j = noises.shape[1]
    sq = sum(g.reshape(b, j, -1).double().pow(2).sum(-1) for g in grads.values())
    inv = (1.0 / sq.sqrt().clamp_min(1e-30)).float()[..., None]           # (B, J, 1)
    return [(grads.pop(name).reshape(b, j, -1) * inv).mean(dim=1) for name in list(params)]


def hooks_supported(unet) -> bool:
    """Every parameter of ``unet`` sits in a module :func:`_hook_gradients` has a rule for
    (Conv2d without groups and with zero padding, Linear, GroupNorm), each module used once."""
    import torch

    for module in unet.modules():
        if not list(module.parameters(recurse=False)):
            continue
        if type(module) is torch.nn.Conv2d:
            if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
                return False
        elif type(module) not in (torch.nn.Linear, torch.nn.GroupNorm):
            return False
    return True


def _hook_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab):
    """Blocks (B, p_i) of (1/J)Σ_j ∇F per example from ONE batched backward pass of the B·J
    items: each layer's input is kept from the forward pass and, when the gradient of its
    output arrives, the weight gradient is contracted per example — over the example's J items
    and every position at once (conv: the weight gradient of one grouped convolution, the B
    examples as its groups and the J items as its batch; linear: one (out × J·L)(J·L × in)
    product per example; group norm: Σ g·x̂ and Σ g). The
    parameters themselves take no gradient, so the backward pass computes only what flows to the
    inputs. Same numbers as :func:`_vmap_gradients` up to float rounding, about the cost of a
    training step on the B·J items instead of a per-item vmap."""
    import torch
    import torch.nn.functional as F

    b, j = noises.shape[:2]
    n = b * j
    x_items = x0 if x0.ndim == noises.ndim else x0.unsqueeze(1).expand(b, j, *x0.shape[1:])
    t_items = timesteps.expand(b, j) if timesteps.ndim == 1 else timesteps
    x_items, t_items = x_items.reshape(n, *x0.shape[-3:]), t_items.reshape(n)
    noise_items = noises.reshape(n, *noises.shape[2:])
    names = {id(p): name for name, p in unet.named_parameters()}
    blocks: dict[str, torch.Tensor] = {}

    def add(param, value):
        if param is None:
            return
        name = names[id(param)]
        value = value.reshape(b, -1)
        blocks[name] = blocks[name] + value if name in blocks else value

    def contract(module, inp, grad_out):
        g = grad_out.float()
        if type(module) is torch.nn.Conv2d:
            # The B examples as the groups of one grouped convolution whose batch is the J
            # items: its weight gradient is the per-example gradient, summed over items.
            c_out, c_in = module.out_channels, module.in_channels
            per_group = lambda a: a.reshape(b, j, *a.shape[1:]).transpose(0, 1).reshape(
                j, b * a.shape[1], *a.shape[2:])
            weight = module.weight.detach().float()
            grouped = weight.unsqueeze(0).expand(b, *weight.shape).reshape(b * c_out, *weight.shape[1:])
            _, gw, _ = torch.ops.aten.convolution_backward(
                per_group(g), per_group(inp.float()), grouped, None, list(module.stride),
                list(module.padding), list(module.dilation), False, [0, 0], b,
                [False, True, False])
            add(module.weight, gw.reshape(b, c_out * c_in * weight.shape[2] * weight.shape[3]))
            add(module.bias, g.reshape(b, j, c_out, -1).sum((1, 3)))
        elif type(module) is torch.nn.Linear:
            g = g.reshape(b, -1, g.shape[-1])
            add(module.weight, torch.bmm(g.transpose(1, 2), inp.float().reshape(b, -1, inp.shape[-1])))
            add(module.bias, g.sum(1))
        else:                                                               # GroupNorm
            xhat = F.group_norm(inp.float(), module.num_groups, eps=module.eps)
            c = g.shape[1]
            add(module.weight, (g * xhat).reshape(b, j, c, -1).sum((1, 3)))
            add(module.bias, g.reshape(b, j, c, -1).sum((1, 3)))

    def pre_hook(module, args):
        # A layer whose input depends on no parameter (the timestep MLP) still needs the
        # gradient of its output: its input becomes a leaf that asks for one.
        if not args[0].requires_grad:
            return (args[0].detach().requires_grad_(True),) + tuple(args[1:])
        return None

    def post_hook(module, args, out):
        inp = args[0].detach()
        out.register_hook(lambda grad, module=module, inp=inp: contract(module, inp, grad))

    modules = [m for m in unet.modules() if list(m.parameters(recurse=False))]
    flags = [(p, p.requires_grad) for p in unet.parameters()]
    handles = []
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for m in modules:
            handles += [m.register_forward_pre_hook(pre_hook), m.register_forward_hook(post_hook)]
        with torch.enable_grad():
            xt = _item_inputs(scheduler, x_items, noise_items, t_items).detach().requires_grad_(True)
            out = unet(xt, t_items).sample
            value = fn(out.float(), noise_items, None if wtab is None else wtab[t_items])
            (value.sum() / j).backward()
    finally:
        for h in handles:
            h.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
    return [blocks[name] if name in blocks else torch.zeros(b, p.numel(), device=x0.device)
            for name, p in unet.named_parameters()]


def _loop_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab, normalize, chunk,
                    cond=None):
    """Blocks (1, p_i) of one example's (1/J)Σ_j ∇F, items in chunks of ordinary backward passes
    accumulating into ``.grad`` (normalised: one item per pass, summed into a running total)."""
    import torch

    params = [p for _, p in trainable(unet)]
    j_total = noises.shape[1]
    per_item = x0.ndim == noises.ndim

    def value(sl):
        x = x0[0, sl] if per_item else x0[0]
        t = timesteps[sl] if timesteps.ndim == 1 else timesteps[0, sl]
        noise = noises[0, sl]
        out = _denoise_items(unet, _item_inputs(scheduler, x, noise, t), t,
                             None if cond is None else cond[0])
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


def use_hooks(unet, normalize: bool, conditional: bool = False) -> bool:
    """Whether the vmap plan runs as :func:`_hook_gradients`: on a CPU, for the averaged
    (not per-item normalised) gradient of an unconditional model trained whole whose layers all
    have a rule. (On a GPU the vmap path stays: the hook path's memory has not been measured
    there.)"""
    import os

    if normalize or conditional or os.environ.get("DABENCH_GRADIENTS") == "vmap":
        return False
    if not all(p.requires_grad for p in unet.parameters()):
        return False
    if next(unet.parameters()).device.type != "cpu":
        return False
    return hooks_supported(unet)


def example_gradients(unet, scheduler, x0, timesteps, noises, function: str,
                      normalize: bool = False, plan: GradientPlan | None = None, cond=None):
    """(1/J) Σ_j ∇_θ F(x_j, t_j, ε_j; θ) of each example, as blocks (B, p_i) per trainable
    parameter (:func:`trainable`).

    ``x0``: (B, C, H, W), shared by an example's items, or (B, J, C, H, W), one image per item;
    ``timesteps``: (J,) shared by the examples, or (B, J); ``noises``: (B, J, C, H, W);
    ``cond``: (B, L, D), each example's conditioning (a conditional UNet), or None.
    ``plan`` (:func:`plan_gradients`) picks vmap or the loop; the loop takes one example
    (B = 1). Loop blocks are views of the model's ``.grad``: read them before the next call."""
    fn = OUTPUT_FUNCTIONS[function]
    wtab = vlb_weights(scheduler).to(x0.device) if function == "weighted-mse" else None
    if plan is None or plan.mode == "vmap":
        if use_hooks(unet, normalize, cond is not None):
            return _hook_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab)
        return _vmap_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab, normalize, cond)
    if x0.shape[0] != 1:
        raise ValueError(f"the loop strategy takes one example per call, got {x0.shape[0]}")
    return _loop_gradients(unet, scheduler, x0, timesteps, noises, fn, wtab, normalize,
                           plan.item_chunk, cond)


def block_norms(blocks) -> "torch.Tensor":
    """Exact L2 norm of each row of the gradient given as blocks, (B,) float64."""
    return sum(b.double().pow(2).sum(1) for b in blocks).sqrt()


def per_example_gradients(unet, scheduler, x0, timesteps, noises, function: str,
                          normalize: bool = False, plan: GradientPlan | None = None, cond=None):
    """:func:`example_gradients` as one flat (B, p) float32 tensor (tests, small models)."""
    import torch

    if plan is not None and plan.mode == "loop" and x0.shape[0] > 1:
        rows = [torch.cat([b.clone() for b in example_gradients(
            unet, scheduler, x0[i:i + 1], timesteps if timesteps.ndim == 1 else timesteps[i:i + 1],
            noises[i:i + 1], function, normalize, plan,
            None if cond is None else cond[i:i + 1])], dim=1) for i in range(x0.shape[0])]
        return torch.cat(rows)
    return torch.cat([b.float() for b in example_gradients(unet, scheduler, x0, timesteps, noises,
                                                           function, normalize, plan, cond)],
                     dim=1)


def n_params(unet) -> int:
    return int(sum(p.numel() for p in unet.parameters() if p.requires_grad))


def batches(n: int, plan: GradientPlan):
    """Index arrays of the examples of each call."""
    for start in range(0, n, plan.batch):
        yield np.arange(start, min(n, start + plan.batch))
