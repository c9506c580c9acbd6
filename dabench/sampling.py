"""Generation: DDIM sampling from fixed seeds, keeping each sample's trajectory.

:func:`generate` returns the generation set (the queries of the ``generation`` query set) and the
trajectories x_T … x_0 that Journey-TRAK scores along, together with the timestep of each state.
The workflow stores the trajectories apart from the samples (``generation/trajectory.npy``, a
memory-mapped (S+1, n, C, H, W) array written state by state), so a job that reads the 1000
generated images does not load 51 times as many.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from dabench.seeds import derive_seed


def sample_seeds(master_seed: int, n: int, purpose: str = "generation") -> np.ndarray:
    """(n,) int64 seeds of the initial noises x_T; sample i always starts from the same x_T."""
    return np.array([derive_seed(master_seed, purpose, i) for i in range(n)], dtype=np.int64)


def sampling_batch_size(unet) -> int:
    """Samples per DDIM batch: what fits the job's working memory (no-grad forward passes)."""
    from dabench.model import output_batch_size

    return min(256, output_batch_size(unet))


def guided_eps(unet, x, t, cond=None, uncond=None, guidance: float = 1.0):
    """ε for a DDIM step: ε_θ(x, t) unconditionally; ε_θ(x, t, c) for ``cond`` (B, L, D); with
    classifier-free guidance (``guidance`` w ≠ 1 and ``uncond`` (L, D), the empty prompt's
    context) ε_u + w·(ε_c − ε_u), both halves in one batch."""
    from dabench.model import denoise

    if cond is None:
        return unet(x, t).sample
    if guidance == 1.0 or uncond is None:
        return denoise(unet, x, t, cond)
    u = uncond.to(cond.device, cond.dtype).expand(len(x), *uncond.shape)
    eps_u, eps_c = denoise(unet, torch.cat([x, x]), t, torch.cat([u, cond])).chunk(2)
    return eps_u + guidance * (eps_c - eps_u)


@torch.no_grad()
def generate(unet, scheduler_config: dict, seeds: np.ndarray, inference_steps: int = 50,
             eta: float = 0.0, batch_size: int | None = None, progress: bool = False,
             keep_trajectory: bool = True, trajectory_path=None, cond=None, uncond=None,
             guidance: float = 1.0, start_step: int = 0,
             start_states: np.ndarray | None = None) -> dict:
    """DDIM samples from the initial noises of ``seeds`` (conditional models: ``cond`` (n, L, D)
    each sample's context, ``uncond`` and ``guidance`` as in :func:`guided_eps`).

    Returns ``images`` (n, C, H, W) float32 in [-1, 1]; ``trajectory`` (S+1, n, C, H, W) float32 —
    x_T, then the state after each of the S DDIM steps (the last equals ``images``) — when
    ``keep_trajectory`` and no ``trajectory_path``; ``trajectory_timesteps`` (S+1,) int64 — the
    timestep each state belongs to (x_T has T-1 … the final state 0 is marked -1, it is the
    clean estimate x_0); ``seeds`` (n,). With ``trajectory_path`` (.npy) the states are written
    to that file as they are computed (moved into place when complete) instead of being
    returned (read it back memory-mapped: ``np.load(path, mmap_mode="r")``). The initial noises come from CPU generators: the same on any device.

    ``start_step`` s > 0 with ``start_states`` (n, C, H, W): continue sampling from those states
    as state s of the trajectory (after s DDIM steps; Journey-TRAK's counterfactual resumes an
    original trajectory at step s with another model). The steps before s are skipped — their
    stochastic noise (eta > 0) is still drawn, so the steps after s see the same noise as in a
    whole run; the states before s in the returned trajectory are those of ``seeds``' noise.
    """
    from diffusers import DDIMScheduler

    from dabench.io import RowWriter

    device = next(unet.parameters()).device
    unet.eval()
    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(inference_steps)
    cfg = unet.config
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    n, steps = len(seeds), len(sched.timesteps)
    if not 0 <= start_step < steps:
        raise ValueError(f"start_step {start_step} is not one of the {steps} sampling steps")
    if start_step and (start_states is None or len(start_states) != n):
        raise ValueError("start_step > 0 needs start_states, one per seed")
    images = np.empty((n, *shape), dtype=np.float32)
    batch_size = batch_size or sampling_batch_size(unet)
    batches = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="DDIM", unit="batch", leave=False)
    with contextlib.ExitStack() as stack:
        trajectory, writer = None, None
        if trajectory_path is not None:
            # Rows (step, sample) of the (S+1)·n states: state i of samples a…b is rows i·n + a….
            writer = stack.enter_context(RowWriter(trajectory_path, (steps + 1, n, *shape), lead=2))
        elif keep_trajectory:
            trajectory = np.empty((steps + 1, n, *shape), dtype=np.float32)

        def keep(i, sl, x):
            if writer is not None:
                writer.write(i * n + sl.start, x.cpu().numpy())
            elif trajectory is not None:
                trajectory[i, sl] = x.cpu().numpy()

        for start in batches:
            chunk = seeds[start:start + batch_size]
            sl = slice(start, start + len(chunk))
            gen = torch.Generator()
            x = torch.stack([torch.randn(shape, generator=gen.manual_seed(int(s))) for s in chunk])
            x = x.to(device)
            keep(0, sl, x)
            step_gen = torch.Generator(device="cpu").manual_seed(int(chunk[0]))
            c = None if cond is None else torch.as_tensor(cond[sl]).to(device)
            if start_step:
                x = torch.as_tensor(np.asarray(start_states[sl]), dtype=torch.float32).to(device)
            for i, t in enumerate(sched.timesteps):
                if i < start_step:
                    if eta > 0:
                        torch.randn(x.shape, generator=step_gen)
                    continue
                eps = guided_eps(unet, x, t, c, uncond, guidance)
                if eta > 0:
                    # DDIM's stochastic term drawn on the CPU: the same noise on any device.
                    variance = torch.randn(x.shape, generator=step_gen).to(device)
                    out = sched.step(eps, t, x, eta=eta, variance_noise=variance)
                else:
                    out = sched.step(eps, t, x, eta=eta)
                x = out.prev_sample
                keep(i + 1, sl, x)
            images[sl] = x.cpu().numpy()
    timesteps = np.concatenate([sched.timesteps.numpy().astype(np.int64), [-1]])
    out = {"images": images, "trajectory_timesteps": timesteps,
           "seeds": np.asarray(seeds, dtype=np.int64)}
    if trajectory is not None:
        out["trajectory"] = trajectory
    return out


