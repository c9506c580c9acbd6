"""Training the diffusion model: the training plan (the training log of docs/computation.md §1,
computed before training from the seed — per optimizer step the example indices, their
timesteps, the seeds of their noises and the learning rate; training consumes exactly this plan,
so any (example, step) can be replayed), the training loop (AdamW with warm-up and cosine decay
through accelerate: CPU here; GPU, multi-GPU and mixed precision on a cluster without code
change; checkpoints at configured steps; periodic resume states, resuming gives bit-identical
final weights) and the full model's workflow stage."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dabench.architecture import unet_config
from dabench.io import (CorruptFileError, load_tensors, remove_leftovers, resume_pattern, save_npz,
                        save_tensors)
from dabench.model import (build_scheduler, build_unet, example_noise, load_model_tensors, model_metadata,
                           model_tensors, per_example_loss, save_model)
from dabench.seeds import derive_seed, fingerprint


def lr_at(step: np.ndarray, recipe: dict) -> np.ndarray:
    """Learning rate used at optimizer step ``step`` (0-based): linear warm-up, cosine decay to 0."""
    step = np.asarray(step, dtype=np.float64)
    warm, total = recipe["warmup_steps"], recipe["steps"]
    warmup = (step + 1) / max(warm, 1)
    progress = (step - warm) / max(total - warm, 1)
    cosine = 0.5 * (1 + np.cos(np.pi * np.clip(progress, 0, 1)))
    return recipe["lr"] * np.where(step < warm, warmup, cosine)


def training_plan(members: np.ndarray, recipe: dict, seed: int, num_train_timesteps: int) -> dict:
    """The training log, computed up front.

    ``members``: indices (into the training set D) this model is trained on. Returns arrays
    ``indices`` (steps, B) int64 — examples of each batch, epoch-wise shuffles of ``members``;
    ``timesteps`` (steps, B) int64 uniform in [0, T); ``noise_seeds`` (steps, B) int64;
    ``lr`` (steps,) float64; ``flips`` (steps, B) bool — whether the example is trained
    horizontally flipped (``recipe['augment']['hflip']``: a fair coin per (step, position); all
    False without it). Timesteps, noise seeds and flips depend only on (seed, step, position),
    not on ``members``: models of one seed on different subsets share them
    (docs/computation.md §2).
    """
    members = np.asarray(members, dtype=np.int64)
    steps, bsz = recipe["steps"], recipe["batch_size"]
    n = len(members)
    positions = np.arange(steps * bsz)
    epochs = positions // n
    order = np.empty(steps * bsz, dtype=np.int64)
    for e in range(int(epochs[-1]) + 1):
        perm = np.random.default_rng(derive_seed(seed, "epoch", e)).permutation(n)
        sel = epochs == e
        order[sel] = perm[positions[sel] % n]
    t_rng = np.random.default_rng(derive_seed(seed, "timesteps"))
    timesteps = t_rng.integers(0, num_train_timesteps, size=(steps, bsz))
    base = derive_seed(seed, "noise")
    noise_seeds = (base + positions.reshape(steps, bsz)) % (2**63 - 1)
    if hflip(recipe):
        flips = np.random.default_rng(derive_seed(seed, "hflip")).random((steps, bsz)) < 0.5
    else:
        flips = np.zeros((steps, bsz), dtype=bool)
    return {
        "indices": members[order].reshape(steps, bsz),
        "timesteps": timesteps.astype(np.int64),
        "noise_seeds": noise_seeds.astype(np.int64),
        "lr": lr_at(np.arange(steps), recipe),
        "flips": flips,
    }


def hflip(recipe: dict) -> bool:
    """Whether a recipe trains with random horizontal flips (``augment: {hflip: true}``)."""
    return bool((recipe.get("augment") or {}).get("hflip", False))


def flipped_inputs(images, flipped=None):
    """The horizontally flipped training inputs: ``flipped`` when given (a latent model's: the
    latents of the flipped images, :data:`dabench.data.FLIPPED`), else ``images`` mirrored along
    their width (a pixel model's). Works on numpy arrays and torch tensors alike."""
    if flipped is not None:
        return flipped
    if isinstance(images, np.ndarray):
        return np.ascontiguousarray(images[..., ::-1])
    return images.flip(-1)


@dataclass
class TrainResult:
    unet: torch.nn.Module
    plan: dict
    losses: np.ndarray
    seconds: float
    resumed_from: int = 0
    checkpoints: list = field(default_factory=list)


def fused_adamw(params, device) -> bool:
    """AdamW's fused kernel (one pass over each parameter instead of ~10 elementwise ops):
    float32 parameters on a CPU or a CUDA GPU. Measured on the default model, one CPU thread:
    the optimizer step 6.5 -> 1.5 ms of a 48 ms training step. Not bit-identical to the
    per-tensor implementation (float rounding)."""
    import torch

    return (torch.device(device).type in ("cpu", "cuda")
            and all(p.dtype == torch.float32 for p in params))


def _optimizer_tensors(optimizer, params) -> dict:
    """AdamW state as flat named tensors (safetensors holds no nested dicts)."""
    out = {}
    index = {id(p): i for i, p in enumerate(params)}
    for p, state in optimizer.state.items():
        for key, value in state.items():
            out[f"optim.{index[id(p)]}.{key}"] = torch.as_tensor(value).clone()
    return out


def _load_optimizer_tensors(optimizer, params, tensors: dict) -> None:
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, i, key = name.split(".", 2)
        # The fused kernel keeps its step count on the parameter's device, the others on the CPU.
        fused = optimizer.defaults.get("fused")
        device = params[int(i)].device if key != "step" or fused else value.device
        optimizer.state[params[int(i)]][key] = value.to(device)


def train(
    images: np.ndarray,
    members: np.ndarray,
    model_cfg: dict,
    recipe: dict,
    seed: int,
    init_seed: int,
    checkpoint_dir: str | Path | None = None,
    resume_path: str | Path | None = None,
    meta: dict | None = None,
    progress: bool | str = False,
    stop_after: int | None = None,
    accelerator=None,
    on_step: Callable[[int, float], None] | None = None,
    init_state: tuple[str, dict] | None = None,
    masks: dict | None = None,
    build: Callable[[int], torch.nn.Module] | None = None,
    cond: torch.Tensor | None = None,
    flipped: np.ndarray | None = None,
) -> TrainResult:
    """Train a UNet from scratch on ``images[members]`` following :func:`training_plan`.

    Other model families: ``build(init_seed)`` returns the model to train instead of the
    config's ``UNet2DModel`` (its frozen parameters stay fixed: a LoRA adapter on a base), and
    ``cond`` (N, L, D) holds each training example's conditioning (:func:`dabench.model.denoise`).

    Flip augmentation (``recipe['augment']['hflip']``): the plan's ``flips`` say which examples of
    a batch are trained mirrored; a pixel model mirrors ``images``, a latent model needs
    ``flipped`` — the latents of the mirrored images (a latent is not the mirror of the latent).

    Fine-tuning: ``init_state = (identity, state_dict)`` starts from those weights instead of a
    fresh initialisation (``identity``, e.g. the file's checksum, enters the resume fingerprint);
    ``masks`` (parameter name -> 0/1 tensor, a pruned model's) are re-applied after every optimizer
    step so that pruned weights stay zero.

    ``images``: (N, C, H, W) float32 in [-1, 1], the whole training set D. Checkpoints at
    ``recipe['checkpoint_steps']`` go to ``checkpoint_dir/step_{s:06d}.safetensors`` (model
    weights + sidecar). Every ``recipe['resume_every']`` steps the model and optimizer state go to
    ``resume_path``; if that file exists and belongs to the same run, training continues from it.
    ``stop_after`` stops early (tests use it to simulate an interruption).
    """
    from accelerate import Accelerator

    from dabench import device as D

    # The job's device (dabench.device.select): never a silent fall-back to the CPU.
    accelerator = accelerator or Accelerator(mixed_precision=recipe["mixed_precision"],
                                             cpu=D.current().type == "cpu")
    channels, resolution = images.shape[1], images.shape[-1]
    plan = training_plan(members, recipe, seed, model_cfg["num_train_timesteps"])
    family_meta = {}
    if build is None and model_cfg.get("family") == "latent":
        build, family_meta = latent_builder(model_cfg)
        if cond is None:
            raise ValueError("a latent model trains on conditioned examples: pass cond")
    if hflip(recipe) and flipped is None and (build is not None or model_cfg.get("base")):
        raise ValueError("train.augment.hflip on a latent model needs the latents of the flipped "
                         "training images (the data file's train_images_hflip): re-run "
                         "prepare_dataset with the augmentation on")
    if flipped is not None and np.shape(flipped) != np.shape(images):
        raise ValueError(f"flipped inputs {np.shape(flipped)} do not match the images "
                         f"{np.shape(images)}")
    unet = build_unet(model_cfg, channels, resolution, init_seed) if build is None else build(init_seed)
    if init_state is not None:         # a whole model's state, or an adapter's trainable part
        load_model_tensors(unet, {f"model.{k}": v for k, v in init_state[1].items()})
    named = dict(unet.named_parameters())
    mask_pairs = [(named[k], m.to(named[k].dtype)) for k, m in (masks or {}).items()]
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                                  fused=fused_adamw(params, accelerator.device))
    run_id = fingerprint({"members": members.tolist(), "recipe": recipe, "seed": seed,
                          "init_seed": init_seed, "model": model_cfg, "shape": images.shape,
                          **({"base": family_meta["base_identity"]} if family_meta else {}),
                          **({"init": init_state[0]} if init_state is not None else {}),
                          **({"masks": sorted(masks)} if masks else {}),
                          **({"cond": _cond_fingerprint(cond)} if cond is not None else {})})
    meta = {**({"unet_config": unet_config(model_cfg, channels, resolution)} if build is None
               else {}), **{k: v for k, v in family_meta.items() if k != "base_identity"},
            **(meta or {}), "seed": seed, "init_seed": init_seed, "recipe": recipe,
            "model_config": model_cfg, "run_id": run_id, "n_members": len(members)}
    start = _resume(resume_path, run_id, unet, optimizer, params)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    x_flip = (torch.as_tensor(flipped_inputs(images, flipped)) if plan["flips"].any() else None)
    loop = _Loop(accelerator, unet, optimizer, build_scheduler(model_cfg), plan, recipe,
                 torch.as_tensor(images), mask_pairs, cond, x_flip)
    end = recipe["steps"] if stop_after is None else min(recipe["steps"], stop_after)
    bar = _progress_bar(progress, accelerator, recipe["steps"], start)
    checkpoints = []
    tic = time.perf_counter()
    unet.train()
    for step in range(start, end):
        loop.step(step)
        done = step + 1
        if bar is not None:
            bar.update(1)
            if done % 50 == 0:
                bar.set_postfix(loss=f"{np.nanmean(loop.losses[max(0, step - 49):done]):.4f}")
        if on_step is not None:
            on_step(done, loop.losses[step])
        if accelerator.is_main_process:
            checkpoints += loop.save(done, checkpoint_dir, resume_path, meta, run_id, params)
    if bar is not None:
        bar.close()
    accelerator.wait_for_everyone()
    unet = accelerator.unwrap_model(unet).eval()
    return TrainResult(unet, plan, loop.losses, time.perf_counter() - tic, start, checkpoints)


