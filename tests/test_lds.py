import numpy as np
import torch
import pytest
from scipy.stats import spearmanr

from dabench import lds, metrics


def test_spearman_rows_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (6, 9)).astype(float)   # many ties
    b = rng.normal(size=(6, 9))
    ours = metrics.spearman_rows(a, b)
    for q in range(6):
        assert ours[q] == pytest.approx(spearmanr(a[q], b[q]).statistic)
    assert np.isnan(metrics.spearman_rows(np.ones((1, 5)), b[:1, :5])[0])


def test_lds_matches_brute_force():
    rng = np.random.default_rng(1)
    n, m, q = 12, 8, 5
    scores = rng.normal(size=(q, n))
    subsets = np.stack([np.sort(rng.choice(n, 6, replace=False)) for _ in range(m)])
    outputs = rng.normal(size=(m, q))
    ours = metrics.lds_per_query(scores, subsets, outputs)
    for i in range(q):
        g = [sum(scores[i, k] for k in subsets[j]) for j in range(m)]
        assert ours[i] == pytest.approx(spearmanr(g, [-outputs[j, i] for j in range(m)]).statistic)


def test_lds_is_one_for_a_perfect_additive_model():
    rng = np.random.default_rng(2)
    tau = rng.normal(size=(3, 10))
    subsets = np.stack([np.sort(rng.choice(10, 5, replace=False)) for _ in range(7)])
    outputs = -(tau @ metrics.indicator(subsets, 10).T).T     # f = -Σ τ: helpful examples lower loss
    assert np.allclose(metrics.lds_per_query(tau, subsets, outputs), 1.0)


def test_out_of_range_subset_is_named():
    with pytest.raises(ValueError, match=r"subset index 10 is out of range \[0, 10\)"):
        metrics.lds_per_query(np.zeros((1, 10)), np.array([[1, 10]]), np.zeros((1, 1)))


def test_bootstrap_mean_and_interval():
    values = np.r_[np.linspace(0, 1, 50), np.nan]
    mean, low, high, n = metrics.bootstrap_mean_ci(values, 2000, 0.95, seed=0)
    assert n == 50 and mean == pytest.approx(0.5)
    assert low < mean < high and high - low == pytest.approx(2 * 1.96 * values[:50].std() / np.sqrt(50), rel=0.15)
    assert metrics.bootstrap_mean_ci(values, 2000, 0.95, seed=0) == (mean, low, high, n)


def test_ceiling_matches_brute_force():
    rng = np.random.default_rng(3)
    per_seed = rng.normal(size=(3, 7, 4))
    ours = metrics.ceiling_per_query(per_seed)
    for q in range(4):
        vals = [spearmanr(per_seed[r, :, q], per_seed[[s for s in range(3) if s != r], :, q].mean(0)).statistic
                for r in range(3)]
        assert ours[q] == pytest.approx(np.mean(vals))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        metrics.ceiling_per_query(per_seed[:1])


def test_subset_families_are_seeded_sized_and_disjoint():
    fam = lds.draw_subsets(40, 0.5, 5, 9, seed=0)
    assert fam["tune"].shape == (5, 20) and fam["test"].shape == (9, 20)
    rows = {r.tobytes() for r in np.vstack([fam["tune"], fam["test"]])}
    assert len(rows) == 14
    again = lds.draw_subsets(40, 0.5, 5, 9, seed=0)
    assert np.array_equal(fam["test"], again["test"])
    assert all(len(set(r)) == 20 for r in fam["test"])


def test_chunks_cover_every_retrain_once():
    items = [it for c in range(lds.n_chunks(7, 3, 4)) for it in lds.chunk_items(7, 3, 4, c)]
    assert items == lds.retrain_items(7, 3) and len(items) == 21
    with pytest.raises(ValueError, match="chunk 6 does not exist"):
        lds.chunk_items(7, 3, 4, 6)


def test_collect_outputs_requires_every_retrain():
    chunk = {"subset": np.array([0, 1]), "seed": np.array([0, 0]),
             "outputs.validation": np.ones((2, 3))}
    out = lds.collect_outputs([chunk], 2, 1, "validation")
    assert out.shape == (1, 2, 3)
    with pytest.raises(ValueError, match="subset 0, seed 1 is missing"):
        lds.collect_outputs([chunk], 2, 2, "validation")


def test_retrain_job_resumes_after_a_kill(cfg, tmp_path):
    from dabench import config

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (16, 1, 8, 8)).astype(np.float32)
    subsets = lds.draw_subsets(16, 0.5, 1, 3, seed=0)["test"]
    recipe = {**config.training_recipe(cfg, "lds"), "steps": 6, "batch_size": 4}
    queries = {"validation": images[:3]}
    args = (images, subsets, [(0, 0), (1, 0)], cfg["model"], recipe, {"timesteps": 4, "noises": 1},
            queries, 0, tmp_path / "partial")
    full = lds.run_retrains(*args, progress=False)
    done = sorted((tmp_path / "partial").glob("subset*.npz"))
    assert len(done) == 2
    # Simulate a job killed after its first retrain: drop the second record, keep the first.
    done[1].unlink()
    stamp = done[0].stat().st_mtime_ns
    again = lds.run_retrains(*args, progress=False)
    assert done[0].stat().st_mtime_ns == stamp            # first retrain not redone
    assert np.array_equal(again["outputs.validation"], full["outputs.validation"])
    assert list(again["subset"]) == [0, 1]


def test_a_rerun_restores_models_its_cleared_folder_lost(cfg, tmp_path):
    """Snakemake clears a job's output folder before re-running it. Retrains the killed job had
    finished keep their weights in the partial folder, so the re-run writes every model file
    again without retraining (a featurize job of an ensemble member once found it missing)."""
    from dabench import config
    from dabench.io import load_tensors

    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (16, 1, 8, 8)).astype(np.float32)
    subsets = lds.draw_subsets(16, 0.5, 1, 3, seed=0)["test"]
    recipe = {**config.training_recipe(cfg, "lds"), "steps": 6, "batch_size": 4}
    models = tmp_path / "models"
    args = (images, subsets, [(0, 0), (1, 0)], cfg["model"], recipe, {"timesteps": 4, "noises": 1},
            {"validation": images[:3]}, 0, tmp_path / "partial", models)
    first = lds.run_retrains(*args, progress=False)
    weights = {p.name: load_tensors(p)[0] for p in models.glob("*.safetensors")}
    assert sorted(weights) == ["subset0000_seed0.safetensors", "subset0001_seed0.safetensors"]
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "partial").glob("subset*.npz")}
    for p in models.iterdir():
        p.unlink()
    again = lds.run_retrains(*args, progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())     # nothing retrained
    assert np.array_equal(again["outputs.validation"], first["outputs.validation"])
    for name, tensors in weights.items():
        restored, meta = load_tensors(models / name)
        assert all(torch.equal(restored[k], v) for k, v in tensors.items())
        assert meta["members"] == subsets[int(name[6:10])].tolist()
