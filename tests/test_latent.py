"""The latent, text-conditioned model family (dabench.latent): real diffusers / transformers /
peft parts at a tiny size — tokenizer, LoRA per-example gradients against autograd, LoRA
retrains as deterministic functions of (subset, seed), the latent counterfactual distance."""

import numpy as np
import pytest
import torch

from dabench import gradients as G
from dabench import latent as L
from dabench import training as T
from dabench.model import build_scheduler, load_model_tensors, model_tensors, per_example_loss

PROMPTS = ["a blocky image", "a smooth image", "a photo of a zero", "a photo of a one"]
TEXT = {"hidden_size": 16, "intermediate_size": 32, "layers": 1, "heads": 2}
VAE = {"block_out_channels": [8, 16], "latent_channels": 4, "layers_per_block": 1,
       "norm_num_groups": 4}
UNET = {"block_out_channels": [16, 32], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1,
        "attention_head_dim": 8, "norm_num_groups": 8}
MODEL = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    tok = L.load_tokenizer(L.write_tokenizer(tmp_path_factory.mktemp("tok"), PROMPTS, 8))
    text = L.build_text_encoder(TEXT, tok, seed=0)
    vae = L.build_autoencoder(VAE, 1, 8, seed=0)
    base = L.build_conditional_unet(UNET, 4, 4, TEXT["hidden_size"], seed=0)
    return tok, text, vae, base


def test_tokenizer_round_trips_prompts_each_word_one_token(parts):
    tok = parts[0]
    for prompt in PROMPTS:
        ids = tok(prompt).input_ids
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert len(ids) == len(prompt.split()) + 2           # every word is one token
        assert tok.decode(ids, skip_special_tokens=True) == prompt
    # Text outside the prompts still encodes byte by byte and decodes back (lower-cased).
    other = "Zebra 42, quickly!"
    assert tok.decode(tok(other).input_ids, skip_special_tokens=True) == "zebra 4 2 , quickly !"
    padded = tok(PROMPTS, padding="max_length", max_length=8).input_ids
    assert all(len(row) == 8 for row in padded)


def test_prompts_encode_to_distinct_contexts(parts):
    tok, text = parts[:2]
    c = L.encode_prompts(text, tok, PROMPTS)
    assert c.shape == (4, 8, TEXT["hidden_size"]) and c.dtype == torch.float32
    assert not torch.allclose(c[0], c[1])                     # different prompts, different c
    assert torch.equal(L.encode_prompts(text, tok, PROMPTS[:1])[0], c[0])


def test_autoencoder_shapes_and_latent_distance_by_hand(parts):
    vae = parts[2]
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)
    z = L.encode_images(vae, x)
    assert z.shape == (3, 4, 4, 4)
    np.testing.assert_array_equal(z, L.encode_images(vae, x))                 # deterministic
    np.testing.assert_allclose(z, L.encode_images(vae, x, batch_size=1), atol=1e-5)
    assert L.decode_latents(vae, z).shape == x.shape
    a = np.zeros((2, 1, 2, 2))
    b = a.copy()
    b[0, 0, 0, 0], b[0, 0, 1, 1] = 3.0, 4.0                   # |(3, 4)| = 5
    b[1] -= 1.0                                               # four entries off by 1: 2
    np.testing.assert_allclose(L.latent_distance(a, b), [5.0, 2.0])
    with pytest.raises(ValueError, match="differ in shape"):
        L.latent_distance(a, b[:, :, :1])


def test_lora_freezes_the_base_and_zero_b_gives_zero_a_gradients(parts):
    tok, text, _, base = parts
    import copy

    unet = L.add_lora(copy.deepcopy(base), rank=2, alpha=2, seed=0)
    names = [k for k, _ in G.trainable(unet)]
    assert names and all("lora_A" in k or "lora_B" in k for k in names)
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in names} >= {"to_q", "to_k", "to_v"}
    # B = 0: the adapter is the identity at first, and A receives no gradient.
    z = torch.randn(2, 4, 4, 4)
    c = L.encode_prompts(text, tok, PROMPTS[:2])
    sch = build_scheduler(MODEL)
    t = torch.tensor([100, 700])
    with torch.no_grad():
        torch.testing.assert_close(unet(z, t, encoder_hidden_states=c).sample,
                                   base(z, t, encoder_hidden_states=c).sample)
    per_example_loss(unet, sch, z, t, torch.randn_like(z), c).sum().backward()
    grads = dict(G.trainable(unet))
    assert all(float(grads[k].grad.abs().max()) == 0 for k in names if "lora_A" in k)
    assert any(float(grads[k].grad.abs().max()) > 0 for k in names if "lora_B" in k)