_BASES: dict = {}


def latent_builder(model_cfg: dict):
    """``(build, meta)`` of a latent model section (:func:`dabench.config.model_section`):
    ``build(init_seed)`` = the base's frozen UNet with a fresh LoRA adapter, the base loaded once
    per process; ``meta``: what the checkpoints' sidecars record to load again, and the base's
    identity (its weights' sizes and times: a rebuilt base is another run)."""
    from dabench.latent import adapter_builder, adapter_metadata, base_identity, load_unet

    folder, lora = str(model_cfg["base"]), model_cfg["lora"]
    identity = base_identity(folder)
    if _BASES.get(folder, (None,))[0] != identity:
        _BASES[folder] = (identity, load_unet(folder))
    build = adapter_builder(_BASES[folder][1], lora["rank"], lora["alpha"], lora.get("b_std", 0.0))
    return build, {**adapter_metadata(folder, lora["rank"], lora["alpha"]),
                   "base_identity": identity}


def _cond_fingerprint(cond) -> str:
    if hasattr(cond, "fingerprint"):          # a dabench.data.Conditioning
        return cond.fingerprint()
    return hashlib.sha256(torch.as_tensor(cond).detach().cpu().contiguous().numpy()
                          .tobytes()).hexdigest()


def _resume(resume_path, run_id: str, unet, optimizer, params) -> int:
    """The step to start from: that of ``resume_path`` when it holds this run's state (loaded
    into ``unet`` and ``optimizer``), else 0 (no file, another run's, or a torn one)."""
    if resume_path is None or not Path(resume_path).exists():
        return 0
    try:
        tensors, rmeta = load_tensors(resume_path)
    except CorruptFileError:
        return 0
    if rmeta.get("run_id") != run_id:
        return 0
    load_model_tensors(unet, tensors)
    _load_optimizer_tensors(optimizer, params, tensors)
    return int(rmeta["step"])


