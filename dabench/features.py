"""Gradient features φ(x) = Pᵀ (1/K) Σ_k ∇_θ F(x, t_k, ε_k; θ)  (SPEC §3).

- :data:`OUTPUT_FUNCTIONS`: the output functions F of D-TRAK's ``--f`` (loss, square, mean,
  l1-norm, l2-norm, linf-norm, weighted-mse).
- :func:`feature_timesteps`: K timesteps, ``uniform`` (0, T/K, 2T/K, …) or ``cumulative``
  (0 … K-1).
- :class:`FeatureSpec`: everything that defines a feature set, and its id (a path component).
- :func:`per_example_gradients`: batched with ``torch.func`` (``functional_call`` +
  ``vmap(grad)``), never a Python loop over examples.
- :func:`replay_schedule`: for Diffusion-TracIn, the timestep and noise each training example was
  actually trained with nearest a checkpoint, read from the training log (SPEC §1, §4).
- :func:`featurize`: chunked gradients → projection → rows streamed into a memory-mapped .npy,
  with the exact (unprojected) gradient norm of every row beside it.

Three feature kinds beyond SPEC §3's: ``journey`` features (Journey-TRAK's generated queries:
the mean gradient along the sampling trajectory, id ``loss_journey_e1_sparse4096``), ``replay`` features (one gradient per training example at its
logged (t, ε), id ``loss_replay_e1_sparse4096``) and ``unit`` features, whose every per-(t, ε)
gradient is L2-normalised before averaging (Diffusion-ReTrac's test side, id suffix ``_unit``).
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


SCHEDULES = ("uniform", "cumulative", "replay", "journey")
# Schedules without K fixed timesteps: the id names the schedule instead of K<n><u|c>.
TRACED = ("replay", "journey")
_ID = re.compile(r"^(?P<function>[a-z0-9-]+)_(?:K(?P<n_timesteps>\d+)(?P<schedule>[uc])|(?P<traced>replay|journey))"
                 r"_e(?P<n_noises>\d+)_(?P<projection>none|sparse|gaussian|rademacher|fast_jl)"
                 r"(?P<k>\d*)(?P<unit>_unit)?$")


@dataclass(frozen=True)
class FeatureSpec:
    """What defines a feature set; :attr:`id` names its folder (``square_K100u_e1_sparse4096``)."""

    function: str = "loss"
    n_timesteps: int = 10
    schedule: str = "uniform"
    n_noises: int = 1
    projection: str = "sparse"
    k: int = 4096
    normalize: bool = False

    def __post_init__(self):
        if self.function not in OUTPUT_FUNCTIONS:
            raise ValueError(f"unknown output function {self.function!r} "
                             f"(known: {', '.join(OUTPUT_FUNCTIONS)})")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"timestep schedule must be one of {', '.join(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if self.schedule in TRACED:
            if (self.n_noises, self.normalize) != (1, False):
                raise ValueError(f"{self.schedule} features take one (t, ε) per training step or "
                                 "sampling step: n_noises = 1 and normalize = False")
            object.__setattr__(self, "n_timesteps", 1)

    @property
    def replay(self) -> bool:
        return self.schedule == "replay"

    @property
    def journey(self) -> bool:
        return self.schedule == "journey"

    @property
    def id(self) -> str:
        k = "" if self.projection == "none" else str(self.k)
        steps = self.schedule if self.schedule in TRACED else f"K{self.n_timesteps}{self.schedule[0]}"
        unit = "_unit" if self.normalize else ""
        return f"{self.function}_{steps}_e{self.n_noises}_{self.projection}{k}{unit}"

    @classmethod
    def parse(cls, feature_id: str) -> "FeatureSpec":
        m = _ID.match(feature_id)
        if not m:
            raise ValueError(f"not a feature id: {feature_id!r}")
        d = m.groupdict()
        schedule = d["traced"] or ("uniform" if d["schedule"] == "u" else "cumulative")
        return cls(function=d["function"], n_timesteps=int(d["n_timesteps"] or 1),
                   schedule=schedule, n_noises=int(d["n_noises"]), projection=d["projection"],
                   k=int(d["k"]) if d["k"] else 0, normalize=bool(d["unit"]))


def param_count(unet) -> int:
    return sum(p.numel() for p in unet.parameters() if p.requires_grad)


def per_example_gradients(unet, scheduler, x0, timesteps, noises, function: str,
                          normalize: bool = False):
    """∇_θ (1/(K·n)) Σ_{k,j} F(x_b, t_k, ε_{b,k,j}; θ) for each example b, flattened.

    ``x0``: (B, C, H, W); ``timesteps``: (K·n,) — the timestep of each noise, shared by the
    examples — or (B, K·n), one row per example (replayed training timesteps); ``noises``:
    (B, K·n, C, H, W). ``normalize``: divide every single-(t, ε) gradient by its L2 norm before
    averaging (Diffusion-ReTrac). Returns (B, p) float32, p = number of parameters (in
    ``named_parameters`` order).
    """
    import torch
    from torch.func import functional_call, grad, vmap

    from dabench.model import add_noise

    fn = OUTPUT_FUNCTIONS[function]
    params = {k: v.detach() for k, v in unet.named_parameters()}
    buffers = {k: v.detach() for k, v in unet.named_buffers()}
    wtab = vlb_weights(scheduler).to(x0.device) if function == "weighted-mse" else None
    shared = timesteps.ndim == 1

    def output(p, x, noise, t):
        # x: (C, H, W); noise: (J, C, H, W); t: (J,) — one example, J (t, ε) pairs.
        xs = x.unsqueeze(0).expand(noise.shape[0], *x.shape)
        xt = add_noise(scheduler, xs, noise, t)
        out = functional_call(unet, (p, buffers), (xt, t)).sample
        return fn(out.float(), noise, None if wtab is None else wtab[t]).mean()

    def flat(g, lead):
        return torch.cat([g[name].reshape(*lead, -1) for name in params], dim=-1)

    t_dim = None if shared else 0
    if not normalize:
        grads = vmap(grad(output), in_dims=(None, 0, 0, t_dim))(params, x0, noises, timesteps)
        return flat(grads, (x0.shape[0],))
    # One gradient per (example, t, ε), each L2-normalised, then averaged.
    single = vmap(grad(output), in_dims=(None, None, 0, 0))
    t_items = timesteps.unsqueeze(-1)                       # (J, 1) or (B, J, 1)
    grads = vmap(single, in_dims=(None, 0, 0, t_dim))(params, x0, noises.unsqueeze(2), t_items)
    g = flat(grads, tuple(noises.shape[:2]))                # (B, J, p)
    g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return g.mean(dim=1)


def example_noises(noise_base: int, indices: np.ndarray, n_per_example: int,
                   shape: tuple[int, ...]):
    """(B, n_per_example, *shape) fixed noises; example i's j-th noise has seed base + i·n + j, so
    it does not depend on which batch or job computes it."""
    from dabench.model import example_noise

    seeds = (noise_base + np.asarray(indices)[:, None] * n_per_example
             + np.arange(n_per_example)[None]) % (2**63 - 1)
    return example_noise(seeds.ravel(), shape).reshape(len(indices), n_per_example, *shape)


def replay_schedule(training_log: dict, checkpoint_step: int, n_train: int) -> dict:
    """The (step, t, noise seed) each training example was trained with nearest a checkpoint.

    The checkpoint saved after ``checkpoint_step`` optimizer steps stands for the training just
    before it: example i's gradient is taken at its **last** occurrence in a batch before the
    checkpoint (0-based step < ``checkpoint_step``); an example not yet seen by then takes its
    first occurrence after it. Returns arrays ``step``, ``timestep``, ``noise_seed`` (N,) and
    ``seen`` (N,) bool — False only for an example the log never trains on (its replay gradient
    is zero: it had no influence).
    """
    indices = np.asarray(training_log["indices"])
    steps, bsz = indices.shape
    flat = indices.ravel()
    positions = np.arange(flat.size)
    before = positions // bsz < checkpoint_step
    last = np.full(n_train, -1, dtype=np.int64)
    np.maximum.at(last, flat[before], positions[before])
    first = np.full(n_train, flat.size, dtype=np.int64)
    np.minimum.at(first, flat[~before], positions[~before])
    chosen = np.where(last >= 0, last, first)
    seen = chosen < flat.size
    chosen = np.where(seen, chosen, 0)
    return {"step": np.where(seen, chosen // bsz, -1),
            "timestep": np.asarray(training_log["timesteps"]).ravel()[chosen],
            "noise_seed": np.asarray(training_log["noise_seeds"]).ravel()[chosen],
            "seen": seen}


def featurize(unet, scheduler, images: np.ndarray, spec: FeatureSpec, noise_seed: int,
              projection_seed: int, out_path, batch_size: int | None = None,
              progress: bool | str = False, replay: dict | None = None,
              journey_timesteps: np.ndarray | None = None) -> dict:
    """Write φ of every image to ``out_path`` (.npy, float32, (N, k)), streaming: at most one
    batch of gradients is in memory; rows go straight into a memory-mapped file that is renamed
    into place when complete. The exact L2 norm of each row's gradient before projection goes to
    ``<out>.norms.npy`` (Diffusion-ReTrac normalises by it; the analyses plot it).

    ``noise_seed`` keys the fixed noises (pass a different one per split); ``projection_seed`` the
    projection (the same for every split). ``replay`` (for ``spec.replay``): the output of
    :func:`replay_schedule` — each example's gradient is taken at its logged timestep with its
    logged noise. ``journey_timesteps`` (for ``spec.journey``, (S,)): ``images`` is then
    (n, S, C, H, W), the clean estimates x̂₀ of each sampling step (:func:`dabench.sampling.
    journey_points`), and example i's feature is (1/S)Σ_s ∇F(x̂₀⁽ˢ⁾, t_s, ε_s) — Journey-TRAK's
    query side. Returns timing and shape information.
    """
    import torch

    from dabench.io import atomic_path, save_npy
    from dabench.model import example_noise
    from dabench.projection import make_projector

    device = next(unet.parameters()).device
    unet.eval()
    p = param_count(unet)
    projector = make_projector(spec.projection, p, spec.k, projection_seed)
    shape = tuple(images.shape[2:] if spec.journey else images.shape[1:])
    n = len(images)
    if spec.journey:
        if journey_timesteps is None or images.ndim != 5 or images.shape[1] != len(journey_timesteps):
            raise ValueError("journey features need (n, S, C, H, W) clean estimates and S timesteps")
        t_grid = np.asarray(journey_timesteps, dtype=np.int64)
        per_example = len(t_grid)
    elif spec.replay:
        if replay is None or len(replay["timestep"]) != n:
            raise ValueError("replay features need the replay schedule of every training example")
        t_grid = None
        per_example = 1
    else:
        t_grid = feature_timesteps(spec.n_timesteps, spec.schedule,
                                   scheduler.config.num_train_timesteps)
        per_example = spec.n_timesteps * spec.n_noises
        timesteps = torch.as_tensor(np.repeat(t_grid, spec.n_noises), device=device)
    # Cap the vmapped batch at ~2048 example-timesteps (512 when each one's gradient is kept
    # for normalisation): memory stays flat as N grows.
    budget = 512 if spec.normalize or spec.journey else 2048
    batch_size = batch_size or max(1, budget // per_example)
    seconds = {"gradients": 0.0, "projection": 0.0}
    norms = np.zeros(n, dtype=np.float32)
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
            if spec.journey:
                # One row per (sample, step): its own image x̂₀⁽ˢ⁾, timestep t_s and noise ε_s.
                x0 = x0.reshape(-1, *shape)
                noises = example_noises(noise_seed, idx, per_example, shape).reshape(-1, 1, *shape)
                t = torch.as_tensor(np.tile(t_grid, len(idx)), device=device)[:, None]
            elif spec.replay:
                noises = example_noise(replay["noise_seed"][idx], shape)[:, None].to(device)
                t = torch.as_tensor(replay["timestep"][idx], device=device)[:, None]
            else:
                noises = example_noises(noise_seed, idx, per_example, shape).to(device)
                t = timesteps
            tic = time.perf_counter()
            grads = per_example_gradients(unet, scheduler, x0, t, noises, spec.function,
                                          normalize=spec.normalize)
            if spec.journey:
                grads = grads.reshape(len(idx), per_example, -1).mean(dim=1)
            if spec.replay:
                grads = grads * torch.as_tensor(replay["seen"][idx], device=device)[:, None]
            norms[idx] = grads.norm(dim=1).cpu().numpy()
            mid = time.perf_counter()
            out[idx] = projector.project(grads).cpu().numpy()
            seconds["gradients"] += mid - tic
            seconds["projection"] += time.perf_counter() - mid
            if bar is not None:
                bar.update(len(idx))
        out.flush()
        del out
    save_npy(norms_path(out_path), norms)
    if bar is not None:
        bar.close()
    info = {"n": n, "p": p, "k": projector.k,
            "timesteps": "replay" if spec.replay else t_grid.tolist(),
            "seconds": seconds, "example_timesteps_per_second":
                n * per_example / max(seconds["gradients"], 1e-9),
            **projector.describe(), "spec": asdict(spec), "normalize": spec.normalize,
            "norms": Path(norms_path(out_path)).name}
    if spec.replay:
        info["replay"] = {"n_unseen": int((~replay["seen"]).sum()),
                          "timestep_mean": float(np.mean(replay["timestep"]))}
    return info


def projection_seed(seed: int) -> int:
    """The projection's seed: one per run, the same for every split, model and feature set."""
    return derive_seed(seed, "projection")