@pytest.mark.parametrize("function", ["loss", "square", "l2-norm"])
def test_lora_per_example_gradients_equal_an_autograd_loop(parts, function):
    tok, text, _, base = parts
    unet = L.adapter_builder(base, rank=2, alpha=2, b_std=0.05)(3)
    sch = build_scheduler(MODEL)
    gen = torch.Generator().manual_seed(0)
    b, j = 3, 2
    z = torch.randn(b, 4, 4, 4, generator=gen)
    noises = torch.randn(b, j, 4, 4, 4, generator=gen)
    t = torch.tensor([[50, 900], [300, 301], [999, 0]])
    c = L.encode_prompts(text, tok, PROMPTS[:3])
    fn = G.OUTPUT_FUNCTIONS[function]
    params = [p for _, p in G.trainable(unet)]
    rows = []
    for i in range(b):
        grads = None
        for k in range(j):
            xt = G._item_inputs(sch, z[i:i + 1], noises[i, k:k + 1], t[i, k:k + 1])
            out = unet(xt, t[i, k:k + 1], encoder_hidden_states=c[i:i + 1]).sample
            g = torch.autograd.grad(fn(out, noises[i, k:k + 1], None).sum() / j, params)
            grads = g if grads is None else [a + e for a, e in zip(grads, g)]
        rows.append(torch.cat([x.reshape(-1) for x in grads]))
    expected = torch.stack(rows)
    assert expected[:, :params[0].numel()].abs().max() > 0     # A-gradients are non-zero
    vmapped = G.per_example_gradients(unet, sch, z, t, noises, function, cond=c)
    torch.testing.assert_close(vmapped, expected, rtol=1e-4, atol=1e-7)
    loop = G.per_example_gradients(unet, sch, z, t, noises, function, cond=c,
                                   plan=G.GradientPlan("loop", 1, 1, 0))
    torch.testing.assert_close(loop, expected, rtol=1e-4, atol=1e-7)
    assert vmapped.shape[1] == G.n_params(unet)


def test_lora_retrain_is_a_deterministic_function_of_subset_and_seed(parts, tmp_path):
    tok, text, vae, base = parts
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (12, 1, 8, 8)).astype(np.float32)
    latents = L.encode_images(vae, images)
    labels = np.arange(12) % 2
    cond = L.encode_prompts(text, tok, PROMPTS[:2])[labels]
    recipe = {"steps": 6, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 1,
              "grad_clip": 1.0, "checkpoint_steps": [], "resume_every": 3, "mixed_precision": "no"}
    build = L.adapter_builder(base, rank=2, alpha=2)
    before = {k: v.clone() for k, v in base.state_dict().items()}

    def retrain(members, seed, **kw):
        res = T.train(latents, np.asarray(members), MODEL, recipe, seed=seed, init_seed=seed,
                      build=build, cond=cond, **kw)
        return L.lora_state(res.unet)

    a = retrain([0, 1, 2, 3, 4, 5], 7)
    b = retrain([0, 1, 2, 3, 4, 5], 7)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)   # it trained
    other_seed = retrain([0, 1, 2, 3, 4, 5], 8)
    other_subset = retrain([6, 7, 8, 9, 10, 11], 7)
    assert not all(torch.equal(a[k], other_seed[k]) for k in a)
    assert not all(torch.equal(a[k], other_subset[k]) for k in a)
    # The base never moves; the saved model is the adapter alone and loads back.
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    unet = build(7)
    load_model_tensors(unet, {f"model.{k}": v for k, v in a.items()})
    assert set(model_tensors(unet)) == {f"model.{k}" for k in a}
    assert all(torch.equal(dict(G.trainable(unet))[k], a[k]) for k in a)
    # An interrupted retrain resumes from its adapter + optimizer state to the same weights.
    resume = tmp_path / "resume.safetensors"
    retrain([0, 1, 2, 3, 4, 5], 7, resume_path=resume, stop_after=3)
    assert resume.exists()
    resumed = retrain([0, 1, 2, 3, 4, 5], 7, resume_path=resume)
    assert all(torch.equal(a[k], resumed[k]) for k in a)


