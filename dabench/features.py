"""Gradient features φ(x) = Pᵀ (1/K) Σ_k ∇_θ F(x, t_k, ε_k; θ)  (SPEC §3).

- :data:`OUTPUT_FUNCTIONS`: the output functions F of D-TRAK's ``--f`` (loss, square, mean,
  l1-norm, l2-norm, linf-norm, weighted-mse).
- :func:`feature_timesteps`: K timesteps, ``uniform`` (0, T/K, 2T/K, …) or ``cumulative``
  (0 … K-1).
- :class:`FeatureSpec`: everything that defines a feature set, and its id (a path component).
- :func:`per_example_gradients`: batched with ``torch.func`` (``functional_call`` +
  ``vmap(grad)``), never a Python loop over examples.
- :func:`featurize`: chunked gradients → projection → rows streamed into a memory-mapped .npy.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dabench.config import derive_seed


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


def feature_timesteps(n: int, schedule: str, num_train_timesteps: int) -> np.ndarray:
    """K timesteps: ``uniform`` = evenly spaced from 0 (K=10 → 0, 100, …, 900 when T = 1000);
    ``cumulative`` = 0, 1, …, K-1."""
    if schedule == "uniform":
        return (np.arange(n) * num_train_timesteps // n).astype(np.int64)
    if schedule == "cumulative":
        if n > num_train_timesteps:
            raise ValueError(f"{n} cumulative timesteps exceed T = {num_train_timesteps}")
        return np.arange(n, dtype=np.int64)
    raise ValueError(f"timestep schedule must be uniform or cumulative, got {schedule!r}")


_ID = re.compile(r"^(?P<function>[a-z0-9-]+)_K(?P<n_timesteps>\d+)(?P<schedule>[uc])"
                 r"_e(?P<n_noises>\d+)_(?P<projection>[a-z_]+?)(?P<k>\d*)$")


@dataclass(frozen=True)
class FeatureSpec:
    """What defines a feature set; :attr:`id` names its folder (``square_K100u_e1_sparse4096``)."""

    function: str = "loss"
    n_timesteps: int = 10
    schedule: str = "uniform"
    n_noises: int = 1
    projection: str = "sparse"
    k: int = 4096

    def __post_init__(self):
        if self.function not in OUTPUT_FUNCTIONS:
            raise ValueError(f"unknown output function {self.function!r} "
                             f"(known: {', '.join(OUTPUT_FUNCTIONS)})")
        if self.schedule not in ("uniform", "cumulative"):
            raise ValueError(f"timestep schedule must be uniform or cumulative, got {self.schedule!r}")

    @property
    def id(self) -> str:
        k = "" if self.projection == "none" else str(self.k)
        return (f"{self.function}_K{self.n_timesteps}{self.schedule[0]}_e{self.n_noises}_"
                f"{self.projection}{k}")

    @classmethod
    def parse(cls, feature_id: str) -> "FeatureSpec":
        m = _ID.match(feature_id)
        if not m:
            raise ValueError(f"not a feature id: {feature_id!r}")
        d = m.groupdict()
        return cls(function=d["function"], n_timesteps=int(d["n_timesteps"]),
                   schedule="uniform" if d["schedule"] == "u" else "cumulative",
                   n_noises=int(d["n_noises"]), projection=d["projection"],
                   k=int(d["k"]) if d["k"] else 0)


def param_count(unet) -> int:
    return sum(p.numel() for p in unet.parameters() if p.requires_grad)


def per_example_gradients(unet, scheduler, x0, timesteps, noises, function: str):
    """∇_θ (1/(K·n)) Σ_{k,j} F(x_b, t_k, ε_{b,k,j}; θ) for each example b, flattened.

    ``x0``: (B, C, H, W); ``timesteps``: (K·n,) — the timestep of each noise; ``noises``:
    (B, K·n, C, H, W). Returns (B, p) float32, p = number of parameters (in ``named_parameters``
    order).
    """
    import torch
    from torch.func import functional_call, grad, vmap

    from dabench.model import add_noise

    fn = OUTPUT_FUNCTIONS[function]
    params = {k: v.detach() for k, v in unet.named_parameters()}
    buffers = {k: v.detach() for k, v in unet.named_buffers()}
    weights = vlb_weights(scheduler).to(x0.device)[timesteps] if function == "weighted-mse" else None

    def output(p, x, noise):
        xs = x.unsqueeze(0).expand(noise.shape[0], *x.shape)
        xt = add_noise(scheduler, xs, noise, timesteps)
        out = functional_call(unet, (p, buffers), (xt, timesteps)).sample
        return fn(out.float(), noise, weights).mean()

    grads = vmap(grad(output), in_dims=(None, 0, 0))(params, x0, noises)
    return torch.cat([grads[name].reshape(x0.shape[0], -1) for name in params], dim=1)


def example_noises(noise_base: int, indices: np.ndarray, n_per_example: int,
                   shape: tuple[int, ...]):
    """(B, n_per_example, *shape) fixed noises; example i's j-th noise has seed base + i·n + j, so
    it does not depend on which batch or job computes it."""
    from dabench.model import example_noise

    seeds = (noise_base + np.asarray(indices)[:, None] * n_per_example
             + np.arange(n_per_example)[None]) % (2**63 - 1)
    return example_noise(seeds.ravel(), shape).reshape(len(indices), n_per_example, *shape)


def featurize(unet, scheduler, images: np.ndarray, spec: FeatureSpec, noise_seed: int,
              projection_seed: int, out_path, batch_size: int | None = None,
              progress: bool | str = False) -> dict:
    """Write φ of every image to ``out_path`` (.npy, float32, (N, k)), streaming: at most one
    batch of gradients is in memory; rows go straight into a memory-mapped file that is renamed
    into place when complete.

    ``noise_seed`` keys the fixed noises (pass a different one per split); ``projection_seed`` the
    projection (the same for every split). Returns timing and shape information.
    """
    import torch

    from dabench.io import atomic_path
    from dabench.projection import make_projector

    device = next(unet.parameters()).device
    unet.eval()
    p = param_count(unet)
    projector = make_projector(spec.projection, p, spec.k, projection_seed)
    t_grid = feature_timesteps(spec.n_timesteps, spec.schedule, scheduler.config.num_train_timesteps)
    per_example = spec.n_timesteps * spec.n_noises
    timesteps = torch.as_tensor(np.repeat(t_grid, spec.n_noises), device=device)
    # Cap the vmapped batch at ~2048 example-timesteps: memory stays flat as N grows.
    batch_size = batch_size or max(1, 2048 // per_example)
    shape = tuple(images.shape[1:])
    n = len(images)
    seconds = {"gradients": 0.0, "projection": 0.0}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=progress if isinstance(progress, str) else "features",
                   unit="ex", mininterval=2.0, leave=False)
    with atomic_path(out_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, projector.k))
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            x0 = torch.as_tensor(images[idx], device=device)
            noises = example_noises(noise_seed, idx, per_example, shape).to(device)
            tic = time.perf_counter()
            grads = per_example_gradients(unet, scheduler, x0, timesteps, noises, spec.function)
            mid = time.perf_counter()
            out[idx] = projector.project(grads).cpu().numpy()
            seconds["gradients"] += mid - tic
            seconds["projection"] += time.perf_counter() - mid
            if bar is not None:
                bar.update(len(idx))
        out.flush()
        del out
    if bar is not None:
        bar.close()
    return {"n": n, "p": p, "k": projector.k, "timesteps": t_grid.tolist(),
            "seconds": seconds, "example_timesteps_per_second":
                n * per_example / max(seconds["gradients"], 1e-9),
            **projector.describe(), "spec": asdict(spec)}


def write_features(model_path, model_cfg: dict, images_path, images_key: str, split: str,
                   feature_id: str, seed: int, out_path, run_dir=None) -> dict:
    """Workflow stage: features of one split with one feature spec, plus the JSON sidecar.

    ``run_dir`` (for the relative paths in the sidecar) defaults to the run folder that
    ``out_path`` (``<run>/features/<model>/<feature id>/<split>.npy``) lies in."""
    import os

    from dabench.io import load_npz, save_json, sha256
    from dabench.model import build_scheduler, load_model

    spec = FeatureSpec.parse(feature_id)
    unet, meta = load_model(model_path)
    scheduler = build_scheduler(model_cfg)
    images = load_npz(images_path)[images_key]
    info = featurize(unet, scheduler, images, spec,
                     noise_seed=derive_seed(seed, "feature-noise", split),
                     projection_seed=derive_seed(seed, "projection"), out_path=out_path,
                     progress=f"features {feature_id} {split}")
    run_dir = run_dir or Path(out_path).parents[3]
    save_json(Path(out_path).with_suffix(".json"), {
        **info, "feature_id": feature_id, "split": split, "output_function": spec.function,
        "n_noises": spec.n_noises, "seed": seed,
        "model": os.path.relpath(model_path, run_dir), "model_step": meta.get("step", meta.get("steps")),
        "images": os.path.relpath(images_path, run_dir), "sha256": sha256(out_path),
    })
    print(f"[dabench] features {feature_id} {split}: {info['n']} examples, "
          f"{info['example_timesteps_per_second']:.0f} example-timesteps/s, projection "
          f"{info['seconds']['projection']:.1f}s of {sum(info['seconds'].values()):.1f}s", flush=True)
    return info
