"""The Diffusion-ReTrac analyses (docs/computation.md §6) on small cases worked out by hand or by
brute force,
and the outlier experiment's configuration and data."""
import numpy as np
import pytest
from scipy import stats

from dabench import config as C
from dabench import retrac as R


def test_ranks_are_one_for_the_largest():
    assert R.ranks_descending(np.array([0.5, 3.0, -1.0, 3.0])).tolist() == [3, 1, 4, 2]


def test_rank_rise_matches_re_ranking_by_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=40)
    chosen = R.least_influential(scores, 10)
    assert len(chosen) == 10 and np.abs(scores[chosen]).max() <= np.sort(np.abs(scores))[9]
    new = rng.normal(scale=3, size=10)
    before, after = R.rank_rise(scores, chosen, new)
    for j, i in enumerate(chosen):
        changed = scores.copy()
        changed[i] = new[j]
        assert after[j] == R.ranks_descending(np.abs(changed))[i]
        assert before[j] == R.ranks_descending(np.abs(scores))[i]
    # Hand case: |scores| = 5, 1, 3 → ranks 1, 3, 2; example 1 gets 4 → rank 2.
    b, a = R.rank_rise(np.array([5.0, -1.0, 3.0]), np.array([1]), np.array([-4.0]))
    assert (b.tolist(), a.tolist()) == ([3], [2])


def test_least_influential_takes_at_most_half_the_training_set():
    assert len(R.least_influential(np.arange(8.0), 500)) == 4


def test_distinct_proportion_by_hand():
    # Two queries with the same top-2 → 2 distinct of 4; disjoint top-2 → 4 of 4.
    same = np.array([[3.0, 2.0, 0.0, 1.0], [3.0, 2.0, 1.0, 0.0]])
    assert R.distinct_proportion(same, 2) == 0.5
    apart = np.array([[3.0, 2.0, 0.0, 1.0], [0.0, 1.0, 3.0, 2.0]])
    assert R.distinct_proportion(apart, 2) == 1.0
    assert R.distinct_proportion(apart, 100) == 0.5   # k capped at N: every example twice


def test_outlier_share_and_source_precision_by_hand():
    self_inf = np.array([0.1, 5.0, 0.3, 4.0, 0.2])
    outlier = np.array([0, 1, 0, 0, 1])
    assert R.outlier_share(self_inf, outlier, 2) == 0.5      # top 2: examples 1 (out), 3 (in)
    assert R.outlier_share(self_inf, outlier, 1) == 1.0
    scores = np.array([[9.0, 8.0, 0.0, 0.0, 7.0], [0.0, 0.0, 1.0, 2.0, 3.0]])
    prec = R.source_precision(scores, np.array([1, 0]), outlier, 2)
    assert prec.tolist() == [0.5, 0.5]      # query 0: {0 (in), 1 (out)}; query 1: {4 (out), 3 (in)}


def test_algorithm_one_correlation_matches_scipy():
    rng = np.random.default_rng(1)
    distance = rng.integers(0, 1000, 50)
    rank = (distance * 0.3 + rng.normal(0, 40, 50)).argsort().argsort() + 1
    out = R.correlation(distance, rank)
    rho, p = stats.spearmanr(distance, rank)
    fit = stats.linregress(distance, rank)
    assert out["spearman"] == pytest.approx(rho) and out["spearman_p"] == pytest.approx(p)
    assert out["slope"] == pytest.approx(fit.slope) and out["slope_p"] == pytest.approx(fit.pvalue)
    assert out["spearman"] > 0.5 and out["n"] == 50


def test_timestep_norms_equal_single_gradient_norms(cfg):
    import torch

    from dabench import model as M

    unet = M.build_unet(cfg["model"], 1, 8, init_seed=0)
    sched = M.build_scheduler(cfg["model"])
    images = np.random.default_rng(2).uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    grid = np.array([0, 500, 999])
    seeds = np.array([11, 12])
    norms = R.timestep_norms(unet, sched, images, grid, seeds)
    noise = M.example_noise(seeds, (1, 8, 8))
    for b in range(2):
        for j, t in enumerate(grid):
            unet.zero_grad()
            M.per_example_loss(unet, sched, torch.as_tensor(images[b:b + 1]), torch.tensor([t]),
                               noise[b:b + 1]).mean().backward()
            g = torch.cat([p.grad.reshape(-1) for p in unet.parameters()])
            assert norms[b, j] == pytest.approx(g.norm().item(), rel=1e-4)


def _raw(**overrides):
    raw = {"name": "x", "methods": {"tr": {"method": "diffusion-tracin"},
                                    "re": {"method": "diffusion-retrac"}}}
    return C.deep_update(raw, overrides)


def test_retrac_configuration_is_checked():
    cfg = C.validate(_raw())
    assert C.retrac_methods(cfg) == ("tr", "re")
    out = C.outlier_data_config(cfg)
    assert out["dataset"] == "mnist_subset" and out["outliers"]["n"] == 16
    assert out["resolution"] == cfg["data"]["resolution"]      # inherited from data
    assert C.retrac_methods(C.validate(_raw(retrac={"enabled": False}))) is None
    assert C.retrac_methods(C.validate({"name": "x", "methods": {}})) is None
    with pytest.raises(C.ConfigError, match="retrac.tracin: 're' is not a diffusion-tracin"):
        C.validate(_raw(retrac={"tracin": "re"}))
    with pytest.raises(C.ConfigError, match="retrac.outliers.data.n_train"):
        C.validate(_raw(retrac={"outliers": {"data": {"n_train": "many"}}}))
    with pytest.raises(C.ConfigError, match="needs an outlier set"):
        C.validate(_raw(retrac={"outliers": {"data": {"dataset": "digits"}}}))


def test_outliers_join_training_and_validation_disjointly():
    from dabench.data import prepare

    data = C.outlier_data_config(C.validate(_raw(retrac={"outliers": {"data": {
        "dataset": "digits", "classes": [1], "n_train": 30, "n_validation": 6,
        "outliers": {"dataset": "mnist_subset", "classes": [0], "n": 5, "n_validation": 3}}}})))
    d = prepare(data, seed=0)
    assert d["train_images"].shape == (35, 1, 8, 8) and d["train_origin"].sum() == 5
    assert d["validation_images"].shape == (9, 1, 8, 8) and d["validation_origin"].sum() == 3
    assert (d["train_origin"][-5:] == 1).all() and (d["validation_origin"][-3:] == 1).all()
    assert not set(d["train_source"][-5:]) & set(d["validation_source"][-3:])
    assert (d["train_labels"][:30] == 1).all() and (d["train_labels"][30:] == 0).all()