def _progress_bar(progress: bool | str, accelerator, total: int, start: int):
    if not progress or not accelerator.is_main_process:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=progress if isinstance(progress, str)
                else "train", unit="step", mininterval=2.0, leave=False)


class _Loop:
    """One optimizer step of :func:`train` at a time, and what it saves after a step."""

    def __init__(self, accelerator, unet, optimizer, scheduler, plan: dict, recipe: dict,
                 x_all: torch.Tensor, mask_pairs: list, cond: torch.Tensor | None = None,
                 x_flip: torch.Tensor | None = None):
        self.accelerator, self.unet, self.optimizer = accelerator, unet, optimizer
        self.scheduler, self.plan, self.recipe = scheduler, plan, recipe
        self.x_all, self.mask_pairs, self.cond, self.x_flip = x_all, mask_pairs, cond, x_flip
        self.shape = tuple(x_all.shape[1:])
        self.losses = np.full(recipe["steps"], np.nan, dtype=np.float32)

    def step(self, step: int) -> None:
        acc, plan = self.accelerator, self.plan
        # Each process takes its share of the logged global batch; DDP averages the gradients.
        world, rank, device = acc.num_processes, acc.process_index, acc.device
        idx = plan["indices"][step][rank::world]
        x0 = self.x_all[idx]
        flips = plan["flips"][step][rank::world]
        if flips.any():
            x0 = torch.where(torch.as_tensor(flips).reshape(-1, *[1] * (x0.dim() - 1)),
                             self.x_flip[idx], x0)
        x0 = x0.to(device)
        t = torch.as_tensor(plan["timesteps"][step][rank::world], device=device)
        noise = example_noise(plan["noise_seeds"][step][rank::world], self.shape).to(device)
        for group in self.optimizer.param_groups:
            group["lr"] = float(plan["lr"][step])
        self.optimizer.zero_grad(set_to_none=True)
        # Micro-batches (recipe micro_batch_size): their gradients accumulate to the batch mean's.
        micro = self.recipe.get("micro_batch_size") or len(idx)
        losses = []
        for a in range(0, len(idx), micro):
            sl = slice(a, a + micro)
            with acc.autocast():
                c = None if self.cond is None else self.cond[idx[sl]].to(device)
                part = per_example_loss(self.unet, self.scheduler, x0[sl], t[sl], noise[sl], c)
                loss = part.mean() if micro >= len(idx) else part.sum() / len(idx)
            acc.backward(loss)
            losses.append(loss.detach())
        loss = torch.stack(losses).sum()
        if self.recipe["grad_clip"] > 0:
            acc.clip_grad_norm_([p for p in self.unet.parameters() if p.requires_grad],
                                self.recipe["grad_clip"])
        self.optimizer.step()
        if self.mask_pairs:
            with torch.no_grad():
                for p, m in self.mask_pairs:
                    p.mul_(m.to(p.device))
        self.losses[step] = loss.item()

    def save(self, done: int, checkpoint_dir, resume_path, meta: dict, run_id: str,
             params: list) -> list[str]:
        """After step ``done``: the checkpoint it is due (its path returned) and the resume
        state every ``resume_every`` steps."""
        saved = []
        due = checkpoint_dir is not None and done in self.recipe["checkpoint_steps"]
        resume = (resume_path is not None and done % self.recipe["resume_every"] == 0
                  and done < self.recipe["steps"])
        if not (due or resume):
            return saved
        model = self.accelerator.unwrap_model(self.unet)
        if due:
            path = Path(checkpoint_dir) / f"step_{done:06d}.safetensors"
            save_tensors(path, model_tensors(model),
                         {**meta, "step": done, "lr": float(self.plan["lr"][done - 1])})
            saved.append(str(path))
        if resume:
            optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
            save_tensors(resume_path, {**model_tensors(model),
                                       **_optimizer_tensors(optimizer, params)},
                         {"run_id": run_id, "step": done})
        return saved