def test_base_folder_round_trips_and_adapter_checkpoints_load(parts, tmp_path):
    from dabench.model import load_model

    tok, text, vae, base = parts
    folder = L.save_base(tmp_path / "base", vae, text, tok, base)
    assert L.missing_base_parts(folder) == []
    loaded = L.load_base(folder)
    assert not any(p.requires_grad for p in loaded["unet"].parameters())
    assert all(torch.equal(a, b) for a, b in zip(loaded["unet"].state_dict().values(),
                                                 base.state_dict().values()))
    torch.testing.assert_close(L.encode_prompts(loaded["text_encoder"], loaded["tokenizer"], PROMPTS),
                               L.encode_prompts(text, tok, PROMPTS))
    # A LoRA fine-tune saved as a checkpoint holds only the adapter and loads on the base.
    latents = np.random.default_rng(1).normal(size=(8, 4, 4, 4)).astype(np.float32)
    cond = L.encode_prompts(text, tok, PROMPTS[:2])[np.arange(8) % 2]
    recipe = {"steps": 4, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 1,
              "grad_clip": 1.0, "checkpoint_steps": [4], "resume_every": 100, "mixed_precision": "no"}
    res = T.train(latents, np.arange(8), MODEL, recipe, seed=0, init_seed=0,
                  build=L.adapter_builder(loaded["unet"], 2, 2), cond=cond,
                  checkpoint_dir=tmp_path / "ckpt", meta=L.adapter_metadata(folder, 2, 2))
    path = tmp_path / "ckpt" / "step_000004.safetensors"
    assert res.checkpoints == [str(path)]
    unet, meta = load_model(path, device="cpu")
    assert meta["model_family"] == "latent" and meta["lora"] == {"rank": 2, "alpha": 2}
    trained = L.lora_state(res.unet)
    assert all(torch.equal(dict(G.trainable(unet))[k], v) for k, v in trained.items())
    # A missing part is named.
    import shutil

    shutil.rmtree(folder / "vae")
    with pytest.raises(FileNotFoundError, match=r"vae/config\.json"):
        L.load_base(folder)


def test_guided_sampling_and_conditional_model_output(parts):
    from dabench.model import model_output
    from dabench.sampling import generate, guided_eps

    tok, text, _, base = parts
    unet = L.adapter_builder(base, 2, 2, b_std=0.05)(0).eval()
    c = L.encode_prompts(text, tok, PROMPTS[:2])
    u = L.encode_prompts(text, tok, [""])[0]
    x = torch.randn(2, 4, 4, 4)
    t = torch.tensor(500)
    with torch.no_grad():
        e_c = unet(x, t, encoder_hidden_states=c).sample
        e_u = unet(x, t, encoder_hidden_states=u.expand(2, *u.shape)).sample
        torch.testing.assert_close(guided_eps(unet, x, t, c, u, 1.0), e_c)
        torch.testing.assert_close(guided_eps(unet, x, t, c, u, 3.0), e_u + 3.0 * (e_c - e_u),
                                   rtol=1e-4, atol=1e-5)
    sched_cfg = build_scheduler(MODEL).config
    seeds = np.array([11, 12])
    a = generate(unet, sched_cfg, seeds, inference_steps=5, cond=c, uncond=u, guidance=2.0)
    b = generate(unet, sched_cfg, seeds, inference_steps=5, cond=c, uncond=u, guidance=2.0,
                 batch_size=1)
    assert a["images"].shape == (2, 4, 4, 4)
    again = generate(unet, sched_cfg, seeds, inference_steps=5, cond=c, uncond=u, guidance=2.0)
    np.testing.assert_array_equal(a["images"], again["images"])          # deterministic
    np.testing.assert_allclose(a["images"], b["images"], atol=1e-4)     # batch: float rounding
    plain = generate(unet, sched_cfg, seeds, inference_steps=5, cond=c)
    assert not np.allclose(plain["images"], a["images"])          # guidance changes samples
    # f(x; θ) with each query's own prompt: the mean loss over the grid, computed by hand.
    sch = build_scheduler(MODEL)
    q = np.random.default_rng(2).normal(size=(2, 4, 4, 4)).astype(np.float32)
    grid = np.array([100, 600])
    out = model_output(unet, sch, q, grid, 1, noise_seed=3, cond=c)
    swapped = model_output(unet, sch, q, grid, 1, noise_seed=3, cond=c.flip(0))
    assert out.shape == (2,) and not np.allclose(out, swapped)
    one = model_output(unet, sch, q[1:], grid, 1, noise_seed=3, cond=c[1:], batch_size=1)
    assert np.isfinite(out).all() and one.shape == (1,)


def test_autoencoder_training_is_deterministic_lowers_error_and_scales_latents():
    from sklearn.datasets import load_digits

    digits = load_digits().images[:32].astype(np.float32)
    x = (digits[:, None] / 8.0 - 1.0).astype(np.float32)                      # [-1, 1], 8x8

    def trained(steps):
        vae = L.build_autoencoder(VAE, 1, 8, seed=0)
        return L.train_autoencoder(vae, x, steps=steps, batch_size=16, lr=2e-3, kl_weight=1e-4,
                                   seed=5)

    def error(vae):
        return float(((L.decode_latents(vae, L.encode_images(vae, x)) - x) ** 2).mean())

    a, b, untrained = trained(40), trained(40), trained(0)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert error(a) < 0.5 * error(untrained)
    z = L.encode_images(a, x)
    assert abs(float(z.std()) - 1.0) < 1e-3                 # s = 1 / std of the latent means
    assert not any(p.requires_grad for p in a.parameters())


