"""TracInCP, GAS, Diffusion-TracIn and Diffusion-ReTrac against brute force: a tiny real UNet at
two checkpoints, a real training plan, features written by the workflow's own function, and the
formulas of docs/computation.md §4 evaluated with an autograd loop over examples, timesteps and
checkpoints."""
import numpy as np
import pytest
import torch

from dabench import config as C
from dabench.layout import REPO_ROOT
from dabench.seeds import derive_seed
from dabench import features as F
from dabench import layout
from dabench import methods
from dabench import architecture as A
from dabench import model as M
from dabench import training as T
from dabench.io import save_npz

STEPS = (3, 6)
K = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder with a training set, a training log, two checkpoints, one query set, and the
    features the checkpoint methods read (exact: no projection)."""
    cfg = C.load(REPO_ROOT / "configs" / "ci.yaml")
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    train = rng.uniform(-1, 1, (5, 1, 8, 8)).astype(np.float32)
    queries = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    save_npz(root / layout.TRAIN_DATA, train_images=train)
    save_npz(root / layout.VALIDATION_DATA, images=queries)
    recipe = {**C.training_recipe(cfg, "train"), "steps": 6, "batch_size": 3, "warmup_steps": 2}
    plan = T.training_plan(np.arange(5), recipe, seed=7, num_train_timesteps=1000)
    save_npz(root / layout.TRAINING_LOG, **plan)
    models = {}
    for i, step in enumerate(STEPS):
        unet = M.build_unet(cfg["model"], 1, 8, init_seed=i)
        M.save_model(root / layout.checkpoint(step), unet,
                     {"step": step, "unet_config": A.unet_config(cfg["model"], 1, 8)})
        models[step] = unet
    entries = {name: {"method": name, "n_timesteps": K, "projection": "none",
                      "checkpoints": list(STEPS)}
               for name in ("tracincp", "gas", "diffusion-tracin", "diffusion-retrac")}
    needed = {}
    for entry in entries.values():
        m = methods.build(entry)
        for split in ("train", "validation"):
            needed[(m.query_spec.id, split)] = m.query_spec
        needed[(m.train_spec.id, "train")] = m.train_spec
    for step in STEPS:
        for (fid, split), spec in needed.items():
            F.write_features(root / layout.checkpoint(step), cfg["model"],
                             root / layout.split_file(split),
                             layout.split_key(split), split, fid, cfg["seed"],
                             root / layout.features(layout.checkpoint_name(step), fid, split),
                             run_dir=root, training_log_path=root / layout.TRAINING_LOG)
    return {"root": root, "cfg": cfg, "plan": plan, "models": models, "train": train,
            "queries": queries, "entries": entries}


def _grad(unet, sched, x, t, noise):
    unet.zero_grad()
    t = torch.tensor([int(t)])
    loss = M.per_example_loss(unet, sched, torch.as_tensor(x)[None], t, noise[None]).mean()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in unet.parameters()]).double()


def _brute_force(run, images, split, unit_test, replay_train, normalise_train, cosine=False):
    """Σ_c η_c Σ_i-pairs of the docs/computation.md §4 formula, every gradient from an autograd
    loop."""
    cfg, plan, sched = run["cfg"], run["plan"], M.build_scheduler(run["cfg"]["model"])
    t_grid = F.feature_timesteps(K, "uniform", 1000)
    total = np.zeros((len(images), len(run["train"])))
    for step in STEPS:
        unet = run["models"][step]
        eta = plan["lr"][step - 1]
        q_seed = derive_seed(cfg["seed"], "feature-noise", split)
        t_seed = derive_seed(cfg["seed"], "feature-noise", "train")

        def test_side(x_index, x, seed):
            noises = F.example_noises(seed, np.array([x_index]), K, (1, 8, 8))[0]
            gs = [_grad(unet, sched, x, t, noises[j]) for j, t in enumerate(t_grid)]
            if unit_test:
                gs = [g / g.norm() for g in gs]
            return sum(gs) / K

        tests = [test_side(q, images[q], q_seed) for q in range(len(images))]
        trains = []
        for i, x in enumerate(run["train"]):
            if replay_train:
                # The last time x_i was in a batch before the checkpoint, read off the plan here.
                s, pos = max((s, p) for s in range(step) for p in range(plan["indices"].shape[1])
                             if plan["indices"][s, p] == i)
                noise = M.example_noise(plan["noise_seeds"][s, pos:pos + 1], (1, 8, 8))[0]
                g = _grad(unet, sched, x, plan["timesteps"][s, pos], noise)
            else:
                g = test_side(i, x, t_seed)
            trains.append(g / g.norm() if normalise_train else g)
        for q, gq in enumerate(tests):
            for i, gi in enumerate(trains):
                value = float(gq @ gi)
                if cosine:
                    value /= float(gq.norm() * gi.norm())
                total[q, i] += eta * value
    return total


def _inputs(run, method, split):
    paths = method.inputs(split) if split != "train" else method.self_inputs()
    return {k: run["root"] / v for k, v in paths.items()}


@pytest.mark.parametrize("name,unit_test,replay,normalise,cosine", [
    ("tracincp", False, False, False, False),
    ("gas", False, False, False, True),
    ("diffusion-tracin", False, True, False, False),
    ("diffusion-retrac", True, True, True, False),
])
def test_checkpoint_methods_match_brute_force(run, name, unit_test, replay, normalise, cosine):
    method = methods.build(run["entries"][name])
    scores = method.score(_inputs(run, method, "validation"), "validation")
    expected = _brute_force(run, run["queries"], "validation", unit_test, replay, normalise, cosine)
    np.testing.assert_allclose(scores, expected, rtol=2e-3, atol=1e-6 * np.abs(expected).max())
    meta = method.extra_metadata()
    assert meta["checkpoints"] == list(STEPS)
    assert meta["learning_rates"] == {str(s): pytest.approx(run["plan"]["lr"][s - 1]) for s in STEPS}


@pytest.mark.parametrize("name,unit_test,replay,normalise", [
    ("diffusion-tracin", False, True, False),
    ("diffusion-retrac", True, True, True),
])
def test_self_influence_is_the_diagonal_of_train_on_train_influence(run, name, unit_test, replay,
                                                                     normalise):
    method = methods.build(run["entries"][name])
    values = method.self_influence(_inputs(run, method, "train"))
    full = _brute_force(run, run["train"], "train", unit_test, replay, normalise)
    np.testing.assert_allclose(values, np.diag(full), rtol=2e-3, atol=1e-6 * np.abs(full).max())


def test_tracincp_self_influence_is_the_learning_rate_weighted_squared_norm(run):
    method = methods.build(run["entries"]["tracincp"])
    values = method.self_influence(_inputs(run, method, "train"))
    full = _brute_force(run, run["train"], "train", False, False, False)
    np.testing.assert_allclose(values, np.diag(full), rtol=2e-3)
    with pytest.raises(ValueError, match="no self-influence"):
        methods.build(run["entries"]["gas"]).self_influence({})


def test_retrac_differs_from_tracin_where_norms_differ(run):
    """ReTrac is not a rescaled TracIn: the normalisation reorders training examples."""
    tr = methods.build(run["entries"]["diffusion-tracin"])
    re = methods.build(run["entries"]["diffusion-retrac"])
    a = tr.score(_inputs(run, tr, "validation"), "validation")
    b = re.score(_inputs(run, re, "validation"), "validation")
    assert not np.allclose(np.argsort(a, axis=1), np.argsort(b, axis=1))


def test_checkpoints_default_to_the_training_checkpoints_and_are_checked():
    cfg = C.load(REPO_ROOT / "configs" / "ci.yaml")
    assert cfg["methods"]["diffusion-tracin"]["checkpoints"] == cfg["train"]["checkpoint_steps"]
    raw = {"name": "x", "train": {"steps": 60, "checkpoint_steps": [20, 40]},
           "methods": {"tr": {"method": "diffusion-tracin", "checkpoints": [30]}}}
    with pytest.raises(C.ConfigError, match=r"methods.tr: checkpoints \[30\] are not in train"):
        C.validate(raw)
    raw = {"name": "x", "train": {"steps": 60, "checkpoint_steps": []},
           "methods": {"tr": {"method": "gas"}}}
    with pytest.raises(C.ConfigError, match="set train.checkpoint_steps"):
        C.validate(raw)
    with pytest.raises(ValueError, match="function must be 'loss'"):
        methods.build({"method": "diffusion-tracin", "function": "square"})