def save_training_log(path, plan: dict, losses: np.ndarray, members: np.ndarray) -> None:
    """The training log of docs/computation.md §1 as an .npz of plain arrays (see
    :func:`training_plan`)."""
    save_npz(path, indices=plan["indices"], timesteps=plan["timesteps"],
             noise_seeds=plan["noise_seeds"], lr=plan["lr"], flips=plan["flips"], loss=losses,
             members=members)


def train_full_model(train_path, model_cfg: dict, recipe: dict, seed: int, model_path, log_path,
                     checkpoint_dir, resume_path) -> TrainResult:
    """Workflow stage: train θ_D on the whole training set; write the final model, the checkpoints
    of ``recipe['checkpoint_steps']`` and the training log."""
    from dabench.io import load_npz

    from dabench.data import FLIPPED, conditioning

    data = load_npz(train_path)
    images = data["train_images"]
    members = np.arange(len(images))
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    result = train(images, members, model_cfg, recipe, seed=derive_seed(seed, "full-train"),
                   init_seed=derive_seed(seed, "full-init"), checkpoint_dir=checkpoint_dir,
                   resume_path=resume_path, meta={"role": "full", "members": "all"},
                   cond=conditioning(data), flipped=data.get(FLIPPED),
                   progress="full model")
    save_training_log(log_path, result.plan, result.losses, members)
    save_model(model_path, result.unet,
               {"role": "full", "steps": recipe["steps"], "seed": seed,
                **model_metadata(model_cfg, recipe, images.shape), "train_seconds": result.seconds,
                "final_loss": float(np.nanmean(result.losses[-50:]))})
    remove_leftovers(*resume_pattern(resume_path))
    print(f"[dabench] full model: {recipe['steps']} steps in {result.seconds:.1f}s, "
          f"final loss {np.nanmean(result.losses[-50:]):.4f}", flush=True)
    return result