def test_build_base_trains_a_guidable_base_that_loads_like_a_real_one(tmp_path):
    from sklearn.datasets import load_digits

    from dabench.model import model_output
    from dabench.sampling import generate

    d = load_digits()
    keep = np.isin(d.target, [0, 1])[:200]
    x = (d.images[:200][keep][:, None] / 8.0 - 1.0).astype(np.float32)
    names = {0: "zero", 1: "one"}
    prompts = [f"a photo of a {names[t]}" for t in d.target[:200][keep]]
    recipe = {"steps": 60, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.0, "warmup_steps": 5,
              "grad_clip": 1.0, "checkpoint_steps": [], "resume_every": 1000,
              "mixed_precision": "no", "drop_prompt": 0.1}
    cfg = {"text_encoder": {**TEXT, "max_length": 8},
           "autoencoder": {**VAE, "steps": 40, "batch_size": 16, "lr": 2e-3, "kl_weight": 1e-4},
           "unet": UNET, "unet_train": recipe, "model": MODEL}
    folder = T.build_latent_base(tmp_path / "base", x, prompts, cfg, seed=0)
    assert L.missing_base_parts(folder) == []
    base = L.load_base(folder)
    assert base["unet"].context_length == 8
    tok, text = base["tokenizer"], base["text_encoder"]
    assert tok.decode(tok("a photo of a zero").input_ids, skip_special_tokens=True) == "a photo of a zero"
    z = L.encode_images(base["vae"], x)
    c = L.encode_prompts(text, tok, prompts)
    sch = build_scheduler(MODEL)
    grid = np.array([100, 400, 700])
    trained = model_output(base["unet"], sch, z[:32], grid, 1, noise_seed=0, cond=c[:32])
    fresh = L.build_conditional_unet(UNET, 4, 4, TEXT["hidden_size"], seed=1).eval()
    untrained = model_output(fresh, sch, z[:32], grid, 1, noise_seed=0, cond=c[:32])
    assert trained.mean() < 0.8 * untrained.mean()               # the base learned its data
    # The same call builds the same base.
    again = L.load_base(T.build_latent_base(tmp_path / "again", x, prompts, cfg, seed=0), ("unet",))
    assert all(torch.equal(p, q) for p, q in zip(base["unet"].state_dict().values(),
                                                 again["unet"].state_dict().values()))
    # Guided generation from the base with a fresh adapter, decoded to images.
    unet = L.adapter_builder(base["unet"], 2, 2)(0)
    u = L.encode_prompts(text, tok, [""])[0]
    out = generate(unet, sch.config, np.array([1, 2]), inference_steps=5, cond=c[:2], uncond=u,
                   guidance=3.0)
    images = L.decode_latents(base["vae"], out["images"])
    assert images.shape == (2, 1, 8, 8) and np.isfinite(images).all()


# ------------------------------------------------------------------------------------------------
# The workflow's latent stages: conditioning, data preparation, resources, recipe, config


def test_conditioning_gathers_each_batch_from_the_prompt_table():
    from dabench.data import Conditioning, DataError, conditioning

    table = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    index = np.array([2, 0, 1, 2, 2])
    cond = Conditioning(table, index, uncond=np.zeros((2, 4)))
    assert len(cond) == 5
    assert torch.equal(cond[np.array([3, 1])], torch.as_tensor(table[[2, 0]]))
    assert torch.equal(cond[1:3], torch.as_tensor(table[[0, 1]]))
    sub = cond.take([4, 0])
    assert sub.index.tolist() == [2, 2] and torch.equal(sub.uncond, cond.uncond)
    assert cond.fingerprint() != Conditioning(table, index[::-1]).fingerprint()
    assert cond.fingerprint() == Conditioning(table.copy(), index.copy()).fingerprint()
    with pytest.raises(DataError, match=r"outside \[0, 3\)"):
        Conditioning(table, [0, 3])
    assert conditioning({"images": np.zeros(2)}) is None
    stored = conditioning({"contexts": table, "prompt": index, "uncond": table[0]})
    assert torch.equal(stored[np.array([0])], torch.as_tensor(table[[2]]))


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A tiny base the workflow's own stage builds (latent.pretrain at a few steps)."""
    from dabench import config as C

    cfg = C.load(C.REPO_ROOT / "configs" / "ci-latent.yaml")
    cfg["latent"]["pretrain"].update(n=120)
    cfg["latent"]["pretrain"]["autoencoder"]["steps"] = 20
    recipe = {**C.pretrain_recipe(cfg), "steps": 20}
    folder = tmp_path_factory.mktemp("latent") / "base"
    T.write_latent_base(folder, cfg["latent"], cfg["data"], cfg["model"], recipe, seed=0)
    return cfg, folder


