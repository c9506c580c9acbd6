import numpy as np
import pytest
import torch

from dabench import architecture as A
from dabench import model as M
from dabench import training as T
from dabench import sampling
from dabench.io import CorruptFileError

RECIPE = {"steps": 24, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 3,
          "grad_clip": 1.0, "checkpoint_steps": [12, 24], "resume_every": 8,
          "mixed_precision": "no"}


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (20, 1, 8, 8)).astype(np.float32)


def test_unet_is_built_from_config(cfg):
    unet = M.build_unet(cfg["model"], channels=1, resolution=8, init_seed=3)
    again = M.build_unet(cfg["model"], channels=1, resolution=8, init_seed=3)
    other = M.build_unet(cfg["model"], channels=1, resolution=8, init_seed=4)
    p, q, r = (next(u.parameters()) for u in (unet, again, other))
    assert torch.equal(p, q) and not torch.equal(p, r)
    assert unet.config.block_out_channels == (8, 16)


def test_training_plan_is_the_training_log(cfg):
    members = np.array([1, 4, 6, 9, 11])
    plan = T.training_plan(members, RECIPE, seed=7, num_train_timesteps=1000)
    assert plan["indices"].shape == (24, 8)
    flat = plan["indices"].ravel()
    # Epoch-wise shuffles: each block of len(members) positions holds every member once.
    for e in range(len(flat) // len(members)):
        assert sorted(flat[e * 5:(e + 1) * 5]) == sorted(members)
    assert plan["timesteps"].min() >= 0 and plan["timesteps"].max() < 1000
    other = T.training_plan(np.array([0, 2, 3]), RECIPE, seed=7, num_train_timesteps=1000)
    # Same seed, other subset: same timesteps and noise seeds (docs/computation.md §2: shared
    # across subsets).
    assert np.array_equal(plan["timesteps"], other["timesteps"])
    assert np.array_equal(plan["noise_seeds"], other["noise_seeds"])
    assert len(np.unique(plan["noise_seeds"])) == plan["noise_seeds"].size


def test_learning_rate_warmup_then_cosine():
    lr = T.lr_at(np.arange(24), RECIPE)
    assert np.allclose(lr[:3], [1e-3 / 3, 2e-3 / 3, 1e-3])
    assert lr[3] == pytest.approx(1e-3) and lr[-1] < 1e-5
    assert np.all(np.diff(lr[3:]) <= 0)


def test_a_logged_step_replays_exactly(cfg, images):
    """The loss of step s recomputed from the log alone equals the loss training saw."""
    members = np.arange(20)
    seen = {}
    result = T.train(images, members, cfg["model"], {**RECIPE, "steps": 5, "checkpoint_steps": []},
                     seed=1, init_seed=2, on_step=lambda s, loss: seen.setdefault(s, loss))
    log = result.plan
    # Replay step 1 (the first) from a fresh initialisation and the logged (indices, t, noise seeds).
    unet = M.build_unet(cfg["model"], 1, 8, init_seed=2)
    sched = M.build_scheduler(cfg["model"])
    x0 = torch.as_tensor(images[log["indices"][0]])
    t = torch.as_tensor(log["timesteps"][0])
    noise = M.example_noise(log["noise_seeds"][0], (1, 8, 8))
    with torch.no_grad():
        replay = M.per_example_loss(unet, sched, x0, t, noise).mean().item()
    assert replay == pytest.approx(seen[1], rel=1e-5)
    # One example's noise depends on its seed alone, not on the batch it was drawn in.
    single = M.example_noise(log["noise_seeds"][0][3:4], (1, 8, 8))
    assert torch.equal(single[0], noise[3])


def test_flip_augmentation_is_logged_and_a_flipped_step_replays_exactly(cfg, images):
    """train.augment.hflip: a fair coin per (step, position), shared by subsets of one seed like
    the timesteps; the loss of a step recomputed from the log, mirroring exactly the logged
    examples, equals the loss training saw — and differs from the unmirrored one."""
    recipe = {**RECIPE, "steps": 5, "checkpoint_steps": [], "augment": {"hflip": True}}
    plan = T.training_plan(np.arange(20), {**recipe, "steps": 200}, 7, 1000)
    assert 0.45 < plan["flips"].mean() < 0.55
    other = T.training_plan(np.arange(3), {**recipe, "steps": 200}, 7, 1000)
    assert np.array_equal(plan["flips"], other["flips"])
    off = T.training_plan(np.arange(20), RECIPE, 7, 1000)
    assert not off["flips"].any() and np.array_equal(off["timesteps"], plan["timesteps"][:24])
    seen = {}
    result = T.train(images, np.arange(20), cfg["model"], recipe, seed=1, init_seed=2,
                     on_step=lambda s, loss: seen.setdefault(s, loss))
    log = result.plan
    flips = log["flips"][0]
    assert 0 < flips.sum() < len(flips)      # both views in the first batch (seeded)
    unet = M.build_unet(cfg["model"], 1, 8, init_seed=2)
    sched = M.build_scheduler(cfg["model"])
    x0 = images[log["indices"][0]]
    mirrored = np.where(flips[:, None, None, None], x0[..., ::-1], x0)
    t = torch.as_tensor(log["timesteps"][0])
    noise = M.example_noise(log["noise_seeds"][0], (1, 8, 8))
    with torch.no_grad():
        replay = M.per_example_loss(unet, sched, torch.as_tensor(mirrored), t, noise).mean().item()
        plain = M.per_example_loss(unet, sched, torch.as_tensor(x0), t, noise).mean().item()
    assert replay == pytest.approx(seen[1], rel=1e-5)
    assert plain != pytest.approx(seen[1], rel=1e-5)
    # A latent model cannot mirror its latents: it must be given the mirrored images' latents.
    with pytest.raises(ValueError, match="train_images_hflip"):
        T.train(images, np.arange(20), {**cfg["model"], "base": "somewhere"}, recipe, seed=1,
                init_seed=2)


def test_resumed_training_equals_uninterrupted(cfg, images, tmp_path):
    members = np.arange(0, 20, 2)
    full = T.train(images, members, cfg["model"], RECIPE, seed=5, init_seed=6)
    resume = tmp_path / "resume.safetensors"
    first = T.train(images, members, cfg["model"], RECIPE, seed=5, init_seed=6,
                    resume_path=resume, stop_after=13)
    assert resume.exists() and first.resumed_from == 0
    second = T.train(images, members, cfg["model"], RECIPE, seed=5, init_seed=6, resume_path=resume)
    assert second.resumed_from == 8
    a, b = full.unet.state_dict(), second.unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_state_of_another_run_is_ignored(cfg, images, tmp_path):
    resume = tmp_path / "resume.safetensors"
    T.train(images, np.arange(10), cfg["model"], RECIPE, seed=5, init_seed=6, resume_path=resume,
            stop_after=9)
    other = T.train(images, np.arange(10, 20), cfg["model"], RECIPE, seed=5, init_seed=6,
                    resume_path=resume)
    assert other.resumed_from == 0


def test_checkpoints_and_corruption(cfg, images, tmp_path):
    result = T.train(images, np.arange(20), cfg["model"], RECIPE, seed=0, init_seed=0,
                     checkpoint_dir=tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in result.checkpoints] == ["step_000012.safetensors",
                                                                   "step_000024.safetensors"]
    unet, meta = M.load_model(tmp_path / "step_000024.safetensors")
    assert meta["step"] == 24 and meta["lr"] == pytest.approx(T.lr_at(np.array([23]), RECIPE)[0])
    ref = result.unet.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in unet.state_dict().items())
    path = tmp_path / "step_000012.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"step_000012\.safetensors is corrupt or truncated"):
        M.load_model(path)
    (tmp_path / "step_000024.json").unlink()
    with pytest.raises(CorruptFileError, match="has no sidecar"):
        M.load_model(tmp_path / "step_000024.safetensors")


