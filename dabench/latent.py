"""Latent, text-conditioned diffusion (docs/computation.md §10): the model family of D-TRAK's
ArtBench experiments (Stable Diffusion fine-tuned with LoRA) and of the sparsified-FT Shapley
paper's latent models, built from diffusers, transformers and peft parts.

A latent model is three frozen parts and one trainable part:

- an autoencoder E/D (diffusers ``AutoencoderKL``): z₀ = E(x)·s, the posterior mean scaled by its
  ``scaling_factor`` s (deterministic, so every example has one latent);
- a text encoder (transformers ``CLIPTextModel`` + ``CLIPTokenizer``): a prompt → hidden states
  c (L, D), the UNet's cross-attention context;
- a conditional UNet ε_θ(z_t, t, c) (diffusers ``UNet2DConditionModel``) — the *base*;
- a LoRA adapter (peft) on the UNet's attention projections: the only parameters that train,
  and the only ones attribution differentiates (:func:`dabench.gradients.trainable`).

The diffusion loss, the training plan and log, per-example gradients and the LDS model output
are those of the pixel model (:mod:`dabench.model`, :mod:`dabench.training`,
:mod:`dabench.gradients`) acting on latents with each example's conditioning.

At the paper scale the parts load from local diffusers / transformers folders
(``from_pretrained``); the embedded scale builds a tiny base here, offline: a CLIP BPE tokenizer
whose vocabulary this module writes from the prompts it serves (:func:`write_tokenizer`), a small
autoencoder, text encoder and UNet (:func:`build_autoencoder`, :func:`build_text_encoder`,
:func:`build_conditional_unet`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

# The attention projections diffusers' own text-to-image LoRA script adapts (D-TRAK used it).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenizer: special tokens, English contractions, letter runs, single digits, runs of
# other non-space characters (the tokenizer applies the same expression itself).
_WORDS = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|"
                    r"[^\s\w]+|_+")


def _byte_alphabet() -> dict[int, str]:
    """GPT-2 / CLIP byte-level BPE: every byte as a printable unicode character."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def tokenizer_files(prompts: list[str]) -> tuple[dict[str, int], list[str]]:
    """A CLIP BPE vocabulary and merge list that encode every word of ``prompts`` as one token.

    The vocabulary holds CLIP's 256 byte symbols, each also as a word end (``</w>``), the merged
    symbols and the two special tokens, so any text still encodes (byte by byte) and decodes
    back; the merges join each prompt word left to right, in order of first appearance."""
    alphabet = list(_byte_alphabet().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges: list[str] = []
    seen = set(vocab_list)
    byte_map = _byte_alphabet()
    for prompt in prompts:
        text = re.sub(r"\s+", " ", prompt).strip().lower()
        for word in _WORDS.findall(text):
            if word in (BOS, EOS):
                continue
            symbols = [byte_map[b] for b in word.encode("utf-8")]
            symbols[-1] += "</w>"
            current = symbols[0]
            for nxt in symbols[1:]:
                rule = f"{current} {nxt}"
                current = current + nxt
                if current not in seen:
                    merges.append(rule)
                    vocab_list.append(current)
                    seen.add(current)
    vocab_list += [BOS, EOS]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


def write_tokenizer(folder, prompts: list[str], max_length: int) -> Path:
    """Write a ``CLIPTokenizer`` folder (vocab.json, merges.txt, tokenizer_config.json) for
    ``prompts``; load it with :func:`load_tokenizer` or ``CLIPTokenizer.from_pretrained``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tokenizer_files(prompts)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length,
         "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}))
    return folder


def load_tokenizer(folder):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder))


# ------------------------------------------------------------------------------------------------
# The parts of a tiny base (embedded scale), each a deterministic function of its seed


def _seeded(seed: int, make):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_autoencoder(cfg: dict, channels: int, resolution: int, seed: int):
    """A small autoencoder: an ``AutoencoderKL`` (``cfg['kind']`` kl, the default) or a
    ``VQModel`` (vq, with ``num_vq_embeddings`` codebook entries): ``block_out_channels`` (one 2×
    downsampling between consecutive blocks), ``latent_channels``, ``layers_per_block``,
    ``norm_num_groups``."""
    from diffusers import AutoencoderKL, VQModel

    n = len(cfg["block_out_channels"])
    common = dict(
        in_channels=channels, out_channels=channels, sample_size=resolution,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"], latent_channels=cfg["latent_channels"],
        norm_num_groups=cfg["norm_num_groups"], scaling_factor=cfg.get("scaling_factor", 1.0))
    if cfg.get("kind", "kl") == "vq":
        return _seeded(seed, lambda: VQModel(**common,
                                             num_vq_embeddings=cfg["num_vq_embeddings"]))
    return _seeded(seed, lambda: AutoencoderKL(**common))


def is_vq(vae) -> bool:
    """A vector-quantised autoencoder (diffusers ``VQModel``): its encoder gives the latents
    before quantisation, its decoder quantises them first (as LDM's VQ-f4)."""
    return hasattr(vae, "quantize")


def build_text_encoder(cfg: dict, tokenizer, seed: int):
    """A small ``CLIPTextModel`` over ``tokenizer``'s vocabulary (``hidden_size``, ``layers``,
    ``heads``, ``intermediate_size``; positions = the tokenizer's ``model_max_length``)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"], max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    return _seeded(seed, lambda: CLIPTextModel(config))


def conditional_unet_kwargs(cfg: dict, latent_channels: int, latent_resolution: int,
                            cross_attention_dim: int) -> dict:
    """The ``UNet2DConditionModel`` arguments of :func:`build_conditional_unet`."""
    return dict(sample_size=latent_resolution, in_channels=latent_channels,
                out_channels=latent_channels, block_out_channels=list(cfg["block_out_channels"]),
                down_block_types=list(cfg["down_block_types"]),
                up_block_types=list(cfg["up_block_types"]),
                layers_per_block=cfg["layers_per_block"],
                attention_head_dim=cfg["attention_head_dim"],
                norm_num_groups=cfg["norm_num_groups"], cross_attention_dim=cross_attention_dim)


# Stable Diffusion 1.x's UNet (miniSD, D-TRAK's ArtBench base, at 256×256: 32×32 latents): what
# resource planning assumes of a latent.base that is not on disk yet (a dry run, `make plan`).
SD1_UNET = dict(sample_size=32, in_channels=4, out_channels=4,
                block_out_channels=[320, 640, 1280, 1280],
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                layers_per_block=2, attention_head_dim=8, norm_num_groups=32,
                cross_attention_dim=768)
SD1_CONTEXT_LENGTH = 77


def latent_unet_kwargs(latent_cfg: dict, resolution: int) -> tuple[dict, int]:
    """(UNet2DConditionModel arguments, text context length) of a latent config's base: read
    from ``latent.base``'s unet/config.json, else :data:`SD1_UNET` when that base is not there
    yet, else (the embedded scale) from ``latent.pretrain`` at the data's ``resolution``."""
    base = latent_cfg.get("base")
    if base:
        cfg_path = Path(base) / "unet" / "config.json"
        if not cfg_path.is_file():
            return dict(SD1_UNET), SD1_CONTEXT_LENGTH
        import inspect

        from diffusers import UNet2DConditionModel

        known = set(inspect.signature(UNet2DConditionModel.__init__).parameters)
        cfg = {k: v for k, v in json.loads(cfg_path.read_text()).items()
               if not k.startswith("_") and k in known}
        tok = Path(base) / "tokenizer" / "tokenizer_config.json"
        length = json.loads(tok.read_text()).get("model_max_length") if tok.is_file() else None
        ok = isinstance(length, int) and 0 < length < 10_000
        return cfg, (length if ok else SD1_CONTEXT_LENGTH)
    pre = latent_cfg["pretrain"]
    channels, latent_res = latent_shape(latent_cfg, "latent", resolution)
    return (conditional_unet_kwargs(pre["unet"], channels, latent_res,
                                    pre["text_encoder"]["hidden_size"]),
            pre["text_encoder"]["max_length"])


# What planning assumes of a base that is not on disk yet: Stable Diffusion's KL-f8 autoencoder
# (4 channels, 1/8 of the side) and LDM's VQ-f4 (3 channels, 1/4: CelebA-HQ 256² -> 64²).
ASSUMED_AUTOENCODER = {"latent": (4, 8), "latent-ddpm": (3, 4)}


def latent_shape(latent_cfg: dict, family: str, resolution: int) -> tuple[int, int]:
    """(channels, side) of a latent model's latents for images of side ``resolution``: from
    ``latent.base``'s autoencoder config, :data:`ASSUMED_AUTOENCODER` when that base is not
    there yet, else (the embedded scale) from ``latent.pretrain.autoencoder``."""
    base = latent_cfg.get("base")
    if base:
        cfg = autoencoder_config(base)
        if cfg is None:
            channels, factor = ASSUMED_AUTOENCODER[family]
            return channels, resolution // factor
        channels = cfg.get("vq_embed_dim") or cfg.get("latent_channels", 4)
        return channels, _downsampled(resolution, cfg.get("block_out_channels", [0]))
    ae = latent_cfg["pretrain"]["autoencoder"]
    return ae["latent_channels"], _downsampled(resolution, ae["block_out_channels"])


def _downsampled(resolution: int, block_out_channels) -> int:
    """The latent side of an autoencoder with one 2× downsampling between consecutive levels."""
    return resolution // 2 ** (len(block_out_channels) - 1)


def build_conditional_unet(cfg: dict, latent_channels: int, latent_resolution: int,
                           cross_attention_dim: int, seed: int, context_length: int | None = None):
    """A small ``UNet2DConditionModel`` on latents: ``block_out_channels``, ``down_block_types`` /
    ``up_block_types`` (cross-attention blocks read the text), ``layers_per_block``,
    ``attention_head_dim``, ``norm_num_groups``. Classic attention (per-example gradients vmap
    through it). ``context_length``: tokens of the text context (memory planning)."""
    from diffusers import UNet2DConditionModel

    from dabench.architecture import classic_attention

    kwargs = conditional_unet_kwargs(cfg, latent_channels, latent_resolution, cross_attention_dim)
    unet = _seeded(seed, lambda: UNet2DConditionModel(**kwargs))
    if context_length is not None:
        unet.context_length = context_length          # for memory planning (dabench.profile)
    return classic_attention(unet)


# ------------------------------------------------------------------------------------------------
# LoRA


def add_lora(unet, rank: int, alpha: float, seed: int, b_std: float = 0.0,
             targets: tuple[str, ...] = LORA_TARGETS):
    """Freeze ``unet`` and add a fresh LoRA adapter (peft) of ``rank`` on ``targets``:
    A ~ N(0, 1/rank) (peft's ``gaussian`` initialisation) and B = 0, so the adapted model starts
    as the base — or B ~ N(0, ``b_std``²) when ``b_std`` > 0: with B = 0 every gradient of A is
    zero, so tests of per-example gradients (and attributions of an untrained adapter) need
    both factors non-zero. The same ``seed`` gives the same adapter. Returns ``unet``."""
    import torch
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                        target_modules=list(targets))

    def add():
        unet.add_adapter(config)
        if b_std > 0:
            for name, p in unet.named_parameters():
                if "lora_B" in name:
                    torch.nn.init.normal_(p, std=b_std)
        return unet

    return _seeded(seed, add)


def adapter_builder(base, rank: int, alpha: float, b_std: float = 0.0):
    """``build(init_seed)`` for :func:`dabench.training.train`: a copy of the frozen ``base``
    with a fresh adapter seeded by ``init_seed`` (every retrain fine-tunes the same base)."""
    import copy

    return lambda seed: add_lora(copy.deepcopy(base), rank, alpha, seed, b_std)


def lora_state(unet) -> dict[str, torch.Tensor]:
    """The adapter's tensors (the trainable parameters), by name."""
    return {k: p.detach().clone() for k, p in unet.named_parameters() if p.requires_grad}


# ------------------------------------------------------------------------------------------------
# Encoding prompts and images


def encode_prompts(text_encoder, tokenizer, prompts: list[str]) -> torch.Tensor:
    """c = the text encoder's last hidden states of each prompt, padded to the tokenizer's
    ``model_max_length``: (P, L, D) float32 (as Stable Diffusion conditions its UNet)."""
    import torch

    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    device = next(text_encoder.parameters()).device
    with torch.no_grad():
        return text_encoder(ids.to(device)).last_hidden_state.float().cpu()


def _encode(vae, x: torch.Tensor) -> torch.Tensor:
    """The unscaled latent of ``x``: a KL posterior's mean, a VQ encoder's pre-quantisation
    output."""
    out = vae.encode(x)
    return out.latents if is_vq(vae) else out.latent_dist.mean


def encode_images(vae, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """z₀ = E(x)·s, the latent scaled by the autoencoder's ``scaling_factor`` (a KL
    autoencoder's posterior mean, a VQ one's latent before quantisation — what LDM trains its
    DDPM on): (N, C, H, W) in [-1, 1] -> (N, c, h, w) float32."""
    import torch

    device = next(vae.parameters()).device
    s = float(vae.config.scaling_factor)
    with torch.no_grad():
        out = [_encode(vae, torch.as_tensor(images[i:i + batch_size]).to(device)) * s
               for i in range(0, len(images), batch_size)]
        return torch.cat(out).float().cpu().numpy()


def decode_latents(vae, latents: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """x = D(z₀ / s), clipped to [-1, 1]: the inverse of :func:`encode_images` (a VQ decoder
    quantises z₀ / s to its codebook first)."""
    import torch

    device = next(vae.parameters()).device
    s = float(vae.config.scaling_factor)
    with torch.no_grad():
        out = [vae.decode(torch.as_tensor(latents[i:i + batch_size]).to(device) / s).sample
               for i in range(0, len(latents), batch_size)]
        return torch.cat(out).clamp(-1, 1).float().cpu().numpy()


def decode_with_base(base_folder, latents: np.ndarray, device=None,
                     scaling_factor: float | None = None) -> np.ndarray:
    """:func:`decode_latents` with the autoencoder of ``base_folder`` (on ``device``, default
    the CPU; ``scaling_factor``: latent.scaling_factor): the images of a latent model's samples."""
    vae = load_autoencoder(base_folder, scaling_factor)
    return decode_latents(vae.to(device) if device is not None else vae, latents)


def latent_distance(z_before: np.ndarray, z_after: np.ndarray) -> np.ndarray:
    """The counterfactual distance of D-TRAK's latent experiments: the L2 distance between the
    latent encodings of each image before and after removing training data, (Q,) float64."""
    a = np.asarray(z_before, dtype=np.float64).reshape(len(z_before), -1)
    b = np.asarray(z_after, dtype=np.float64).reshape(len(z_after), -1)
    if a.shape != b.shape:
        raise ValueError(f"latent encodings differ in shape: {a.shape} vs {b.shape}")
    return np.sqrt(((a - b) ** 2).sum(1))


# ------------------------------------------------------------------------------------------------
# The base on disk: a diffusers-style folder, as Stable Diffusion checkpoints are laid out

BASE_PARTS = ("vae", "text_encoder", "tokenizer", "unet")
# A latent DDPM's base is its autoencoder alone: vae/, or vqvae/ as an LDMPipeline folder
# (CompVis/ldm-celebahq-256) holds its VQ-VAE.
AUTOENCODER_FOLDERS = ("vae", "vqvae")


def base_parts(family: str) -> tuple[str, ...]:
    """The parts a model family reads from its base: a text-to-image model (``latent``) all of
    :data:`BASE_PARTS`, a latent DDPM the autoencoder (part ``vae``)."""
    return BASE_PARTS if family == "latent" else ("vae",)


def save_autoencoder(folder, vae) -> Path:
    """Write ``vae`` into ``folder/vae`` (KL) or ``folder/vqvae`` (VQ, the LDMPipeline layout)."""
    path = Path(folder) / ("vqvae" if is_vq(vae) else "vae")
    vae.save_pretrained(path)
    return path


def save_base(folder, vae, text_encoder=None, tokenizer=None, unet=None) -> Path:
    """Write the frozen parts in the layout of a diffusers pipeline folder (``vae/`` or
    ``vqvae/``, ``text_encoder/``, ``tokenizer/``, ``unet/``, safetensors weights): the embedded
    scale's base then loads exactly as a real one (:func:`load_base`). A latent DDPM's base is
    the autoencoder alone."""
    folder = Path(folder)
    save_autoencoder(folder, vae)
    if text_encoder is not None:
        text_encoder.save_pretrained(folder / "text_encoder")
    if tokenizer is not None:
        tokenizer.save_pretrained(folder / "tokenizer")
    if unet is not None:
        unet.save_pretrained(folder / "unet")
    return folder


def autoencoder_dir(folder) -> Path | None:
    """The base's autoencoder sub-folder (``vae/`` or ``vqvae/`` with a config.json), or None."""
    for name in AUTOENCODER_FOLDERS:
        if (Path(folder) / name / "config.json").is_file():
            return Path(folder) / name
    return None


def autoencoder_config(folder) -> dict | None:
    """The base's autoencoder config.json (its ``_class_name`` says KL or VQ), or None."""
    sub = autoencoder_dir(folder)
    return None if sub is None else json.loads((sub / "config.json").read_text())


def load_autoencoder(folder, scaling_factor: float | None = None):
    """The base's autoencoder, frozen: an ``AutoencoderKL`` or a ``VQModel`` by its config's
    ``_class_name``; ``scaling_factor`` (latent.scaling_factor) replaces its own when given."""
    from diffusers import AutoencoderKL, VQModel

    sub = autoencoder_dir(folder)
    if sub is None:
        raise FileNotFoundError(f"latent model base {folder} has no autoencoder "
                                f"({' or '.join(f'{n}/config.json' for n in AUTOENCODER_FOLDERS)})")
    kind = json.loads((sub / "config.json").read_text()).get("_class_name", "AutoencoderKL")
    classes = {"AutoencoderKL": AutoencoderKL, "VQModel": VQModel}
    if kind not in classes:
        raise ValueError(f"{sub}/config.json: autoencoder class {kind!r} is not one of "
                         f"{', '.join(classes)}")
    vae = classes[kind].from_pretrained(str(sub)).requires_grad_(False).eval()
    if scaling_factor is not None:
        vae.register_to_config(scaling_factor=float(scaling_factor))
    return vae


def missing_base_parts(folder, parts: tuple[str, ...] = BASE_PARTS) -> list[str]:
    """The sub-folders of a base that are absent (each needs its config.json); part ``vae`` is
    the autoencoder, in ``vae/`` or ``vqvae/``."""
    folder = Path(folder)
    # A tokenizer is a fast tokenizer's tokenizer.json or a CLIP BPE's vocab.json + merges.txt.
    need = {"vae": ["config.json"], "text_encoder": ["config.json"],
            "tokenizer": ["tokenizer.json", "vocab.json"], "unet": ["config.json"]}
    missing = []
    for part in parts:
        if part == "vae":
            if autoencoder_dir(folder) is None:
                missing.append(" or ".join(f"{folder / n / 'config.json'}"
                                           for n in AUTOENCODER_FOLDERS))
        elif not any((folder / part / name).is_file() for name in need[part]):
            missing.append(f"{folder / part / need[part][0]}")
    return missing


def load_unet(folder):
    """The base's conditional UNet, frozen, with classic attention (see
    :func:`build_conditional_unet`)."""
    from diffusers import UNet2DConditionModel

    from dabench.architecture import classic_attention

    unet = UNet2DConditionModel.from_pretrained(str(Path(folder) / "unet"))
    tok_cfg = Path(folder) / "tokenizer" / "tokenizer_config.json"
    if tok_cfg.is_file():
        # The text context's length, for memory planning (dabench.profile.module_profile).
        length = json.loads(tok_cfg.read_text()).get("model_max_length")
        if isinstance(length, int) and 0 < length < 10_000:
            unet.context_length = length
    return classic_attention(unet).requires_grad_(False).eval()


def base_identity(folder) -> str:
    """A fingerprint of a base folder's UNet: its config and the size and time of its weights
    (cheap for a 3 GB checkpoint; rebuilding or replacing the base changes it)."""
    import hashlib

    unet = Path(folder) / "unet"
    h = hashlib.sha256()
    for path in sorted(unet.glob("*")):
        if path.is_file():
            st = path.stat()
            h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_base(folder, parts: tuple[str, ...] = BASE_PARTS) -> dict:
    """The frozen ``parts`` of a base folder written by :func:`save_base` or a real Stable
    Diffusion checkpoint (miniSD): {part: module or tokenizer}. A missing part is an error that
    names it."""
    from transformers import CLIPTextModel

    missing = missing_base_parts(folder, parts)
    if missing:
        raise FileNotFoundError(f"latent model base {folder} lacks {', '.join(missing)}")
    folder = Path(folder)
    out = {}
    if "vae" in parts:
        out["vae"] = load_autoencoder(folder)
    if "text_encoder" in parts:
        out["text_encoder"] = CLIPTextModel.from_pretrained(
            str(folder / "text_encoder")).requires_grad_(False).eval()
    if "tokenizer" in parts:
        out["tokenizer"] = load_tokenizer(folder / "tokenizer")
    if "unet" in parts:
        out["unet"] = load_unet(folder)
    return out


def adapter_metadata(base_folder, rank: int, alpha: float) -> dict:
    """What a LoRA checkpoint's sidecar records so that :func:`load_adapter_model` rebuilds it."""
    return {"model_family": "latent", "base": str(base_folder),
            "lora": {"rank": rank, "alpha": alpha}}


def load_adapter_model(meta: dict):
    """The base UNet of ``meta['base']`` with an (untrained) adapter of ``meta['lora']``'s shape,
    ready for the checkpoint's adapter tensors."""
    return add_lora(load_unet(meta["base"]), meta["lora"]["rank"], meta["lora"]["alpha"], seed=0)


# ------------------------------------------------------------------------------------------------
# Building a tiny base (embedded scale)


def train_autoencoder(vae, images: np.ndarray, steps: int, batch_size: int, lr: float,
                      kl_weight: float, seed: int, progress: bool | str = False):
    """Train ``vae`` on ``images`` (N, C, H, W) in [-1, 1]: mean squared reconstruction error of
    a posterior sample plus ``kl_weight`` × KL(q(z|x) ‖ N(0, I)) per latent element (the
    autoencoder objective of latent diffusion, without its perceptual and adversarial terms) —
    a VQ autoencoder: the reconstruction of the quantised latent (straight-through) plus the
    quantiser's codebook and commitment losses (VQ-VAE's objective; ``kl_weight`` unused).
    Batches and posterior samples come from ``seed``: the same call gives the same weights.
    Then sets the ``scaling_factor`` s = 1 / std of the latent means (as Stable Diffusion chose
    its 0.18215), so that z₀ = s·μ has unit variance. Returns the frozen, eval-mode ``vae``."""
    import torch

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    x_all = torch.as_tensor(images)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    vae.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=progress if isinstance(progress, str) else "autoencoder",
                   unit="step", mininterval=2.0, leave=False)
    for _ in range(steps):
        x = x_all[rng.choice(len(x_all), size=min(batch_size, len(x_all)), replace=False)]
        if is_vq(vae):
            recon, codebook = vae.decode(vae.encode(x).latents, return_dict=False)
            loss = ((recon - x) ** 2).mean() + codebook.mean()
        else:
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
            recon = vae.decode(z).sample
            kl = 0.5 * (posterior.mean ** 2 + posterior.var - 1.0 - posterior.logvar).mean()
            loss = ((recon - x) ** 2).mean() + kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    vae.eval().requires_grad_(False)
    vae.register_to_config(scaling_factor=1.0)
    mu = encode_images(vae, images)
    vae.register_to_config(scaling_factor=float(1.0 / max(float(mu.std()), 1e-6)))
    return vae