def test_latent_dataset_holds_latents_pixels_and_each_examples_prompt(tiny_base, tmp_path):
    from dabench.data import conditioning, write_dataset
    from dabench.io import load_json, load_npz

    cfg, folder = tiny_base
    data = {**cfg["data"], "n_train": 12, "n_validation": 4}
    paths = [tmp_path / n for n in ("train.npz", "val.npz", "info.json", "t.txt", "v.txt")]
    from dabench import config as C
    from dabench.data import FLIPPED

    write_dataset(data, 0, *paths, latent=C.encoding_params(cfg, tmp_path) | {"base": str(folder)})
    train, val = load_npz(paths[0]), load_npz(paths[1])
    base = L.load_base(folder)
    # Latents are the base autoencoder's scaled posterior means of the pixels kept beside them.
    assert train["pixels"].shape == (12, 1, 8, 8) and train["train_images"].shape == (12, 4, 4, 4)
    assert np.allclose(train["train_images"], L.encode_images(base["vae"], train["pixels"]),
                       atol=1e-6)
    # Flip augmentation (on in ci-latent): the latents of the mirrored pixels, encoded here.
    assert cfg["train"]["augment"]["hflip"]
    assert np.allclose(train[FLIPPED],
                       L.encode_images(base["vae"], train["pixels"][..., ::-1].copy()), atol=1e-6)
    # Each example's context is its class prompt's, encoded once per prompt; every prompt word
    # is one token of the base's tokenizer (written from the fine-tuning prompts too).
    prompts = ["a scanned eight", "a scanned five", "a scanned three"]
    assert train["prompts"].tolist() == prompts and load_json(paths[2])["prompts"] == prompts
    tok = base["tokenizer"]
    assert len(tok("a scanned three", add_special_tokens=False).input_ids) == 3
    names = {3: "a scanned three", 5: "a scanned five", 8: "a scanned eight"}
    want = L.encode_prompts(base["text_encoder"], tok, [names[int(c)] for c in val["labels"]])
    assert torch.allclose(conditioning(val)[np.arange(4)], want, atol=1e-6)
    assert torch.allclose(conditioning(train).uncond,
                          L.encode_prompts(base["text_encoder"], tok, [""])[0], atol=1e-6)


def test_a_latent_models_checkpoints_hold_only_the_adapter_and_load_on_their_base(tiny_base,
                                                                                   tmp_path):
    from dabench.config import model_section
    from dabench.data import conditioning, write_dataset
    from dabench.io import load_npz, load_tensors
    from dabench.model import load_model

    cfg, folder = tiny_base
    data = {**cfg["data"], "n_train": 12, "n_validation": 4}
    paths = [tmp_path / n for n in ("train.npz", "val.npz", "info.json", "t.txt", "v.txt")]
    from dabench import config as C

    write_dataset(data, 0, *paths, latent=C.encoding_params(cfg, tmp_path) | {"base": str(folder)})
    model_cfg = {**model_section(cfg, tmp_path), "base": str(folder)}

    recipe = {**C.training_recipe(cfg), "steps": 6, "batch_size": 4, "checkpoint_steps": [3, 6]}
    train = load_npz(paths[0])
    T.train_full_model(paths[0], model_cfg, recipe, 0, tmp_path / "model.safetensors",
                       tmp_path / "log.npz", tmp_path / "ckpt", tmp_path / "resume.safetensors")
    tensors, meta = load_tensors(tmp_path / "model.safetensors")
    n_lora = cfg["latent"]["lora"]["rank"] * _lora_dims(folder)
    assert meta["model_family"] == "latent" and meta["base"] == str(folder)
    assert all("lora_" in k for k in tensors) and sum(v.numel() for v in tensors.values()) == n_lora
    unet, _ = load_model(tmp_path / "model.safetensors")
    ckpt, _ = load_model(tmp_path / "ckpt" / "step_000003.safetensors")
    x, cond = train["train_images"][:4], conditioning(train)
    sch = build_scheduler(model_cfg)
    t, noise = torch.tensor([10, 200, 500, 900]), torch.randn(4, 4, 4, 4)
    with torch.no_grad():
        a = per_example_loss(unet, sch, torch.as_tensor(x), t, noise, cond[np.arange(4)])
        b = per_example_loss(ckpt, sch, torch.as_tensor(x), t, noise, cond[np.arange(4)])
    assert not torch.allclose(a, b)                  # the adapter moved between steps 3 and 6
    base = L.load_unet(folder)
    assert all(torch.equal(p, base.state_dict()[k.replace(".base_layer", "")])
               for k, p in unet.state_dict().items() if "lora_" not in k)


