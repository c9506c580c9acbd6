"""Group Shapley (docs/computation.md §7): KernelSHAP against exact Shapley values by enumeration,
the kernel
sampler, the properties on cases computed by hand, group LDS and aggregation, pruning."""
import math
from itertools import combinations

import numpy as np
import pytest
import torch

from dabench import model as M
from dabench import training as T
from dabench import properties as P
from dabench import shapley as S
from dabench.metrics import group_lds


# Oracles: the definitions, by brute force.

def shapley_kernel_weight(n: int, size: int) -> float:
    """The Shapley kernel (n−1) / (C(n, s)·s·(n−s)) of one subset of ``size`` groups."""
    return (n - 1) / (math.comb(n, size) * size * (n - size))


def exact_shapley(value, n: int) -> np.ndarray:
    """Shapley values by enumerating every subset: φ_i = Σ_{S∌i} |S|!(n−|S|−1)!/n! ·
    (v(S∪{i}) − v(S)). ``value`` maps a frozenset of group indices to a number (small n)."""
    cache = {}

    def v(s):
        if s not in cache:
            cache[s] = float(value(s))
        return cache[s]

    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for s in combinations(others, size):
                s = frozenset(s)
                phi[i] += weight * (v(s | {i}) - v(s))
    return phi


def _game(n, seed=0):
    """A non-additive game: weights, pairwise interactions and a saturating term."""
    rng = np.random.default_rng(seed)
    w, inter = rng.normal(size=n), rng.normal(size=(n, n)) * 0.5

    def value(s):
        idx = np.array(sorted(s), dtype=int)
        z = np.zeros(n)
        z[idx] = 1
        return w @ z + z @ np.triu(inter, 1) @ z + 2 * np.sqrt(z.sum())
    return value


def test_exact_shapley_of_an_additive_game_is_its_weights():
    w = np.array([0.5, -1.0, 2.0, 0.0])
    phi = exact_shapley(lambda s: sum(w[i] for i in s) + 3.0, 4)
    np.testing.assert_allclose(phi, w, atol=1e-12)


def test_exact_shapley_of_the_glove_game():
    # Player 0 holds a left glove, players 1 and 2 right gloves: v = 1 for a pair.
    # By hand: φ_0 = 2/3, φ_1 = φ_2 = 1/6.
    phi = exact_shapley(lambda s: float(0 in s and (1 in s or 2 in s)), 3)
    np.testing.assert_allclose(phi, [2 / 3, 1 / 6, 1 / 6], atol=1e-12)


def test_kernel_shap_over_every_subset_with_kernel_weights_is_exact():
    n = 6
    value = _game(n)
    subsets = np.array([[i in c for i in range(n)] for k in range(1, n)
                        for c in map(set, __import__("itertools").combinations(range(n), k))])
    values = np.array([value(set(np.flatnonzero(s))) for s in subsets])
    weights = np.array([shapley_kernel_weight(n, int(s.sum())) for s in subsets])
    beta = S.kernel_shap(subsets, values, value(set()), value(set(range(n))), weights)
    np.testing.assert_allclose(beta, exact_shapley(value, n), atol=1e-9)


def test_kernel_shap_from_sampled_subsets_converges_and_is_efficient():
    n = 8
    value = _game(n, seed=1)
    exact = exact_shapley(value, n)
    f0, fd = value(set()), value(set(range(n)))
    errors = []
    for m in (40, 4000):
        z = S.draw_kernel_subsets(n, m, seed=3)
        beta = S.kernel_shap(z, [value(set(np.flatnonzero(s))) for s in z], f0, fd)
        assert beta.sum() == pytest.approx(fd - f0, abs=1e-9)     # efficiency, exactly
        errors.append(np.abs(beta - exact).max())
    assert errors[1] < 0.05 * np.abs(exact).max() and errors[1] < errors[0]


def test_kernel_subsets_are_antithetic_pairs_with_kernel_sizes():
    z = S.draw_kernel_subsets(10, 20000, seed=0)
    assert (z[0::2] == ~z[1::2]).all()
    assert z.sum(1).min() >= 1 and z.sum(1).max() <= 9
    freq = np.bincount(z.sum(1), minlength=10)[1:] / len(z)
    np.testing.assert_allclose(freq, S.kernel_size_probabilities(10), atol=0.01)
    assert (S.draw_kernel_subsets(10, 6, seed=0) == z[:6]).all()    # a prefix is the same draw


def test_group_subsets_have_the_alpha_size_and_bad_alpha_is_named():
    z = S.draw_group_subsets(10, 0.25, 50, seed=0, purpose="test")
    assert (z.sum(1) == 2).all() and len({r.tobytes() for r in z}) > 10
    with pytest.raises(ValueError, match="shapley.lds.alphas"):
        S.draw_group_subsets(3, 0.1, 5, seed=0, purpose="test")


