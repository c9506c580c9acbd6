"""Issue-6 methods against brute force: Empirical influence, Datamodels, the TRAK ensembles,
Journey-TRAK's features, the embedders and the counterfactual's pieces; and the config errors
that guard them."""
import numpy as np
import pytest
import torch

from dabench import config as C
from dabench import counterfactual as CF
from dabench import features as F
from dabench import layout
from dabench import methods
from dabench import model as M
from dabench.io import save_npy, save_npz
from dabench.lds import draw_family
from dabench.metrics import lds_per_query


def _family(n_train=7, m=6, q=3, seed=0):
    rng = np.random.default_rng(seed)
    subsets = np.stack([np.sort(rng.choice(n_train, n_train // 2, replace=False)) for _ in range(m)])
    outputs = rng.uniform(0.5, 1.5, (m, q)).astype(np.float32)
    return subsets, outputs


def test_empirical_influence_is_the_difference_in_means_by_brute_force():
    from dabench.methods.retraining import empirical_influence

    subsets, outputs = _family()
    n = 7
    got = empirical_influence(subsets, outputs, n)
    want = np.zeros((outputs.shape[1], n))
    for x in range(outputs.shape[1]):
        for i in range(n):
            inside = [-outputs[j, x] for j in range(len(subsets)) if i in subsets[j]]
            outside = [-outputs[j, x] for j in range(len(subsets)) if i not in subsets[j]]
            if inside and outside:
                want[x, i] = np.mean(inside) - np.mean(outside)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # An example in every model (no contrast) gets 0.
    assert np.all(empirical_influence(np.array([[0, 1], [0, 2]]), outputs[:2], 3)[:, 0] == 0)


def test_datamodel_ridge_matches_sklearn():
    from sklearn.linear_model import Ridge

    from dabench.metrics import indicator
    from dabench.methods.retraining import RidgeDatamodel

    subsets, outputs = _family(n_train=9, m=7)
    ridge = RidgeDatamodel(subsets, outputs, 9)
    for rel in (0.01, 1.0):
        got = ridge.weights(rel)
        fit = Ridge(alpha=rel * ridge.scale, fit_intercept=True).fit(indicator(subsets, 9).astype(float),
                                                                    -outputs.astype(np.float64))
        np.testing.assert_allclose(got, fit.coef_, rtol=1e-6, atol=1e-9)


def _write_family(root, subsets, outputs, tune_subsets, tune_outputs, n_train, qs="validation"):
    save_npy(root / layout.lds_subsets(layout.DATAMODEL), subsets)
    save_npy(root / layout.lds_outputs(layout.DATAMODEL, qs), outputs)
    save_npy(root / layout.lds_subsets("tune"), tune_subsets)
    save_npy(root / layout.lds_outputs("tune", qs), tune_outputs)
    save_npz(root / layout.TRAIN_DATA, train_images=np.zeros((n_train, 1, 2, 2), np.float32))


def _inputs(root, method, qs="validation"):
    return {k: root / v for k, v in method.inputs(qs).items()}


def test_datamodel_chooses_lambda_on_the_tune_subsets_and_uses_the_first_m_models(tmp_path):
    from dabench.methods.retraining import RidgeDatamodel

    subsets, outputs = _family(n_train=9, m=8)
    tune_subsets, tune_outputs = _family(n_train=9, m=5, seed=1)
    _write_family(tmp_path, subsets, outputs, tune_subsets, tune_outputs, 9)
    dm = methods.build({"method": "datamodel", "n_models": 6})
    scores = dm.score(_inputs(tmp_path, dm), "validation")
    ridge = RidgeDatamodel(subsets[:6], outputs[:6], 9)
    tune = {lam: np.nanmean(lds_per_query(ridge.weights(lam), tune_subsets, tune_outputs))
            for lam in dm.params["lambdas"]}
    best = max(tune, key=tune.get)
    assert dm.extra_metadata()["lambda_relative"] == best
    np.testing.assert_allclose(scores, ridge.weights(best))
    ei = methods.build({"method": "empirical-influence", "n_models": 9})
    with pytest.raises(ValueError, match="needs 9 retrained models"):
        ei.score(_inputs(tmp_path, ei), "validation")


def test_trak_ensemble_averages_the_members_trak_scores(tmp_path):
    rng = np.random.default_rng(3)
    n, k, q, s = 6, 4, 2, 3
    tune_subsets, tune_outputs = _family(n_train=n, m=4, q=q, seed=2)
    save_npy(tmp_path / layout.lds_subsets("tune"), tune_subsets)
    save_npy(tmp_path / layout.lds_outputs("tune", "validation"), tune_outputs)
    ens = methods.build({"method": "trak-ensemble", "n_models": s, "k": k, "lambdas": [0.1]})
    members = []
    for j in range(s):
        phi, queries = rng.normal(size=(n, k)), rng.normal(size=(q, k))
        save_npy(tmp_path / layout.features(layout.member_name(j), ens.spec.id, "train"), phi.astype(np.float32))
        save_npy(tmp_path / layout.features(layout.member_name(j), ens.spec.id, "validation"), queries.astype(np.float32))
        members.append((phi.astype(np.float32).astype(np.float64), queries.astype(np.float32).astype(np.float64)))
    got = ens.score(_inputs(tmp_path, ens), "validation")
    want = 0
    for phi, queries in members:
        gram = phi.T @ phi
        nonzero = np.linalg.eigvalsh(gram)
        lam = 0.1 * nonzero.sum() / (nonzero > nonzero.max() * 1e-10).sum()
        want = want + queries @ np.linalg.solve(gram + lam * np.eye(k), phi.T) / s
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert ens.inputs("validation")["train_features_2"] == "features/dm0002/loss_K10u_e1_sparse4/train.npy"
    assert ens.extra_metadata()["n_models"] == s


def test_journey_features_equal_the_mean_gradient_along_the_trajectory(cfg, tmp_path):
    """Journey-TRAK's query feature by brute force: x̂₀ from each DDIM state by the formula, a
    fresh noise per step, autograd per (sample, step), averaged; no projection."""
    from dabench.sampling import generate, journey_points

    unet = M.build_unet(cfg["model"], 1, 8, init_seed=0)
    sched = M.build_scheduler(cfg["model"])
    gen = generate(unet, sched.config, np.array([11, 12]), inference_steps=3)
    points, steps = journey_points(unet, sched.config, gen["trajectory"], gen["trajectory_timesteps"])
    assert points.shape == (2, 3, 1, 8, 8) and steps.tolist() == gen["trajectory_timesteps"][:-1].tolist()
    spec = F.FeatureSpec("loss", schedule="journey", projection="none", k=0)
    assert spec.id == "loss_journey_e1_none" and F.FeatureSpec.parse(spec.id) == spec
    F.featurize(unet, sched, points, spec, noise_seed=5, projection_seed=0,
                out_path=tmp_path / "generation.npy", journey_timesteps=steps)
    feats = np.load(tmp_path / "generation.npy")
    abar = sched.alphas_cumprod
    for i in range(2):
        noises = F.example_noises(5, np.array([i]), 3, (1, 8, 8))[0]
        total = 0
        for s, t in enumerate(steps):
            x = torch.as_tensor(gen["trajectory"][s, i:i + 1])
            with torch.no_grad():
                eps = unet(x, int(t)).sample
            x0 = ((x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()).clamp(-1, 1)
            np.testing.assert_allclose(points[i, s], x0[0].numpy(), atol=1e-5)
            unet.zero_grad()
            xt = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * noises[s:s + 1]
            loss = ((unet(xt, int(t)).sample - noises[s:s + 1]) ** 2).mean()
            loss.backward()
            total = total + torch.cat([p.grad.flatten() for p in unet.parameters()]) / 3
        np.testing.assert_allclose(feats[i], total.numpy(), rtol=2e-3, atol=1e-6)


def test_journey_trak_attributes_generated_queries_only(cfg):
    jt = methods.build({"method": "journey-trak", "n_timesteps": 10})
    assert jt.covers("generation") and not jt.covers("validation")
    assert jt.inputs("generation")["query_features"] == "features/full/loss_journey_e1_sparse4096/generation.npy"
    assert jt.inputs("generation")["train_features"] == "features/full/loss_K10u_e1_sparse4096/train.npy"
    bad = dict(cfg, methods={"j": {"method": "journey-trak"}}, lds=dict(cfg["lds"], query_sets=["validation"]))
    with pytest.raises(C.ConfigError, match="methods.j: attributes only generation"):
        C.validate(bad)


def test_classifier_embedder_is_trained_deterministic_and_penultimate(tmp_path):
    from sklearn.datasets import load_digits

    from dabench.embedding import ClassifierEmbedder, write_classifier

    digits = load_digits()
    x = (digits.images[:300, None] / 8 - 1).astype(np.float32)
    save_npz(tmp_path / "train.npz", train_images=x[:200], labels=digits.target[:200])
    save_npz(tmp_path / "val.npz", images=x[200:], labels=digits.target[200:300])
    cfg = {"kind": "classifier", "width": 8, "steps": 150, "lr": 0.01, "path": None}
    metas = [write_classifier(tmp_path / "train.npz", tmp_path / "val.npz", cfg, 0,
                              tmp_path / f"c{i}.safetensors") for i in range(2)]
    assert metas[0]["validation_accuracy"] == metas[1]["validation_accuracy"] > 0.5  # 10 classes
    emb = [ClassifierEmbedder(tmp_path / f"c{i}.safetensors").embed(x[:5]) for i in range(2)]
    assert emb[0].shape == (5, 32) and np.array_equal(emb[0], emb[1])


def test_clip_embedder_reads_a_local_clip_model(tiny_clip):
    """A tiny randomly initialised CLIPModel saved the way a real one is: loaded from the folder,
    grey 8×8 images resized, normalised and embedded with get_image_features."""
    from dabench.embedding import CLIP_MEAN, CLIP_STD, ClipEmbedder, load_embedder

    folder, model = tiny_clip
    images = np.random.default_rng(0).uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)
    emb = load_embedder({"kind": "clip", "path": str(folder)}).embed(images)
    x = torch.nn.functional.interpolate(torch.as_tensor((images + 1) / 2).repeat(1, 3, 1, 1),
                                        size=(16, 16), mode="bicubic").clamp(0, 1)
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        want = model.get_image_features(pixel_values=x)
    want = want if isinstance(want, torch.Tensor) else want.pooler_output
    assert emb.shape == (3, 8)
    np.testing.assert_allclose(emb, want.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="embedder.path"):
        ClipEmbedder(str(folder.parent / "missing"))


def test_embedding_method_takes_the_runs_embedder(cfg):
    c = C.validate(dict(cfg, methods={"e": {"method": "embedding", "similarity": "cosine"}},
                        embedder={"kind": "clip", "path": "x"}, counterfactual={"enabled": False},
                        shapley={"enabled": False}))
    m = methods.build(c["methods"]["e"])
    assert m.label == "CLIP similarity" and m.inputs("validation")["train"] == "embeddings/clip/train.npy"
    with pytest.raises(C.ConfigError, match="embedder 'clip' is not the run's embedder.kind 'classifier'"):
        C.validate(dict(cfg, methods={"e": {"method": "embedding", "embedder": "clip"}}))


def test_removal_sets_by_hand():
    scores = np.array([0.1, 3.0, -1.0, 3.0, 2.0])
    assert CF.removal_set(scores, 3, 5, 0, 0).tolist() == [1, 3, 4]
    r1, r2 = CF.removal_set(None, 2, 5, 0, 7), CF.removal_set(None, 2, 5, 0, 7)
    assert np.array_equal(r1, r2) and len(set(r1.tolist())) == 2
    assert CF.n_removed(400, 0.2) == 80 and CF.n_removed(48, 0.2) == 10
    with pytest.raises(ValueError, match="n_queries=9 exceeds the 8"):
        CF.choose_queries(8, 9, 0)
    assert CF.choose_queries(64, 4, 0) == CF.choose_queries(64, 4, 0)


def test_counterfactual_distances_and_medians_by_hand():
    a = np.zeros((1, 1, 2, 2), np.float32)
    b = np.ones((1, 1, 2, 2), np.float32)      # [0, 1] scale: 0.5 → 1.0, four pixels
    assert CF.pixel_l2(a, b)[0] == pytest.approx(1.0)
    results = {"m": [{"original": a[0], "counterfactual": b[0] * s, "query": q, "k": 2,
                      "n_positive_removed": 2, "seconds": 1.0} for q, s in enumerate((0.0, 1.0, 2.0))]}
    per_query, summary = CF.summarize(results, lambda im: im.reshape(len(im), -1) + 1)
    assert per_query["l2"].tolist() == pytest.approx([0.0, 1.0, 2.0])
    assert summary.loc[0, "median_l2"] == pytest.approx(1.0) and summary.loc[0, "n_queries"] == 3
    # Embedding of the original is all ones; of 1·b it is all twos: cosine 1.
    assert per_query["cosine"].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_datamodel_family_is_apart_from_the_lds_subsets():
    tune = np.array([[0, 1], [2, 3]])
    rows = draw_family(4, 0.5, 4, 0, "datamodel-subsets", [tune])
    keys = {r.tobytes() for r in rows.astype(np.int64)}
    assert len(keys) == 4 and not keys & {r.astype(np.int64).tobytes() for r in tune}
    with pytest.raises(ValueError, match="cannot draw 5 further distinct subsets"):
        draw_family(4, 0.5, 5, 0, "datamodel-subsets", [tune])


def test_retraining_methods_check_the_family_size(cfg):
    for name in ("empirical-influence", "trak-ensemble"):
        with pytest.raises(C.ConfigError, match=f"methods.x: {name} needs 99 retrained models but "
                                                "lds.datamodel.n_subsets is 4"):
            C.validate(dict(cfg, methods={"x": {"method": name, "n_models": 99}}))
    with pytest.raises(C.ConfigError, match="counterfactual.methods: 'nope' not among the method ids"):
        C.validate(dict(cfg, counterfactual={"enabled": True, "methods": ["nope"]}))
    swept = methods.expand({"ei": {"method": "empirical-influence", "n_models": [4, 8]}})
    assert set(swept) == {"ei-M4", "ei-M8"}
