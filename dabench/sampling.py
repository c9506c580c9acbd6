"""Generation: DDIM sampling from fixed seeds, keeping each sample's trajectory.

:func:`generate` returns the generation set (the queries of the ``generation`` query set) and the
trajectories x_T … x_0 that Journey-TRAK scores along, together with the timestep of each state.
"""

from __future__ import annotations

import numpy as np
import torch

from dabench.config import derive_seed


def sample_seeds(master_seed: int, n: int, purpose: str = "generation") -> np.ndarray:
    """(n,) int64 seeds of the initial noises x_T; sample i always starts from the same x_T."""
    return np.array([derive_seed(master_seed, purpose, i) for i in range(n)], dtype=np.int64)


@torch.no_grad()
def generate(unet, scheduler_config: dict, seeds: np.ndarray, inference_steps: int = 50,
             eta: float = 0.0, batch_size: int = 256, progress: bool = False) -> dict:
    """DDIM samples from the initial noises of ``seeds``.

    Returns ``images`` (n, C, H, W) float32 in [-1, 1]; ``trajectory`` (S+1, n, C, H, W) float32 —
    x_T, then the state after each of the S DDIM steps (the last equals ``images``);
    ``trajectory_timesteps`` (S+1,) int64 — the timestep each state belongs to (x_T has T-1 … the
    final state 0 is marked -1, it is the clean estimate x_0); ``seeds`` (n,).
    """
    from diffusers import DDIMScheduler

    device = next(unet.parameters()).device
    unet.eval()
    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(inference_steps)
    cfg = unet.config
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    images, trajectories = [], []
    batches = range(0, len(seeds), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="DDIM", unit="batch", leave=False)
    for start in batches:
        chunk = seeds[start:start + batch_size]
        gen = torch.Generator()
        x = torch.stack([torch.randn(shape, generator=gen.manual_seed(int(s))) for s in chunk])
        x = x.to(device)
        states = [x.cpu()]
        step_gen = torch.Generator(device="cpu").manual_seed(int(chunk[0]))
        for t in sched.timesteps:
            eps = unet(x, t).sample
            out = sched.step(eps, t, x, eta=eta, generator=step_gen if eta > 0 else None)
            x = out.prev_sample
            states.append(x.cpu())
        images.append(x.cpu())
        trajectories.append(torch.stack(states))
    timesteps = np.concatenate([sched.timesteps.numpy().astype(np.int64), [-1]])
    return {
        "images": torch.cat(images).numpy().astype(np.float32),
        "trajectory": torch.cat(trajectories, dim=1).numpy().astype(np.float32),
        "trajectory_timesteps": timesteps,
        "seeds": np.asarray(seeds, dtype=np.int64),
    }


@torch.no_grad()
def journey_points(unet, scheduler_config: dict, trajectory: np.ndarray,
                   trajectory_timesteps: np.ndarray, batch_size: int = 256):
    """Journey-TRAK's points: the clean estimate x̂₀⁽ˢ⁾ the model makes from the state of each
    sampling step s, at that step's timestep t_s (DDIM's ``pred_original_sample``).

    ``trajectory`` (S+1, n, C, H, W) and ``trajectory_timesteps`` (S+1,) as :func:`generate`
    writes them. Returns ``(points (n, S, C, H, W) float32, timesteps (S,) int64)``.
    """
    from diffusers import DDIMScheduler

    device = next(unet.parameters()).device
    unet.eval()
    steps = np.asarray(trajectory_timesteps[:-1], dtype=np.int64)
    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(len(steps))
    if not np.array_equal(sched.timesteps.numpy(), steps):
        raise ValueError(f"trajectory timesteps {steps[:4].tolist()}… are not DDIM's "
                         f"{len(steps)}-step schedule")
    points = np.empty((trajectory.shape[1], len(steps), *trajectory.shape[2:]), dtype=np.float32)
    for s, t in enumerate(sched.timesteps):
        for start in range(0, trajectory.shape[1], batch_size):
            x = torch.as_tensor(trajectory[s, start:start + batch_size], device=device)
            eps = unet(x, t).sample
            points[start:start + batch_size, s] = sched.step(eps, t, x).pred_original_sample.cpu().numpy()
    return points, steps


def write_generation_set(model_path, model_cfg: dict, generation_cfg: dict, seed: int,
                         out_path) -> dict:
    """Workflow stage: sample the generation set from the full model and save it (.npz)."""
    from dabench.io import save_npz
    from dabench.model import build_scheduler, load_model

    unet, _ = load_model(model_path)
    seeds = sample_seeds(seed, generation_cfg["n_samples"])
    out = generate(unet, build_scheduler(model_cfg).config, seeds,
                   inference_steps=generation_cfg["inference_steps"], eta=generation_cfg["eta"],
                   progress=True)
    save_npz(out_path, **out)
    return out