def _lora_dims(folder):
    """in + out features of the base's adapted projections, counted on the built model."""
    unet = L.load_unet(folder)
    return sum(m.in_features + m.out_features for n, m in unet.named_modules()
               if isinstance(m, torch.nn.Linear) and n.endswith(L.LORA_TARGETS))


def test_resource_planning_counts_the_adapter_by_brute_force():
    from dabench.profile import unet_profile

    kwargs = L.conditional_unet_kwargs(UNET, 4, 4, TEXT["hidden_size"])
    profile = unet_profile({**kwargs, "_context_length": 8})
    unet = L.build_conditional_unet(UNET, 4, 4, TEXT["hidden_size"], seed=0)
    assert profile["params"] == sum(p.numel() for p in unet.parameters())
    L.add_lora(unet, 3, 3, seed=0)
    lora = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    assert lora == 3 * profile["lora_dims_per_rank"] > 0


def test_latent_sizes_and_resources_follow_the_base_and_the_adapter():
    from dabench import config as C
    from dabench import resources as R

    cfg = C.load(C.REPO_ROOT / "configs" / "ci-latent.yaml")
    s = R.sizes(cfg)
    assert (s.channels, s.resolution) == (4, 4)                  # the latent shape
    assert s.p == cfg["latent"]["lora"]["rank"] * s.profile["lora_dims_per_rank"]
    assert s.model_bytes == 4 * (s.profile["params"] + s.p) and s.saved_bytes == 4 * s.p
    assert R.is_gpu_rule("prepare_dataset", cfg) and R.is_gpu_rule("build_latent_base", cfg)
    # A paper base not on disk yet is planned as Stable Diffusion 1.x (miniSD at 256x256).
    paper = C.load(C.REPO_ROOT / "configs" / "paper" / "artbench2.yaml")
    sp = R.sizes(paper)
    assert (sp.channels, sp.resolution) == (4, 32) and 8e8 < sp.profile["params"] < 9e8
    assert 2.4e7 < sp.p < 2.7e7                                  # D-TRAK: 25.5M at rank 128
    # Micro-batches bound what training holds: 8 examples' activations, not the batch's 64.
    need = R.estimate("train_full_model", paper)
    assert need.gpu_bytes < 8 * 0.6 * sp.activations + 2 * sp.model_bytes


def test_micro_batches_accumulate_to_the_same_step():
    from dabench import config as C

    cfg = C.load(C.REPO_ROOT / "configs" / "ci.yaml")
    x = np.random.default_rng(0).uniform(-1, 1, (12, 1, 8, 8)).astype(np.float32)
    # One step at learning rate 0: the parameters keep the step's gradient for comparison (Adam
    # would turn rounding noise in near-zero gradients into full steps).
    recipe = {**C.training_recipe(cfg), "steps": 1, "batch_size": 6, "lr": 0.0,
              "warmup_steps": 0, "grad_clip": 0.0, "checkpoint_steps": []}
    whole = T.train(x, np.arange(12), cfg["model"], recipe, seed=0, init_seed=0)
    micro = T.train(x, np.arange(12), cfg["model"], {**recipe, "micro_batch_size": 4}, seed=0,
                    init_seed=0)
    grads = [(p.grad, q.grad) for p, q in zip(whole.unet.parameters(), micro.unet.parameters())]
    assert all(g is not None and g.abs().sum() > 0 for g, _ in grads)
    for g, h in grads:
        assert torch.allclose(g, h, rtol=1e-4, atol=1e-7)
    assert np.allclose(whole.losses, micro.losses, rtol=1e-6)


def test_companion_and_latent_config_errors_name_the_key(tmp_path):
    from dabench import config as C

    cfg = C.load(C.REPO_ROOT / "configs" / "ci.yaml")
    # A list of companions chains: the first one runs the rest as its own companions.
    first = C.companion_config(cfg)
    assert first["name"] == "ci-latent" and first["companion"] == ["configs/ci-latent-ddpm.yaml"]
    assert [c["name"] for c in C.companion_chain(cfg)] == ["ci-latent", "ci-latent-ddpm"]
    assert C.companion_chain(C.load(C.REPO_ROOT / "configs" / "ci-latent-ddpm.yaml")) == []
    with pytest.raises(C.ConfigError, match="companion: 'nope.yaml' is not a config file"):
        C.companion_config({**cfg, "companion": "nope.yaml"})
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: other\ncompanion: configs/ci-latent.yaml\n")
    with pytest.raises(C.ConfigError, match="has a companion of its own"):
        C.companion_config({**cfg, "companion": str(nested)})
    same = tmp_path / "same.yaml"
    same.write_text("name: ci\n")
    with pytest.raises(C.ConfigError, match="has this run's name 'ci'"):
        C.companion_config({**cfg, "companion": str(same)})
    twice = {**cfg, "companion": ["configs/ci-latent.yaml", "configs/ci-latent.yaml"]}
    with pytest.raises(C.ConfigError, match="name 'ci-latent'"):
        C.companion_chain(twice)
    raw = {"name": "x", "model": {"family": "latent"}, "shapley": {"enabled": False},
           "retrac": {"enabled": True}}
    with pytest.raises(C.ConfigError, match="retrac.enabled: the ReTrac analyses run on pixel"):
        C.validate(raw, check_methods=False)