def test_model_output_uses_fixed_noises(cfg, images):
    sched = M.build_scheduler(cfg["model"])
    u1 = M.build_unet(cfg["model"], 1, 8, 0)
    grid = A.timestep_grid(1000, 10)
    assert list(grid[:3]) == [0, 100, 200]
    f1 = M.model_output(u1, sched, images[:5], grid, 2, noise_seed=0)
    f1b = M.model_output(u1, sched, images[:5], grid, 2, noise_seed=0, batch_size=7)
    assert f1.shape == (5,) and np.allclose(f1, f1b, rtol=1e-5)
    # Brute force for one query: mean over (noise, timestep) of the per-example loss.
    base = M.derive_seed(0, "model-output")
    x0 = torch.as_tensor(images[2:3]).repeat(20, 1, 1, 1)
    seeds = base + (2 * 2 + np.repeat([0, 1], 10)) * 10 + np.tile(np.arange(10), 2)
    with torch.no_grad():
        ref = M.per_example_loss(u1, sched, x0, torch.as_tensor(np.tile(grid, 2)),
                                 M.example_noise(seeds, (1, 8, 8))).mean().item()
    assert f1[2] == pytest.approx(ref, rel=1e-5)


def test_ddim_generation_is_seeded_with_trajectories(cfg):
    unet = M.build_unet(cfg["model"], 1, 8, 0)
    sched_cfg = M.build_scheduler(cfg["model"]).config
    seeds = sampling.sample_seeds(0, 3)
    a = sampling.generate(unet, sched_cfg, seeds, inference_steps=5)
    b = sampling.generate(unet, sched_cfg, seeds[1:], inference_steps=5)
    assert a["images"].shape == (3, 1, 8, 8)
    assert a["trajectory"].shape == (6, 3, 1, 8, 8)
    assert np.array_equal(a["trajectory"][-1], a["images"])
    assert list(a["trajectory_timesteps"]) == [800, 600, 400, 200, 0, -1]
    assert np.allclose(a["images"][1:], b["images"], atol=1e-5)  # sample i depends on its seed only
