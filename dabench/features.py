"""Gradient features φ(x) = Pᵀ (1/K) Σ_k ∇_θ F(x, t_k, ε_k; θ)  (docs/computation.md §3).

- :data:`OUTPUT_FUNCTIONS`: the output functions F of D-TRAK's ``--f`` (loss, square, mean,
  l1-norm, l2-norm, linf-norm, weighted-mse).
- :func:`feature_timesteps`: K timesteps, ``uniform`` (0, T/K, 2T/K, …) or ``cumulative``
  (0 … K-1).
- :class:`FeatureSpec`: everything that defines a feature set, and its id (a path component).
- per-example gradients come from :mod:`dabench.gradients`: ``torch.func`` vmap over examples
  for small models, one example at a time with chunked backward passes for large ones, sized to
  the job's memory budget.
- :func:`replay_schedule`: for Diffusion-TracIn, the timestep and noise each training example was
  actually trained with nearest a checkpoint, read from the training log (docs/computation.md §1,
  §4).
- :func:`featurize`: gradients in batches planned for the memory budget → projection of the
  per-parameter blocks (no flat copy) → rows streamed into a memory-mapped .npy, with the exact
  (unprojected) gradient norm of every row beside it; ``rows`` computes a shard of them.

Three feature kinds beyond docs/computation.md §3's: ``journey`` features (Journey-TRAK's generated
queries:
the mean gradient along the sampling trajectory, id ``loss_journey_e1_sparse4096``), ``replay`` features (one gradient per training example at its
logged (t, ε), id ``loss_replay_e1_sparse4096``) and ``unit`` features, whose every per-(t, ε)
gradient is L2-normalised before averaging (Diffusion-ReTrac's test side, id suffix ``_unit``).

Why one module of ~420 lines: the feature-id grammar (:class:`FeatureSpec`), the noises and
timesteps a feature uses and the streaming writer are one contract — a feature file is only
reproducible if all of them agree — and the gradient maths itself lives in
:mod:`dabench.gradients`.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dabench.seeds import derive_seed


from dabench.gradients import (OUTPUT_FUNCTIONS, example_gradients,  # noqa: F401 (re-exported)
                               per_example_gradients, vlb_weights)


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
# The feature-id grammar, written once: ``<function>_<K<n><u|c> | replay | journey>_e<noises>_
# <projection><k>[_unit]``. :func:`feature_id_pattern` gives the rules' wildcard constraints.
_PROJECTIONS = "none|sparse|gaussian|rademacher|fast_jl"
_ID = re.compile(r"^(?P<function>[a-z0-9-]+)_(?:K(?P<n_timesteps>\d+)(?P<schedule>[uc])|(?P<traced>replay|journey))"
                 rf"_e(?P<n_noises>\d+)_(?P<projection>{_PROJECTIONS})"
                 r"(?P<k>\d*)(?P<unit>_unit)?$")


def feature_id_pattern(kind: str = "any") -> str:
    """A regex (for Snakemake's ``wildcard_constraints``) of the feature ids of one kind: ``grid``
    (K fixed timesteps, the kind featurize computes), ``replay``, ``journey`` or ``any``."""
    projection = rf"(?:{_PROJECTIONS})\d*"
    patterns = {
        "grid": rf"[a-z0-9-]+_K\d+[uc]_e\d+_{projection}(?:_unit)?",
        "replay": rf"[a-z0-9-]+_replay_e1_{projection}",
        "journey": rf"loss_journey_e1_{projection}",
        "any": rf"[a-z0-9-]+_(?:K\d+[uc]|replay|journey)_e\d+_{projection}(?:_unit)?",
    }
    if kind not in patterns:
        raise ValueError(f"unknown feature kind {kind!r} ({', '.join(patterns)})")
    return patterns[kind]


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
        for key in ("n_timesteps", "n_noises") + (("k",) if self.projection != "none" else ()):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.projection not in _PROJECTIONS.split("|"):
            raise ValueError(f"unknown projection {self.projection!r} "
                             f"(known: {', '.join(_PROJECTIONS.split('|'))})")
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
    flips = np.asarray(training_log["flips"]).ravel() if "flips" in training_log \
        else np.zeros(flat.size, dtype=bool)
    return {"step": np.where(seen, chosen // bsz, -1),
            "timestep": np.asarray(training_log["timesteps"]).ravel()[chosen],
            "noise_seed": np.asarray(training_log["noise_seeds"]).ravel()[chosen],
            "flip": flips[chosen] & seen,
            "seen": seen}


def trained_views(images: np.ndarray, flip: np.ndarray, flipped: np.ndarray | None = None):
    """Each example as it was trained: mirrored where the replay schedule's ``flip`` is set
    (``flipped``: a latent model's latents of the mirrored images, rows matching ``images``; a
    pixel model's are mirrored here)."""
    if not np.any(flip):
        return images
    from dabench.training import flipped_inputs

    mirror = np.asarray(flip).reshape(-1, *[1] * (np.ndim(images) - 1))
    return np.where(mirror, flipped_inputs(images, flipped), images)


def featurize(unet, scheduler, images: np.ndarray, spec: FeatureSpec, noise_seed: int,
              projection_seed: int, out_path, batch_size: int | None = None,
              progress: bool | str = False, replay: dict | None = None,
              journey_timesteps: np.ndarray | None = None, budget_bytes: int | None = None,
              rows: tuple[int, int] | None = None, cond=None,
              flipped: np.ndarray | None = None) -> dict:
    """Write φ of every image to ``out_path`` (.npy, float32, (N, k)), streaming: one batch of
    gradients is in memory at a time (planned by :func:`dabench.gradients.plan_gradients` for
    ``budget_bytes``, default the job's :func:`dabench.device.memory_budget`); rows go straight
    into a memory-mapped file that is renamed into place when complete. The exact L2 norm of
    each row's gradient before projection goes to ``<out>.norms.npy`` (Diffusion-ReTrac
    normalises by it; the analyses plot it).

    ``noise_seed`` keys the fixed noises (pass a different one per split); ``projection_seed`` the
    projection (the same for every split). ``replay`` (for ``spec.replay``): the output of
    :func:`replay_schedule` — each example's gradient is taken at its logged timestep with its
    logged noise. ``journey_timesteps`` (for ``spec.journey``, (S,)): ``images`` is then
    (n, S, C, H, W), the clean estimates x̂₀ of each sampling step (:func:`dabench.sampling.
    journey_points`), and example i's feature is (1/S)Σ_s ∇F(x̂₀⁽ˢ⁾, t_s, ε_s) — Journey-TRAK's
    query side. ``rows = (a, b)`` computes examples a … b-1 only (a shard; the file then has
    b - a rows, each the same as in a whole pass up to float rounding: a batched kernel's
    summation order depends on the batch). ``batch_size`` forces vmap batches of that
    many examples (tests). ``cond`` (a latent model's :class:`dabench.data.Conditioning`):
    each example's prompt. ``flipped`` (replay of a latent model trained with flips): the
    latents of the mirrored images; a pixel model's are mirrored here. Returns timing, shape and
    plan information.
    """
    import torch

    from dabench import device as D
    from dabench.gradients import block_norms
    from dabench.io import RowWriter, save_npy
    from dabench.model import example_noise

    device = next(unet.parameters()).device
    unet.eval()
    p = param_count(unet)
    projector = shared_projector(spec.projection, p, spec.k, projection_seed)
    shape = tuple(images.shape[2:] if spec.journey else images.shape[1:])
    n_all = len(images)
    first, last = rows if rows is not None else (0, n_all)
    if not 0 <= first <= last <= n_all:
        raise ValueError(f"rows {rows} outside the {n_all} examples")
    t_grid, per_example = _items(spec, scheduler, images, replay, journey_timesteps)
    n = last - first
    plan = _gradient_plan(unet, spec, p, per_example, n, batch_size, budget_bytes, device)
    if t_grid is not None:
        timesteps = torch.as_tensor(t_grid if spec.journey else np.repeat(t_grid, spec.n_noises),
                                    device=device)
    seconds = {"gradients": 0.0, "projection": 0.0}
    norms = np.zeros(n, dtype=np.float32)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=progress if isinstance(progress, str) else "features",
                   unit="ex", mininterval=2.0, leave=False)
    with RowWriter(out_path, (n, projector.k)) as out:
        for start in range(first, last, plan.batch):
            idx = np.arange(start, min(last, start + plan.batch))
            rel = idx - first
            x0 = images[idx]
            if spec.replay:
                x0 = trained_views(x0, replay["flip"][idx],
                                   None if flipped is None else flipped[idx])
            x0 = torch.as_tensor(x0, device=device)
            if spec.replay:
                noises = example_noise(replay["noise_seed"][idx], shape)[:, None].to(device)
                t = torch.as_tensor(replay["timestep"][idx], device=device)[:, None]
            else:
                # Journey: one item per sampling step, its own image x̂₀⁽ˢ⁾, timestep and noise.
                noises = example_noises(noise_seed, idx, per_example, shape).to(device)
                t = timesteps
            tic = time.perf_counter()
            c = None if cond is None else cond[idx].to(device)
            blocks = example_gradients(unet, scheduler, x0, t, noises, spec.function,
                                       normalize=spec.normalize, plan=plan, cond=c)
            norms[rel] = block_norms(blocks).float().cpu().numpy()
            mid = time.perf_counter()
            rows_out = projector.project(blocks).cpu().numpy()
            del blocks
            if spec.replay:
                # An example the log never trains on had no influence: a zero gradient.
                unseen = ~replay["seen"][idx]
                rows_out[unseen] = 0.0
                norms[rel[unseen]] = 0.0
            out.write(int(rel[0]), rows_out)
            seconds["gradients"] += mid - tic
            seconds["projection"] += time.perf_counter() - mid
            if bar is not None:
                bar.update(len(idx))
    save_npy(norms_path(out_path), norms)
    if bar is not None:
        bar.close()
    info = {"n": n, "p": p, "k": projector.k,
            "timesteps": "replay" if spec.replay else t_grid.tolist(),
            "seconds": seconds, "example_timesteps_per_second":
                n * per_example / max(seconds["gradients"], 1e-9),
            **projector.describe(), "spec": asdict(spec), "normalize": spec.normalize,
            "norms": Path(norms_path(out_path)).name,
            "gradient_plan": {"mode": plan.mode, "batch": plan.batch,
                              "item_chunk": plan.item_chunk, "peak_bytes": plan.peak_bytes},
            "rows": [first, last], **D.describe(device)}
    if spec.replay:
        info["replay"] = {"n_unseen": int((~replay["seen"][first:last]).sum()),
                          "timestep_mean": float(np.mean(replay["timestep"][first:last]))}
    return info


def _items(spec: FeatureSpec, scheduler, images: np.ndarray, replay: dict | None,
           journey_timesteps) -> tuple[np.ndarray | None, int]:
    """(timestep grid or None for replay, gradient items per example) of a feature kind, with
    its inputs checked."""
    if spec.journey:
        if journey_timesteps is None or images.ndim != 5 or images.shape[1] != len(journey_timesteps):
            raise ValueError("journey features need (n, S, C, H, W) clean estimates and S timesteps")
        t_grid = np.asarray(journey_timesteps, dtype=np.int64)
        return t_grid, len(t_grid)
    if spec.replay:
        if replay is None or len(replay["timestep"]) != len(images):
            raise ValueError("replay features need the replay schedule of every training example")
        return None, 1
    t_grid = feature_timesteps(spec.n_timesteps, spec.schedule, scheduler.config.num_train_timesteps)
    return t_grid, spec.n_timesteps * spec.n_noises


def _gradient_plan(unet, spec: FeatureSpec, p: int, per_example: int, n: int,
                   batch_size: int | None, budget_bytes: int | None, device):
    """The batching of the per-example gradients: forced ``batch_size`` vmap batches (tests), or
    :func:`dabench.gradients.plan_gradients` for the memory budget."""
    from dabench import device as D
    from dabench.gradients import GradientPlan, plan_gradients
    from dabench.profile import module_profile

    if batch_size:
        return GradientPlan("vmap", batch_size, per_example, 0)
    return plan_gradients(p, module_profile(unet)["activation_bytes"], per_example,
                          spec.normalize, budget_bytes or D.memory_budget(device),
                          n_examples=max(n, 1),
                          max_items=512 if spec.normalize or spec.journey else 2048,
                          device=device.type)


@functools.lru_cache(maxsize=1)
def shared_model(path: str, mtime: int):
    """``load_model(path)``, once per process (and version of the file): a job featurizes
    several splits with one model."""
    from dabench.model import load_model

    return load_model(path)


@functools.lru_cache(maxsize=1)
def shared_projector(name: str, p: int, k: int, seed: int):
    """The projector of (name, p, k, seed), built once per process: a job featurizes several
    splits with the same one (the count-sketch of the 35.7M UNet takes ~1 s to draw)."""
    from dabench.projection import make_projector

    return make_projector(name, p, k, seed)


def projection_seed(seed: int) -> int:
    """The projection's seed: one per run, the same for every split, model and feature set."""
    return derive_seed(seed, "projection")


def norms_path(features_path) -> Path:
    """``<split>.norms.npy`` beside ``<split>.npy``: exact gradient norms before projection."""
    path = Path(features_path)
    return path.with_name(path.stem + ".norms.npy")


def shard_rows(n: int, n_shards: int, shard: int) -> tuple[int, int]:
    """Rows (a, b) of shard ``shard`` of ``n_shards`` near-equal shards of n examples."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} does not exist ({n_shards} shards)")
    return shard * n // n_shards, (shard + 1) * n // n_shards


def write_features(model_path, model_cfg: dict, images_path, images_key: str, split: str,
                   feature_id: str, seed: int, out_path, run_dir=None,
                   training_log_path=None, trajectory_path=None,
                   shard: tuple[int, int] | None = None) -> dict:
    """Workflow stage: features of one split with one feature spec, plus the JSON sidecar.

    ``model_path`` is the full model or one of its checkpoints; replay features also need
    ``training_log_path``, journey features the generation set's ``trajectory_path``.
    ``shard = (i, n)``: only shard i of n of the split's rows (:func:`shard_rows`), merged later
    by :func:`merge_shards`. ``run_dir`` (for the relative paths in the sidecar) defaults to the
    run folder that ``out_path`` (``<run>/features/<model>/<feature id>/<split>.npy``) lies in."""
    import os

    from dabench.data import FLIPPED, conditioning
    from dabench.io import load_npy, load_npz, save_json, sha256
    from dabench.model import build_scheduler

    spec = FeatureSpec.parse(feature_id)
    unet, meta = shared_model(str(model_path), os.stat(model_path).st_mtime_ns)
    scheduler = build_scheduler(model_cfg)
    samples = load_npz(images_path)
    images = samples[images_key]
    cond = conditioning(samples)          # a latent model's prompts (None: unconditional)
    step = meta.get("step", meta.get("steps"))
    rows = None if shard is None else shard_rows(len(images), shard[1], shard[0])
    replay, journey, scratch = None, None, None
    if spec.journey:
        from dabench.sampling import journey_points

        if split != "generation":
            raise ValueError(f"journey features follow sampling trajectories: the generation set "
                             f"only, not {split!r}")
        if trajectory_path is None:
            raise ValueError(f"feature {feature_id} follows the sampling trajectories: pass the "
                             f"generation set's trajectory file")
        scratch = Path(out_path).with_name(f".{Path(out_path).stem}.journey-points.npy")
        images, journey = journey_points(unet, scheduler.config, load_npy(trajectory_path, mmap=True),
                                         samples["trajectory_timesteps"], out_path=scratch,
                                         cond=cond, uncond=None if cond is None else cond.uncond,
                                         guidance=model_cfg.get("guidance", 1.0))
    if spec.replay:
        if split != "train":
            raise ValueError(f"replay features exist for the training set only, not {split!r}")
        if training_log_path is None:
            raise ValueError(f"feature {feature_id} replays the training log: pass its path")
        replay = replay_schedule(load_npz(training_log_path), int(step), len(images))
        if replay["flip"].any() and "pixels" in samples and FLIPPED not in samples:
            raise ValueError(f"{training_log_path} trains flipped examples but {images_path} has "
                             f"no {FLIPPED} latents to replay them with")
    try:
        info = featurize(unet, scheduler, images, spec,
                         noise_seed=derive_seed(seed, "feature-noise", split),
                         projection_seed=projection_seed(seed), out_path=out_path,
                         progress=f"features {feature_id} {split}", replay=replay,
                         journey_timesteps=journey, rows=rows, cond=cond,
                         flipped=samples.get(FLIPPED) if spec.replay else None)
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
    run_dir = run_dir or Path(out_path).parents[3]
    save_json(Path(out_path).with_suffix(".json"), {
        **info, "feature_id": feature_id, "split": split, "output_function": spec.function,
        "n_noises": spec.n_noises, "seed": seed,
        "model": os.path.relpath(model_path, run_dir), "model_step": step,
        "images": os.path.relpath(images_path, run_dir), "sha256": sha256(out_path),
        **({"training_log": os.path.relpath(training_log_path, run_dir)} if spec.replay else {}),
        **({"shard": list(shard)} if shard is not None else {}),
    })
    print(f"[dabench] features {feature_id} {split} ({Path(model_path).stem}): {info['n']} examples,"
          f" {info['example_timesteps_per_second']:.1f} example-timesteps/s "
          f"({info['gradient_plan']['mode']}, batch {info['gradient_plan']['batch']}, "
          f"{info['device']}), projection "
          f"{info['seconds']['projection']:.1f}s of {sum(info['seconds'].values()):.1f}s", flush=True)
    return info


def merge_shards(shard_paths: list, out_path) -> dict:
    """Workflow stage: join the shards of a split (:func:`write_features` with ``shard``) into
    ``out_path`` with its norms and sidecar — the same rows as one unsharded job. Streams: one
    shard in memory at a time."""
    from dabench.io import RowWriter, load_json, load_npy, read_rows, save_json, save_npy, sha256
    from dabench.io import checked_path

    metas = [load_json(Path(p).with_suffix(".json")) for p in shard_paths]
    order = np.argsort([m["rows"][0] for m in metas])
    shard_paths, metas = [shard_paths[i] for i in order], [metas[i] for i in order]
    for a, b in zip(metas, metas[1:]):
        if a["rows"][1] != b["rows"][0]:
            raise ValueError(f"feature shards do not tile the rows: {a['rows']} then {b['rows']}")
    n, k = metas[-1]["rows"][1] - metas[0]["rows"][0], metas[0]["k"]
    norms = np.concatenate([load_npy(norms_path(p)) for p in shard_paths])
    with RowWriter(out_path, (n, k)) as out:
        for path, meta in zip(shard_paths, metas):
            a, b = meta["rows"]
            checked_path(path)
            for start in range(a, b, 1024):
                out.write(start, read_rows(path, start - a, min(b, start + 1024) - a))
    save_npy(norms_path(out_path), norms)
    seconds = {key: sum(m["seconds"][key] for m in metas) for key in metas[0]["seconds"]}
    info = {**{k: v for k, v in metas[0].items() if k not in ("shard", "rows", "sha256")},
            "n": int(n), "rows": [0, int(n)], "seconds": seconds, "n_shards": len(metas),
            "example_timesteps_per_second": float(
                sum(m["example_timesteps_per_second"] * m["seconds"]["gradients"] for m in metas)
                / max(seconds["gradients"], 1e-9)),
            "sha256": sha256(out_path)}
    save_json(Path(out_path).with_suffix(".json"), info)
    return info