@torch.no_grad()
def journey_points(unet, scheduler_config: dict, trajectory: np.ndarray,
                   trajectory_timesteps: np.ndarray, batch_size: int | None = None,
                   out_path=None, cond=None, uncond=None, guidance: float = 1.0):
    """Journey-TRAK's points: the clean estimate x̂₀⁽ˢ⁾ the model makes from the state of each
    sampling step s, at that step's timestep t_s (DDIM's ``pred_original_sample``).

    ``trajectory`` (S+1, n, C, H, W) — an array or the memory-mapped file :func:`generate`
    writes — and ``trajectory_timesteps`` (S+1,). Returns ``(points (n, S, C, H, W) float32,
    timesteps (S,) int64)``; with ``out_path`` the points are a memory-mapped .npy there (a
    scratch file of the caller's), not held in memory.
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
    shape = (trajectory.shape[1], len(steps), *trajectory.shape[2:])
    if out_path is None:
        points = np.empty(shape, dtype=np.float32)
    else:
        points = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32, shape=shape)
    batch_size = batch_size or sampling_batch_size(unet)
    for s, t in enumerate(sched.timesteps):
        for start in range(0, trajectory.shape[1], batch_size):
            x = torch.as_tensor(trajectory[s, start:start + batch_size], device=device)
            c = None if cond is None else torch.as_tensor(cond[start:start + batch_size]).to(device)
            eps = guided_eps(unet, x, t, c, uncond, guidance)
            points[start:start + batch_size, s] = sched.step(eps, t, x).pred_original_sample.cpu().numpy()
    return points, steps


def generation_prompts(train: dict, n: int):
    """A latent model's generated queries: sample i gets the training set's prompt i mod P (the P
    prompts in turn, as D-TRAK generates each ArtBench style alike). Returns the
    :class:`dabench.data.Conditioning` of the n samples and each one's class label."""
    from dabench.data import Conditioning

    which = np.arange(n) % len(train["contexts"])
    label_of = {int(p): int(c) for p, c in zip(train["prompt"], train["labels"])}
    labels = np.array([label_of.get(int(p), -1) for p in which], dtype=np.int64)
    return Conditioning(train["contexts"], which, train["uncond"]), labels


def write_generation_set(model_path, model_cfg: dict, generation_cfg: dict, seed: int,
                         out_path, trajectory_path, train_path=None) -> dict:
    """Workflow stage: sample the generation set from the full model; the samples (.npz:
    ``images``, ``seeds``, ``trajectory_timesteps``) and the trajectories (.npy) apart.
    A text-to-image model (``train_path``: the training set, for its prompts): each sample is
    guided by one of the training prompts (:func:`generation_prompts`,
    ``model_cfg['guidance']``); the .npz adds the ``prompt`` / ``labels`` of each sample and the
    prompt table, as the training set's file has them. Any latent model's .npz adds the decoded
    ``pixels``."""
    from dabench.io import load_npz, save_npz
    from dabench.model import build_scheduler, load_model

    unet, _ = load_model(model_path)
    seeds = sample_seeds(seed, generation_cfg["n_samples"])
    cond, extra = None, {}
    if model_cfg.get("family") == "latent":
        train = load_npz(train_path)
        cond, labels = generation_prompts(train, len(seeds))
        extra = {"prompt": cond.index.numpy(), "labels": labels, "contexts": train["contexts"],
                 "uncond": train["uncond"], "prompts": train["prompts"]}
    out = generate(unet, build_scheduler(model_cfg).config, seeds,
                   inference_steps=generation_cfg["inference_steps"], eta=generation_cfg["eta"],
                   progress=True, trajectory_path=trajectory_path, cond=cond,
                   uncond=None if cond is None else cond.uncond,
                   guidance=model_cfg.get("guidance", 1.0))
    if model_cfg.get("base"):
        # A latent model's samples decoded by its base's autoencoder (the images people see).
        from dabench.latent import decode_with_base

        extra["pixels"] = decode_with_base(model_cfg["base"], out["images"],
                                           next(unet.parameters()).device,
                                           model_cfg.get("scaling_factor"))
    save_npz(out_path, **out, **extra)
    return out