def write_latent_base(folder, latent_cfg: dict, data_cfg: dict, model_cfg: dict, recipe: dict,
                      seed: int) -> Path:
    """Workflow stage (embedded scale): build the tiny base of ``latent_cfg['pretrain']`` —
    pre-trained on its own dataset, its tokenizer's vocabulary written from the pre-training
    prompts and the fine-tuning set's (``latent.prompt`` over ``data``'s classes) — into
    ``folder``, atomically (a half-built base is never left under the final name)."""
    import shutil

    from dabench import data as D

    pre = latent_cfg["pretrain"]
    source, _ = D.load_source({"label": "fine", **data_cfg, "dataset": pre["dataset"],
                               "path": pre.get("path")})
    target, _ = D.load_source(data_cfg)
    if len(source.labels) < pre["n"]:
        raise D.DataError(f"latent.pretrain.n = {pre['n']} but {pre['dataset']} has "
                          f"{len(source.labels)} images")
    rng = np.random.default_rng(derive_seed(seed, "base-data"))
    idx = np.sort(rng.permutation(len(source.labels))[:pre["n"]])
    images = D.to_model_input(source.images[idx], data_cfg["resolution"],
                              channels=target.images.shape[1])
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if model_cfg.get("family") == "latent-ddpm":
        # A latent DDPM's base is its autoencoder (LDM's pre-trained VQ-VAE, in miniature).
        build_autoencoder_base(tmp, images, pre["autoencoder"], seed, progress=True)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        print(f"[dabench] latent DDPM base: a {pre['autoencoder']['kind']} autoencoder trained on "
              f"{pre['n']} {pre['dataset']} images -> {folder}", flush=True)
        return folder
    names = D.class_names({**data_cfg, "dataset": pre["dataset"], "path": pre.get("path")})
    prompts = D.example_prompts(source.labels[idx], pre["prompt"], names,
                                "latent.pretrain.dataset")
    wanted = data_cfg.get("classes") or sorted(set(target.labels.tolist()))
    tuning = D.example_prompts(np.asarray(wanted), latent_cfg["prompt"],
                               D.class_names(data_cfg, latent_cfg.get("label_names")),
                               "latent.label_names")
    cfg = {"text_encoder": pre["text_encoder"], "autoencoder": pre["autoencoder"],
           "unet": pre["unet"], "unet_train": {**recipe, "drop_prompt": pre["drop_prompt"]},
           "model": model_cfg}
    build_latent_base(tmp, images, prompts, cfg, seed, progress=True, extra_prompts=tuning)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    print(f"[dabench] latent base: {pre['n']} {pre['dataset']} images, "
          f"{len(set(prompts))} pre-training prompts + {len(tuning)} fine-tuning prompts -> "
          f"{folder}", flush=True)
    return folder


