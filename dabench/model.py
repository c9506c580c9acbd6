"""The diffusion model: UNet + DDPM schedule from config, the loss and the model output, saved
models.

- :func:`build_unet` / :func:`build_scheduler`: diffusers ``UNet2DModel`` and ``DDPMScheduler``.
- :func:`example_noise`, :func:`per_example_loss`, :func:`model_output`: the loss ℓ(x, t, ε; θ)
  and the LDS model output f(x; θ) of docs/computation.md §2.
- :func:`save_model` / :func:`load_model`: weights with their metadata, checksum verified.

Training (the training plan, the loop, the full model's stage) is :mod:`dabench.training`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from dabench.architecture import FORWARD_FACTOR, classic_attention, unet_config
from dabench.io import CorruptFileError, load_tensors, save_tensors
from dabench.seeds import derive_seed, fingerprint


def build_unet(model_cfg: dict, channels: int, resolution: int, init_seed: int):
    """A freshly initialised UNet2DModel; the same ``init_seed`` gives the same weights."""
    from diffusers import UNet2DModel

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(init_seed)
        unet = UNet2DModel(**unet_config(model_cfg, channels, resolution))
    return classic_attention(unet)


def build_scheduler(model_cfg: dict):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=model_cfg["num_train_timesteps"],
                         beta_start=model_cfg["beta_start"], beta_end=model_cfg["beta_end"],
                         beta_schedule=model_cfg.get("beta_schedule", "linear"))


# ------------------------------------------------------------------------------------------------
# Noise, loss, model output


def example_noise(noise_seeds: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """ε for each noise seed: (B,) int64 seeds -> (B, *shape) float32, one generator per seed."""
    gen = torch.Generator()
    out = torch.empty((len(noise_seeds), *shape))
    for b, s in enumerate(np.asarray(noise_seeds).tolist()):
        gen.manual_seed(int(s))
        out[b] = torch.randn(shape, generator=gen)
    return out


def add_noise(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, broadcasting over (B, C, H, W)."""
    abar = scheduler.alphas_cumprod.to(x0.device, x0.dtype)[t.long()].view(-1, 1, 1, 1)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def denoise(unet, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
    """ε_θ(x_t, t) of an unconditional ``UNet2DModel``, or ε_θ(z_t, t, c) of a
    ``UNet2DConditionModel`` given ``cond`` (B, L, D), the text encoder's hidden states of each
    example's prompt (docs/computation.md §10)."""
    if cond is None:
        return unet(xt, t).sample
    return unet(xt, t, encoder_hidden_states=cond).sample


def per_example_loss(unet, scheduler, x0, t, noise, cond=None) -> torch.Tensor:
    """ℓ(x, t, ε; θ) = mean over pixels of (ε - ε_θ(x_t, t))²: (B,) for (B, C, H, W) inputs
    (``cond``: see :func:`denoise`)."""
    pred = denoise(unet, add_noise(scheduler, x0, noise, t), t, cond)
    return ((pred.float() - noise.float()) ** 2).flatten(1).mean(1)


def output_batch_size(unet, budget_bytes: int | None = None) -> int:
    """Forward passes per batch for :func:`model_output`: what fits ``budget_bytes`` (the job's
    working memory, :func:`dabench.device.memory_budget`) at the model's activation size."""
    from dabench import device as D
    from dabench.profile import module_profile

    budget = budget_bytes or D.memory_budget(next(unet.parameters()).device)
    prof = module_profile(unet)
    per_sample = FORWARD_FACTOR * prof["activation_bytes"] + 3 * prof["output_bytes"]
    return int(max(1, min(2048, budget // per_sample)))


@torch.no_grad()
def model_output(unet, scheduler, images: np.ndarray, timesteps: np.ndarray, n_noises: int,
                 noise_seed: int, batch_size: int | None = None, resume_path=None,
                 save_every_s: float = 300.0, cond: torch.Tensor | None = None) -> np.ndarray:
    """f(x; θ) = mean over ``timesteps`` × ``n_noises`` fixed noises of ℓ(x, t, ε; θ).

    ``images``: (Q, C, H, W) in [-1, 1]. Returns (Q,) float32. Noise of query q, noise k and grid
    timestep j depends only on (noise_seed, q, k, j): the same for every model evaluated.
    Batches fill the job's working memory (:func:`output_batch_size`) on the model's device.
    ``resume_path`` (.npz): the losses computed so far are saved there every ``save_every_s``
    seconds, and a re-run continues from them (the paper scale's 6M forward passes per retrain
    take hours). ``cond`` (Q, L, D): each query's conditioning (:func:`denoise`)."""
    from dabench.io import load_npz, save_npz

    device = next(unet.parameters()).device
    unet.eval()
    q_idx, k_idx, j_idx = np.meshgrid(np.arange(len(images)), np.arange(n_noises),
                                      np.arange(len(timesteps)), indexing="ij")
    q_idx, k_idx, j_idx = q_idx.ravel(), k_idx.ravel(), j_idx.ravel()
    # Seeds of the noises: a fixed affine map of (q, k, j) from one derived base, so each noise is
    # reproducible alone and the whole grid costs no hashing.
    base = derive_seed(noise_seed, "model-output")
    seeds = (base + (q_idx * n_noises + k_idx) * len(timesteps) + j_idx) % (2**63 - 1)
    losses = np.empty(len(q_idx), dtype=np.float64)
    done = 0
    key = fingerprint({"seed": noise_seed, "timesteps": np.asarray(timesteps).tolist(),
                       "n_noises": n_noises, "shape": list(images.shape)})
    if resume_path is not None and Path(resume_path).exists():
        try:
            state = load_npz(resume_path)
            if str(state["key"]) == key:
                done = int(state["done"])
                losses[:done] = state["losses"][:done]
        except (OSError, KeyError, ValueError):
            done = 0
    batch_size = batch_size or output_batch_size(unet)
    x_all = torch.as_tensor(images)
    last_save = time.perf_counter()
    for start in range(done, len(q_idx), batch_size):
        sl = slice(start, start + batch_size)
        x0 = x_all[q_idx[sl]].to(device)
        t = torch.as_tensor(timesteps[j_idx[sl]], device=device)
        noise = example_noise(seeds[sl], tuple(images.shape[1:])).to(device)
        c = None if cond is None else torch.as_tensor(cond[q_idx[sl]]).to(device)
        losses[sl] = per_example_loss(unet, scheduler, x0, t, noise, c).double().cpu().numpy()
        if resume_path is not None and time.perf_counter() - last_save > save_every_s:
            save_npz(resume_path, key=np.asarray(key), done=np.int64(min(len(q_idx), start + batch_size)),
                     losses=losses[:start + batch_size])
            last_save = time.perf_counter()
    return losses.reshape(len(images), -1).mean(1).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Saved models


def model_tensors(unet) -> dict:
    """What a saved model holds: every tensor of a model trained whole; of a model with frozen
    parameters (a LoRA adapter on a fixed base), only the trainable ones — the base is stored
    once, apart."""
    if all(p.requires_grad for p in unet.parameters()):
        return {f"model.{k}": v for k, v in unet.state_dict().items()}
    return {f"model.{k}": p.detach() for k, p in unet.named_parameters() if p.requires_grad}


def load_model_tensors(unet, tensors: dict) -> None:
    """Load what :func:`model_tensors` saved (a whole model, or an adapter's trainable part)."""
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if all(p.requires_grad for p in unet.parameters()):
        unet.load_state_dict(state)
        return
    trainable = {k for k, p in unet.named_parameters() if p.requires_grad}
    if set(state) != trainable:
        raise CorruptFileError(f"saved adapter tensors do not match the model's trainable "
                               f"parameters ({sorted(set(state) ^ trainable)[:3]})")
    unet.load_state_dict(state, strict=False)


def load_model(path, device=None):
    """Load a checkpoint written by :func:`dabench.training.train` or :func:`save_model` (checksum verified) onto ``device`` (default:
    the job's, :func:`dabench.device.current`); return ``(unet, meta)`` in eval mode."""
    from diffusers import UNet2DModel

    from dabench import device as D

    tensors, meta = load_tensors(path)
    if meta.get("model_family") == "latent":
        # A LoRA adapter: the base's UNet from its folder, the adapter's tensors from the file.
        from dabench.latent import load_adapter_model

        unet = load_adapter_model(meta)
        try:
            load_model_tensors(unet, tensors)
        except CorruptFileError as err:
            raise CorruptFileError(f"checkpoint {path}: {err}") from err
        return unet.to(device or D.current()).eval(), meta
    unet = UNet2DModel(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in meta["unet_config"].items()})
    classic_attention(unet)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CorruptFileError(f"checkpoint {path} does not match its UNet config "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return unet.to(device or D.current()).eval(), meta


def model_metadata(model_cfg: dict, recipe: dict, image_shape) -> dict:
    """What every saved model's sidecar records to be rebuilt and traced: its training recipe,
    the UNet's diffusers config (a latent model: its base and adapter shape instead) and the run's
    model section (``image_shape``: (N, C, H, W) of the images it was trained on)."""
    if model_cfg.get("family") == "latent":
        from dabench.latent import adapter_metadata

        lora = model_cfg["lora"]
        return {"recipe": recipe, "model_config": model_cfg,
                **adapter_metadata(model_cfg["base"], lora["rank"], lora["alpha"])}
    # A latent DDPM's: also the base whose autoencoder decodes its samples.
    family = ({"model_family": "latent-ddpm", "base": str(model_cfg["base"])}
              if model_cfg.get("family") == "latent-ddpm" else {})
    return {"recipe": recipe,
            "unet_config": unet_config(model_cfg, image_shape[1], image_shape[-1]),
            "model_config": model_cfg, **family}


def save_model(path, unet, meta: dict) -> None:
    save_tensors(path, model_tensors(unet), meta)