def test_group_lds_of_the_true_additive_attribution_is_100():
    n, rng = 10, np.random.default_rng(0)
    tau = rng.normal(size=n)
    z = S.draw_group_subsets(n, 0.5, 30, seed=1, purpose="test")
    res = group_lds(tau, z, z @ tau)
    assert res["lds"] == pytest.approx(100) and res["n_subsets"] == 30
    assert group_lds(-tau, z, z @ tau)["lds"] == pytest.approx(-100)


def test_aggregation_and_top_groups_by_hand():
    groups = np.array([0, 0, 1, 1, 1])
    scores = np.array([[1.0, 3.0, 0.0, 4.0, -1.0], [3.0, 1.0, 2.0, 0.0, -1.0]])   # mean: 2 2 1 2 -1
    np.testing.assert_allclose(S.aggregate(scores, groups, 2, "mean"), [2.0, 2 / 3])
    np.testing.assert_allclose(S.aggregate(scores, groups, 2, "max"), [2.0, 2.0])
    assert S.top_groups(np.array([0.1, 0.5, -0.2, 0.5, 0.0]), 0.4).tolist() == [1, 3]
    with pytest.raises(ValueError, match="aggregation"):
        S.aggregate(scores, groups, 2, "median")


def test_inception_score_entropy_and_margin_by_hand():
    one_hot = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
    assert P.inception_score(one_hot) == pytest.approx(4.0, rel=1e-6)
    assert P.inception_score(np.full((5, 4), 0.25)) == pytest.approx(1.0)
    centroids = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.array([[0.1, 0], [9, 0.5], [0, 11], [1, 1], [10, 1], [1, 9]])
    assert P.cluster_entropy(x, centroids) == pytest.approx(math.log(3))
    assert P.cluster_entropy(x[:1], centroids) == pytest.approx(0.0)
    np.testing.assert_allclose(P.logit_margin(np.array([[1.0, 3.0, 2.5], [0.0, -1.0, 4.0]])),
                               [0.5, 4.0])


def test_ward_clusters_recover_separated_blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [20, 0], [0, 20]], float)
    x = np.concatenate([c + rng.normal(size=(15, 2)) for c in centers])
    cent = P.fit_clusters(x, 3)
    assert len(cent) == 3
    assert np.sort(np.bincount(P.assign(x, cent))).tolist() == [15, 15, 15]


def test_magnitude_pruning_removes_the_smallest_weights_and_fine_tuning_keeps_them_zero(cfg):
    unet = M.build_unet(cfg["model"], 1, 8, init_seed=0)
    masks = S.magnitude_masks(unet, 0.4)
    named = dict(unet.named_parameters())
    kept = torch.cat([named[k].detach().abs()[m.bool()] for k, m in masks.items()])
    gone = torch.cat([named[k].detach().abs()[~m.bool()] for k, m in masks.items()])
    assert gone.numel() / (gone.numel() + kept.numel()) == pytest.approx(0.4, abs=1e-3)
    assert gone.max() <= kept.min()
    counts = S.count_parameters(unet, masks)
    assert counts["parameters"] - counts["nonzero"] == gone.numel()
    S.apply_masks(unet, masks)
    images = np.random.default_rng(0).uniform(-1, 1, (16, 1, 8, 8)).astype(np.float32)
    recipe = {"steps": 5, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0,
              "grad_clip": 1.0, "checkpoint_steps": [], "resume_every": 100,
              "mixed_precision": "no"}
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    tuned = T.train(images, np.arange(8), cfg["model"], recipe, seed=1, init_seed=99,
                    init_state=("pruned", state), masks=masks).unet
    after = dict(tuned.named_parameters())
    assert all((after[k].detach()[~m.bool()] == 0).all() for k, m in masks.items())
    # It started from the given weights (not init_seed's) and moved.
    moved = [not torch.equal(after[k].detach(), state[k]) for k in masks]
    assert any(moved)
    unmasked = T.train(images, np.arange(8), cfg["model"], recipe, seed=1, init_seed=99,
                       init_state=("pruned", state)).unet
    assert any((dict(unmasked.named_parameters())[k].detach()[~m.bool()] != 0).any()
               for k, m in masks.items())