# ------------------------------------------------------------------------------------------------
# The latent DDPM (model.family latent-ddpm): LDM's CelebA-HQ model, a UNet trained whole on the
# latents of a frozen VQ autoencoder

VQ = {**VAE, "kind": "vq", "latent_channels": 3, "num_vq_embeddings": 16}


def test_vq_autoencoder_trains_deterministically_and_loads_from_an_ldm_layout(tmp_path):
    from sklearn.datasets import load_digits

    x = (load_digits().images[:32, None] / 8.0 - 1.0).astype(np.float32)

    def trained(steps):
        vae = L.build_autoencoder(VQ, 1, 8, seed=0)
        return L.train_autoencoder(vae, x, steps=steps, batch_size=16, lr=2e-3, kl_weight=0.0,
                                   seed=5)

    def error(vae):
        return float(((L.decode_latents(vae, L.encode_images(vae, x)) - x) ** 2).mean())

    a, b, untrained = trained(40), trained(40), trained(0)
    assert L.is_vq(a) and not L.is_vq(L.build_autoencoder(VAE, 1, 8, seed=0))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert error(a) < 0.7 * error(untrained)
    # z0 = s * (the encoder's output before quantisation); decoding quantises z0 / s first, so
    # it is exactly the VQ-VAE's own reconstruction of x.
    z = L.encode_images(a, x)
    assert z.shape == (32, 3, 4, 4) and abs(float(z.std()) - 1.0) < 1e-3
    s = float(a.config.scaling_factor)
    with torch.no_grad():
        own = a(torch.as_tensor(x)).sample.clamp(-1, 1).numpy()
        assert torch.allclose(torch.as_tensor(z) / s, a.encode(torch.as_tensor(x)).latents,
                              atol=1e-5)
    assert np.allclose(L.decode_latents(a, z), own, atol=1e-5)
    # Saved as an LDMPipeline keeps it (vqvae/), it loads by its class name, and
    # latent.scaling_factor replaces its scale (LDM's VQ-f4 latents are unscaled).
    L.save_base(tmp_path, a)
    assert (tmp_path / "vqvae" / "config.json").is_file() and not (tmp_path / "vae").exists()
    assert L.missing_base_parts(tmp_path, L.base_parts("latent-ddpm")) == []
    assert len(L.missing_base_parts(tmp_path, L.base_parts("latent"))) == 3
    loaded = L.load_autoencoder(tmp_path)
    assert type(loaded).__name__ == "VQModel" and not any(p.requires_grad
                                                          for p in loaded.parameters())
    assert np.allclose(L.encode_images(loaded, x), z, atol=1e-6)
    unscaled = L.load_autoencoder(tmp_path, scaling_factor=1.0)
    assert np.allclose(L.encode_images(unscaled, x), z / s, atol=1e-5)
    assert L.latent_shape({"base": str(tmp_path)}, "latent-ddpm", 8) == (3, 4)
    # A base not on disk yet is planned as LDM's VQ-f4: 3 channels at a quarter of the side.
    assert L.latent_shape({"base": str(tmp_path / "absent")}, "latent-ddpm", 256) == (3, 64)


