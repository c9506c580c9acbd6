import numpy as np
import pytest
import torch

from dabench import features as F
from dabench import model as M
from dabench import training as T
from dabench.features import FeatureSpec


@pytest.fixture
def tiny(cfg):
    unet = M.build_unet(cfg["model"], 1, 8, init_seed=0)
    return unet, M.build_scheduler(cfg["model"])


def test_timestep_schedules():
    assert list(F.feature_timesteps(10, "uniform", 1000)) == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
    assert list(F.feature_timesteps(4, "cumulative", 1000)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="uniform or cumulative"):
        F.feature_timesteps(4, "random", 1000)


def test_feature_ids_roundtrip():
    for spec in (FeatureSpec(), FeatureSpec("linf-norm", 100, "cumulative", 3, "gaussian", 512),
                 FeatureSpec("weighted-mse", 5, projection="none", k=0)):
        assert FeatureSpec.parse(spec.id) == spec
    assert FeatureSpec("square", 100).id == "square_K100u_e1_sparse4096"
    with pytest.raises(ValueError, match="unknown output function"):
        FeatureSpec("cube")


def test_vlb_weight_by_hand(tiny):
    _, sched = tiny
    w = F.vlb_weights(sched)
    t = 500
    beta = sched.betas[t].double()
    abar = sched.alphas_cumprod[t].double()
    assert w[t].item() == pytest.approx((beta**2 / (2 * beta * (1 - beta) * (1 - abar))).item(), rel=1e-6)