def test_pruning_an_adapter_touches_only_its_trainable_weights():
    """A LoRA-style model (frozen base layer, trainable factors): the masks and the counts cover
    the trainable matrices only, and the frozen weights stay as they were."""
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"base": torch.nn.Linear(6, 6),
                                 "lora_A": torch.nn.Linear(6, 2, bias=False),
                                 "lora_B": torch.nn.Linear(2, 6, bias=False)})
    model["base"].requires_grad_(False)
    frozen = model["base"].weight.detach().clone()
    masks = S.magnitude_masks(model, 0.5)
    assert sorted(masks) == ["lora_A.weight", "lora_B.weight"]
    S.apply_masks(model, masks)
    assert torch.equal(model["base"].weight, frozen)
    assert S.count_parameters(model, masks) == {"parameters": 24, "nonzero": 12}


def test_budget_curve_ends_on_each_ways_final_submodel_count():
    from dabench.shapley.results import budget_points

    assert budget_points(3) == [2, 3]          # the default's 3 retrained submodels
    assert budget_points(16) == [2, 4, 6, 8, 10, 12, 14, 16]
    assert budget_points(1) == []


def test_aesthetic_score_is_laions_head_on_normalised_clip_embeddings(tiny_clip, tmp_path):
    """The quality property's aesthetic scorer on a tiny random CLIP and a head laid out as LAION's
    improved predictor (linear layers with dropout between, no activation): scores equal the
    head applied to the L2-normalised CLIP image embeddings, computed here with torch."""
    from dabench.embedding import ClipEmbedder

    clip = str(tiny_clip[0])
    head = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.Dropout(0.2), torch.nn.Linear(12, 6),
                               torch.nn.Dropout(0.1), torch.nn.Linear(6, 1)).eval()
    torch.save({f"layers.{k}": v for k, v in head.state_dict().items()}, tmp_path / "head.pth")
    images = np.random.default_rng(0).uniform(-1, 1, (5, 1, 8, 8)).astype(np.float32)
    scorer = P.AestheticScorer(clip, str(tmp_path / "head.pth"))
    z = torch.as_tensor(ClipEmbedder(clip).embed(images))
    with torch.no_grad():
        want = head(z / z.norm(dim=1, keepdim=True))[:, 0].numpy()
    np.testing.assert_allclose(scorer.score(images), want, rtol=1e-5, atol=1e-6)
    # A head for other embeddings, or no head file, is named.
    torch.save({"weight": torch.ones(1, 5), "bias": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="takes 5-dim embeddings"):
        P.AestheticScorer(clip, str(tmp_path / "bad.pth"))
    with pytest.raises(FileNotFoundError, match="shapley.aesthetic.head"):
        P.AestheticScorer(clip, str(tmp_path / "none.pth"))


def test_training_score_baseline_ranks_groups_by_their_own_images_quality(cfg, tmp_path):
    """shapley.training_score: each training image's logit margin under the trained classifier
    (top-1 minus top-2 logit, computed here from the logits), mean and max per group; a latent
    model's training file is scored on its pixels, never its latents."""
    from dabench.embedding import write_classifier
    from dabench.io import load_json, save_npz

    rng = np.random.default_rng(0)
    labels = np.repeat([3, 5, 8], 4)
    images = rng.uniform(-1, 1, (12, 1, 8, 8)).astype(np.float32)
    save_npz(tmp_path / "train.npz", train_images=images, labels=labels)
    save_npz(tmp_path / "val.npz", images=images[:6], labels=labels[:6])
    write_classifier(tmp_path / "train.npz", tmp_path / "val.npz",
                     {**cfg["embedder"], "steps": 5}, 0, tmp_path / "clf.safetensors")
    S.write_design(tmp_path / "train.npz", cfg["shapley"], 0, tmp_path / "design.npz",
                   tmp_path / "groups.json")
    out = S.write_training_score(tmp_path / "design.npz", tmp_path / "train.npz",
                                 tmp_path / "clf.safetensors", None, tmp_path / "ts.json")
    logits = P.PropertyModel(tmp_path / "clf.safetensors").logits(images)
    top = np.sort(logits, axis=1)
    margin = (top[:, -1] - top[:, -2]).reshape(3, 4)        # groups 3, 5, 8 in label order
    saved = load_json(tmp_path / "ts.json")
    assert saved == out and set(out) == {"training-score.mean", "training-score.max"}
    for how, want in (("mean", margin.mean(1)), ("max", margin.max(1))):
        for prop in P.PROPERTIES:
            np.testing.assert_allclose(out[f"training-score.{how}"]["values"][prop], want,
                                       rtol=1e-5)
    # A latent model's file: latents as train_images, the images as pixels.
    save_npz(tmp_path / "latent.npz", train_images=rng.normal(size=(12, 4, 2, 2)),
             labels=labels, pixels=images)
    latent = S.write_training_score(tmp_path / "design.npz", tmp_path / "latent.npz",
                                    tmp_path / "clf.safetensors", None, tmp_path / "ts2.json")
    assert latent == out