def norms_path(features_path) -> Path:
    """``<split>.norms.npy`` beside ``<split>.npy``: exact gradient norms before projection."""
    path = Path(features_path)
    return path.with_name(path.stem + ".norms.npy")


def write_features(model_path, model_cfg: dict, images_path, images_key: str, split: str,
                   feature_id: str, seed: int, out_path, run_dir=None,
                   training_log_path=None) -> dict:
    """Workflow stage: features of one split with one feature spec, plus the JSON sidecar.

    ``model_path`` is the full model or one of its checkpoints; replay features also need
    ``training_log_path``. ``run_dir`` (for the relative paths in the sidecar) defaults to the
    run folder that ``out_path`` (``<run>/features/<model>/<feature id>/<split>.npy``) lies in."""
    import os

    from dabench.io import load_npz, save_json, sha256
    from dabench.model import build_scheduler, load_model

    spec = FeatureSpec.parse(feature_id)
    unet, meta = load_model(model_path)
    scheduler = build_scheduler(model_cfg)
    images = load_npz(images_path)[images_key]
    step = meta.get("step", meta.get("steps"))
    replay, journey = None, None
    if spec.journey:
        from dabench.sampling import journey_points

        if split != "generation":
            raise ValueError(f"journey features follow sampling trajectories: the generation set "
                             f"only, not {split!r}")
        samples = load_npz(images_path)
        images, journey = journey_points(unet, scheduler.config, samples["trajectory"],
                                         samples["trajectory_timesteps"])
    if spec.replay:
        if split != "train":
            raise ValueError(f"replay features exist for the training set only, not {split!r}")
        if training_log_path is None:
            raise ValueError(f"feature {feature_id} replays the training log: pass its path")
        replay = replay_schedule(load_npz(training_log_path), int(step), len(images))
    info = featurize(unet, scheduler, images, spec,
                     noise_seed=derive_seed(seed, "feature-noise", split),
                     projection_seed=projection_seed(seed), out_path=out_path,
                     progress=f"features {feature_id} {split}", replay=replay,
                     journey_timesteps=journey)
    run_dir = run_dir or Path(out_path).parents[3]
    save_json(Path(out_path).with_suffix(".json"), {
        **info, "feature_id": feature_id, "split": split, "output_function": spec.function,
        "n_noises": spec.n_noises, "seed": seed,
        "model": os.path.relpath(model_path, run_dir), "model_step": step,
        "images": os.path.relpath(images_path, run_dir), "sha256": sha256(out_path),
        **({"training_log": os.path.relpath(training_log_path, run_dir)} if spec.replay else {}),
    })
    print(f"[dabench] features {feature_id} {split} ({Path(model_path).stem}): {info['n']} examples,"
          f" {info['example_timesteps_per_second']:.0f} example-timesteps/s, projection "
          f"{info['seconds']['projection']:.1f}s of {sum(info['seconds'].values()):.1f}s", flush=True)
    return info