def test_a_latent_ddpm_trains_whole_on_latents_and_its_models_decode(tmp_path):
    """Workflow stages of a latent DDPM at a few steps: its base is an autoencoder alone, its
    examples are latents beside their pixels (no prompts), its UNet is the config's UNet2DModel
    trained whole and saved with the base that decodes its samples; a retrain is a deterministic
    function of (subset, seed)."""
    from dabench import config as C
    from dabench import model as M
    from dabench.data import conditioning, write_dataset
    from dabench.io import load_npz
    from dabench.sampling import write_generation_set

    cfg = C.load(C.REPO_ROOT / "configs" / "ci-latent-ddpm.yaml")
    cfg["latent"]["pretrain"].update(n=120)
    cfg["latent"]["pretrain"]["autoencoder"]["steps"] = 10
    folder = tmp_path / "base"
    T.write_latent_base(folder, cfg["latent"], cfg["data"], cfg["model"], None, seed=0)
    assert sorted(p.name for p in folder.iterdir()) == ["vqvae"]
    data = {**cfg["data"], "n_train": 12, "n_validation": 4}
    paths = [tmp_path / n for n in ("train.npz", "val.npz", "info.json", "t.txt", "v.txt")]
    write_dataset(data, 0, *paths, latent=C.encoding_params(cfg, tmp_path) | {"base": str(folder)})
    train = load_npz(paths[0])
    assert train["train_images"].shape == (12, 3, 4, 4) and train["pixels"].shape == (12, 1, 8, 8)
    assert conditioning(train) is None and "prompts" not in train
    assert np.allclose(train["train_images"],
                       L.encode_images(L.load_autoencoder(folder), train["pixels"]), atol=1e-6)

    model_cfg = {**C.model_section(cfg, tmp_path), "base": str(folder)}
    assert "lora" not in model_cfg and "guidance" not in model_cfg
    recipe = {**C.training_recipe(cfg, "lds"), "steps": 3, "checkpoint_steps": []}
    subset = np.array([0, 2, 3, 7, 9])

    def retrain():
        return T.train(train["train_images"], subset, model_cfg, recipe, seed=4, init_seed=5)

    a, b = retrain(), retrain()
    assert all(p.requires_grad for p in a.unet.parameters())               # trained whole
    assert type(a.unet).__name__ == "UNet2DModel" and a.unet.config.in_channels == 3
    assert all(torch.equal(p, q) for p, q in zip(a.unet.parameters(), b.unet.parameters()))
    path = tmp_path / "full.safetensors"
    M.save_model(path, a.unet, M.model_metadata(model_cfg, recipe, train["train_images"].shape))
    unet, meta = M.load_model(path, device="cpu")
    assert meta["model_family"] == "latent-ddpm" and meta["base"] == str(folder)
    gen = {"n_samples": 2, "inference_steps": 3, "eta": 0.0}
    out = write_generation_set(path, model_cfg, gen, 0, tmp_path / "samples.npz",
                               tmp_path / "trajectory.npy")
    samples = load_npz(tmp_path / "samples.npz")
    assert out["images"].shape == (2, 3, 4, 4) and samples["pixels"].shape == (2, 1, 8, 8)
    assert np.allclose(samples["pixels"],
                       L.decode_latents(L.load_autoencoder(folder), samples["images"]), atol=1e-6)
    assert "contexts" not in samples
    # The counterfactual: retrained without a random 20%, regenerated from the query's noise;
    # latents compared as latents (the L2 of D-TRAK's latent experiments), pixels decoded.
    from dabench.counterfactual import run_counterfactual, summarize

    res = run_counterfactual(paths[0], tmp_path / "samples.npz", None, "random", 1, 0.2,
                             model_cfg, recipe, gen, 0, tmp_path / "cf.npz", tmp_path / "cf.st",
                             tmp_path / "cf.resume.safetensors")
    assert res["original"].shape == (3, 4, 4) and res["counterfactual_pixels"].shape == (1, 8, 8)
    assert np.allclose(res["counterfactual_pixels"],
                       L.decode_latents(L.load_autoencoder(folder), res["counterfactual"][None])[0],
                       atol=1e-6)
    per_query, _ = summarize({"random": [res]}, lambda x: x.reshape(len(x), -1))
    assert per_query.space.tolist() == ["latent"]
    assert np.isclose(per_query.l2[0], L.latent_distance(res["original"][None],
                                                         res["counterfactual"][None])[0])


def test_latent_ddpm_sizes_follow_the_autoencoder_and_the_config_unet():
    from dabench import config as C
    from dabench import resources as R

    cfg = C.load(C.REPO_ROOT / "configs" / "ci-latent-ddpm.yaml")
    s = R.sizes(cfg)
    assert (s.channels, s.resolution) == (3, 4) and s.trainable is None
    assert s.p == s.profile["params"] and s.pixel_bytes == 4 * 8 * 8
    assert R.is_gpu_rule("prepare_dataset", cfg)
    # LDM's CelebA-HQ model: 274.06M parameters on 64x64x3 latents of 256x256 faces.
    paper = C.load(C.REPO_ROOT / "configs" / "paper" / "celebahq.yaml")
    sp = R.sizes(paper)
    assert (sp.channels, sp.resolution) == (3, 64) and 274.0e6 < sp.p < 274.1e6
    need = R.estimate("train_full_model", paper)
    assert need.gpu_bytes < 80 * 2**30