@pytest.mark.parametrize("function", list(F.OUTPUT_FUNCTIONS))
def test_vmap_gradients_match_an_autograd_loop(tiny, function):
    unet, sched = tiny
    rng = np.random.default_rng(0)
    x0 = torch.as_tensor(rng.uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32))
    timesteps = torch.tensor([10, 500, 900])
    noises = torch.randn(3, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    batched = F.per_example_gradients(unet, sched, x0, timesteps, noises, function)
    fn = F.OUTPUT_FUNCTIONS[function]
    w = F.vlb_weights(sched)[timesteps]
    for b in range(3):
        unet.zero_grad()
        xt = M.add_noise(sched, x0[b:b + 1].expand(3, -1, -1, -1), noises[b], timesteps)
        value = fn(unet(xt, timesteps).sample, noises[b], w).mean()
        value.backward()
        loop = torch.cat([p.grad.reshape(-1) for p in unet.parameters()])
        assert (batched[b] - loop).norm() <= 1e-4 * loop.norm(), function


def test_the_hook_path_equals_vmap(tiny, monkeypatch):
    """On a CPU the vmap plan runs as one batched backward with per-example contractions in
    hooks (conv, linear, group norm; the default UNet has strided convs and mid-block attention):
    the same gradients as torch.func's vmap, for shared, per-example and per-item inputs."""
    from dabench import gradients as G

    unet, sched = tiny
    assert G.use_hooks(unet, normalize=False) and not G.use_hooks(unet, normalize=True)
    rng = np.random.default_rng(5)
    x0 = torch.as_tensor(rng.uniform(-1, 1, (4, 1, 8, 8)).astype(np.float32))
    per_item = torch.as_tensor(rng.uniform(-1, 1, (4, 3, 1, 8, 8)).astype(np.float32))
    noises = torch.randn(4, 3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    cases = [(x0, torch.tensor([5, 400, 990])), (x0, torch.randint(0, 1000, (4, 3))),
             (per_item, torch.tensor([999, 500, 1]))]
    for images, t in cases:
        for function in ("loss", "square", "l2-norm", "weighted-mse"):
            hooks = F.per_example_gradients(unet, sched, images, t, noises, function)
            monkeypatch.setenv("DABENCH_GRADIENTS", "vmap")
            vmapped = F.per_example_gradients(unet, sched, images, t, noises, function)
            monkeypatch.delenv("DABENCH_GRADIENTS")
            assert (hooks - vmapped).norm() <= 1e-5 * vmapped.norm(), function
    # The parameters' requires_grad is left as it was.
    assert all(p.requires_grad for p in unet.parameters())


def test_features_stream_to_disk_and_are_deterministic(tiny, tmp_path):
    unet, sched = tiny
    images = np.random.default_rng(1).uniform(-1, 1, (7, 1, 8, 8)).astype(np.float32)
    spec = FeatureSpec("square", 4, projection="sparse", k=64)
    a = F.featurize(unet, sched, images, spec, noise_seed=1, projection_seed=2,
                    out_path=tmp_path / "a.npy", batch_size=3)
    F.featurize(unet, sched, images, spec, noise_seed=1, projection_seed=2,
                out_path=tmp_path / "b.npy", batch_size=5)
    fa, fb = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert fa.shape == (7, 64) and fa.dtype == np.float32 and a["k"] == 64
    assert np.allclose(fa, fb, rtol=1e-4, atol=1e-7)   # independent of batching
    # Example 4 alone gets the same feature as inside the full pass (noise keyed by its index).
    noises = F.example_noises(1, np.array([4]), 4, (1, 8, 8))
    t = torch.as_tensor(F.feature_timesteps(4, "uniform", 1000))
    g = F.per_example_gradients(unet, sched, torch.as_tensor(images[4:5]), t, noises, "square")
    from dabench.projection import make_projector

    ref = make_projector("sparse", g.shape[1], 64, 2).project(g).numpy()
    assert np.allclose(fa[4], ref[0], rtol=1e-4, atol=1e-7)


def test_a_truncated_feature_file_is_refused(tiny, tmp_path):
    from dabench.io import CorruptFileError, load_checked_npy, save_json, sha256

    unet, sched = tiny
    images = np.zeros((4, 1, 8, 8), dtype=np.float32)
    path = tmp_path / "train.npy"
    F.featurize(unet, sched, images, FeatureSpec("loss", 2, k=32), 0, 0, path)
    save_json(tmp_path / "train.json", {"sha256": sha256(path)})
    assert load_checked_npy(path).shape == (4, 32)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CorruptFileError, match=r"train\.npy is corrupt or truncated"):
        load_checked_npy(path)


def _loop_gradient(unet, sched, x, t, noise, function="loss"):
    unet.zero_grad()
    xt = M.add_noise(sched, x[None], noise[None], t[None])
    fn = F.OUTPUT_FUNCTIONS[function]
    fn(unet(xt, t[None]).sample, noise[None], F.vlb_weights(sched)[t[None]]).mean().backward()
    return torch.cat([p.grad.reshape(-1) for p in unet.parameters()])


def test_per_example_timesteps_and_retrac_normalisation_match_a_loop(tiny):
    """Replayed features take each example at its own timestep; ``normalize`` divides each
    single-(t, ε) gradient by its norm before averaging (Diffusion-ReTrac), checked by hand."""
    unet, sched = tiny
    x0 = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32))
    noises = torch.randn(3, 2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    per_example_t = torch.tensor([[3, 700], [250, 250], [999, 40]])
    for function in ("loss", "weighted-mse"):
        batched = F.per_example_gradients(unet, sched, x0, per_example_t, noises, function)
        unit = F.per_example_gradients(unet, sched, x0, per_example_t, noises, function,
                                       normalize=True)
        for b in range(3):
            g = [_loop_gradient(unet, sched, x0[b], per_example_t[b, j], noises[b, j], function)
                 for j in range(2)]
            mean = (g[0] + g[1]) / 2
            assert (batched[b] - mean).norm() <= 1e-4 * mean.norm()
            by_hand = (g[0] / g[0].norm() + g[1] / g[1].norm()) / 2
            assert (unit[b] - by_hand).norm() <= 1e-4 * by_hand.norm()
            # Not the same thing as normalising the average: the timesteps' norms differ.
            assert (by_hand - mean / mean.norm()).norm() > 1e-3


def test_replay_schedule_picks_the_last_training_step_before_the_checkpoint():
    log = {"indices": np.array([[0, 1], [2, 0], [1, 2], [0, 2]]),
           "timesteps": np.array([[10, 11], [12, 13], [14, 15], [16, 17]]),
           "noise_seeds": np.array([[100, 101], [102, 103], [104, 105], [106, 107]])}
    r = F.replay_schedule(log, checkpoint_step=2, n_train=4)
    # Before step 2: example 0 last at step 1 (position 3), 1 at step 0, 2 at step 1.
    assert r["timestep"][:3].tolist() == [13, 11, 12]
    assert r["noise_seed"][:3].tolist() == [103, 101, 102]
    assert r["step"].tolist() == [1, 0, 1, -1] and r["seen"].tolist() == [True, True, True, False]
    # Checkpoint 1: example 2 not yet seen, so its first occurrence after (step 1) stands in.
    r = F.replay_schedule(log, checkpoint_step=1, n_train=3)
    assert r["timestep"].tolist() == [10, 11, 12] and r["step"].tolist() == [0, 0, 1]


@pytest.mark.parametrize("hflip", [False, True])
def test_replay_features_use_the_logged_timestep_and_noise(tiny, tmp_path, cfg, hflip):
    """The training gradient of x_i at checkpoint c is the one of its logged (t, ε) and, with flip
    augmentation, of the view (mirrored or not) it was trained on: compare each replayed feature
    row with an autograd gradient at the training log's entry."""
    unet, sched = tiny
    recipe = {**cfg["train"], "steps": 6, "batch_size": 4, "warmup_steps": 1,
              "augment": {"hflip": hflip}}
    images = np.random.default_rng(2).uniform(-1, 1, (5, 1, 8, 8)).astype(np.float32)
    plan = T.training_plan(np.arange(5), recipe, seed=3, num_train_timesteps=1000)
    replay = F.replay_schedule(plan, checkpoint_step=4, n_train=5)
    if hflip:       # the seeded log mirrors some examples at their replayed step, not all
        assert 0 < replay["flip"].sum() < 5
    else:
        assert not replay["flip"].any()
    spec = FeatureSpec("loss", schedule="replay", projection="none", k=0)
    assert FeatureSpec.parse(spec.id) == spec and spec.id == "loss_replay_e1_none"
    info = F.featurize(unet, sched, images, spec, 0, 0, tmp_path / "train.npy", replay=replay)
    phi = np.load(tmp_path / "train.npy")
    norms = np.load(tmp_path / "train.norms.npy")
    assert info["timesteps"] == "replay"
    for i in range(5):
        step = replay["step"][i]
        pos = np.flatnonzero(plan["indices"][step] == i)[-1]
        assert step < 4 and i not in plan["indices"][step + 1:4].ravel()
        t = torch.tensor(plan["timesteps"][step, pos])
        noise = M.example_noise(plan["noise_seeds"][step, pos:pos + 1], (1, 8, 8))[0]
        assert replay["flip"][i] == plan["flips"][step, pos]
        view = images[i][..., ::-1].copy() if plan["flips"][step, pos] else images[i]
        g = _loop_gradient(unet, sched, torch.as_tensor(view), t, noise).numpy()
        np.testing.assert_allclose(phi[i], g, rtol=1e-3, atol=1e-6 * np.abs(g).max())
        assert norms[i] == pytest.approx(np.linalg.norm(g), rel=1e-4)
    with pytest.raises(ValueError, match="n_noises = 1"):
        FeatureSpec("loss", n_noises=3, schedule="replay")
    unit = FeatureSpec("loss", 10, projection="sparse", k=64, normalize=True)
    assert unit.id == "loss_K10u_e1_sparse64_unit" and FeatureSpec.parse(unit.id) == unit


@pytest.mark.parametrize("normalize", [False, True])
def test_the_loop_strategy_equals_vmap(tiny, normalize):
    """The memory-lean loop (one example, items in chunks of ordinary backward passes) computes
    the same gradients as vmap: shared and per-example timesteps, one image per item (journey)."""
    from dabench.gradients import GradientPlan, plan_gradients

    unet, sched = tiny
    rng = np.random.default_rng(3)
    x0 = torch.as_tensor(rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32))
    noises = torch.randn(2, 5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    per_item = torch.as_tensor(rng.uniform(-1, 1, (2, 5, 1, 8, 8)).astype(np.float32))
    cases = [(x0, torch.tensor([0, 200, 400, 600, 800])),
             (x0, torch.tensor([[1, 2, 3, 4, 5], [900, 800, 700, 600, 500]])),
             (per_item, torch.tensor([999, 750, 500, 250, 20]))]
    for chunk in (1, 2, 5):
        loop = GradientPlan("loop", 1, chunk, 0)
        for images, t in cases:
            for function in ("loss", "weighted-mse"):
                ref = F.per_example_gradients(unet, sched, images, t, noises, function, normalize)
                got = F.per_example_gradients(unet, sched, images, t, noises, function, normalize,
                                              plan=loop)
                assert (got - ref).norm() <= 1e-4 * ref.norm(), (chunk, function)
    # The planner: a model whose gradients fill the budget runs the loop, in item chunks.
    plan = plan_gradients(n_params=10**6, activation_bytes=10**6, items=100, normalize=False,
                          budget_bytes=30 * 10**6)
    assert plan.mode == "loop" and plan.item_chunk == (30 - 4) * 10**6 // (0.5 * 10**6)
    small = plan_gradients(n_params=10**4, activation_bytes=10**4, items=10, normalize=False,
                           budget_bytes=2**31)
    assert small.mode == "vmap" and small.batch == 204    # the 2048 example-timestep cap


def test_shards_merge_into_the_unsharded_features(tiny, tmp_path):
    """Shards of the training set (rows a … b) joined by merge_shards equal one whole pass,
    norms and all."""
    unet, sched = tiny
    images = np.random.default_rng(4).uniform(-1, 1, (7, 1, 8, 8)).astype(np.float32)
    spec = FeatureSpec("loss", 3, k=64)
    F.featurize(unet, sched, images, spec, 5, 6, tmp_path / "whole.npy")
    paths = []
    from dabench.io import save_json, sha256

    for i in range(3):
        a, b = F.shard_rows(7, 3, i)
        path = tmp_path / "shards" / f"train.{i}.npy"
        info = F.featurize(unet, sched, images, spec, 5, 6, path, rows=(a, b))
        save_json(path.with_suffix(".json"), {**info, "sha256": sha256(path)})
        paths.append(path)
    assert [F.shard_rows(7, 3, i) for i in range(3)] == [(0, 2), (2, 4), (4, 7)]
    merged = F.merge_shards(paths[::-1], tmp_path / "train.npy")
    assert merged["n"] == 7 and merged["n_shards"] == 3
    # Up to float rounding: the batched kernels' summation order depends on the batch.
    np.testing.assert_allclose(np.load(tmp_path / "train.npy"), np.load(tmp_path / "whole.npy"),
                               rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(np.load(tmp_path / "train.norms.npy"),
                               np.load(tmp_path / "whole.norms.npy"), rtol=1e-5)