def build_autoencoder_base(folder, images: np.ndarray, cfg: dict, seed: int,
                           progress: bool = False) -> Path:
    """Build and save a latent DDPM's base (embedded scale): the autoencoder of ``cfg``
    (``latent.pretrain.autoencoder``) trained on ``images`` (N, C, H, W) in [-1, 1], seeded from
    ``seed`` as :func:`build_latent_base` trains its own."""
    from dabench.latent import build_autoencoder, save_base, train_autoencoder

    vae = build_autoencoder(cfg, images.shape[1], images.shape[-1], derive_seed(seed, "base-vae"))
    vae = train_autoencoder(vae, images, cfg["steps"], cfg["batch_size"], cfg["lr"],
                            cfg["kl_weight"], derive_seed(seed, "base-vae-train"),
                            progress="autoencoder" if progress else False)
    return save_base(folder, vae)


def build_latent_base(folder, images: np.ndarray, prompts: list[str], cfg: dict, seed: int,
                      progress: bool = False, extra_prompts: list[str] = ()) -> Path:
    """Build and save a tiny base (embedded scale) in the layout of :func:`save_base`.

    ``images`` (N, C, H, W) in [-1, 1] with ``prompts`` (N,), each image's prompt. Steps, all
    seeded from ``seed``: a CLIP tokenizer written for the distinct prompts and the empty one
    (classifier-free guidance), a text encoder (random and frozen — the UNet learns to read
    it, as Stable Diffusion's UNet learned to read a frozen CLIP), an autoencoder trained on the
    images (:func:`dabench.latent.train_autoencoder`), then the conditional UNet trained whole on
    their latents
    with the training loop of the pixel model, each example with its prompt's context —
    a fraction ``cfg['unet_train']['drop_prompt']`` of the examples with the empty prompt's
    instead, so that the base can guide. ``cfg``: ``text_encoder``, ``autoencoder`` (with
    ``steps``, ``batch_size``, ``lr``, ``kl_weight``), ``unet``, ``unet_train`` (a training
    recipe), ``model`` (the diffusion schedule). ``extra_prompts``: further prompts the tokenizer
    must know as whole words (the fine-tuning set's)."""
    import tempfile

    from dabench.latent import (build_autoencoder, build_conditional_unet, build_text_encoder,
                                encode_images, encode_prompts, load_tokenizer, save_base,
                                train_autoencoder, write_tokenizer)

    folder = Path(folder)
    distinct = sorted(set(prompts))
    vocabulary = sorted(set(distinct) | set(extra_prompts)) + [""]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = load_tokenizer(write_tokenizer(Path(tmp) / "tokenizer", vocabulary,
                                                   cfg["text_encoder"]["max_length"]))
    text_encoder = build_text_encoder(cfg["text_encoder"], tokenizer,
                                      derive_seed(seed, "base-text-encoder"))
    text_encoder.requires_grad_(False).eval()
    ae = cfg["autoencoder"]
    vae = build_autoencoder(ae, images.shape[1], images.shape[-1], derive_seed(seed, "base-vae"))
    vae = train_autoencoder(vae, images, ae["steps"], ae["batch_size"], ae["lr"], ae["kl_weight"],
                            derive_seed(seed, "base-vae-train"),
                            progress="autoencoder" if progress else False)
    latents = encode_images(vae, images)
    contexts = encode_prompts(text_encoder, tokenizer, distinct + [""])
    index = {p: i for i, p in enumerate(distinct)}
    which = np.array([index[p] for p in prompts])
    drop = np.random.default_rng(derive_seed(seed, "base-drop-prompt")).random(len(prompts))
    which[drop < cfg["unet_train"].get("drop_prompt", 0.0)] = len(distinct)     # the empty prompt
    unet_cfg = cfg["unet"]
    recipe = {k: v for k, v in cfg["unet_train"].items() if k != "drop_prompt"}

    def build(init_seed):
        return build_conditional_unet(unet_cfg, latents.shape[1], latents.shape[-1],
                                      cfg["text_encoder"]["hidden_size"], init_seed,
                                      tokenizer.model_max_length)

    result = train(latents, np.arange(len(latents)), cfg["model"], recipe,
                     seed=derive_seed(seed, "base-unet-train"),
                     init_seed=derive_seed(seed, "base-unet"), build=build,
                     cond=contexts[which], progress="base UNet" if progress else False)
    unet = result.unet.requires_grad_(False).eval()
    return save_base(folder, vae, text_encoder, tokenizer, unet)
