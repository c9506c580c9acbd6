"""The methods beyond the seed papers, each checked against a brute-force computation on a tiny
model: K-FAC / EK-FAC influence (an explicit GGN; curvlinops' own damped inverse), DAS / DAS0
(their formula by hand) and attribution by unlearning (an explicit one-step update)."""

import copy

import numpy as np
import pytest
import torch

from dabench import layout
from dabench import model as M
from dabench.features import example_noises, feature_timesteps
from dabench.io import save_npy, save_npz
from dabench.methods import build
from dabench.methods import kfac as KF
from dabench.methods.das import leverages, residual_weights
from dabench.methods.kernel import KernelSolver
from dabench.seeds import derive_seed

K, SEED = 2, 3


@pytest.fixture
def run(cfg, tmp_path):
    """A run folder with the ci UNet (random weights), 8 training and 3 validation images and
    tune subsets: what a model method's scoring job reads."""
    unet = M.build_unet(cfg["model"], 1, 8, init_seed=1)
    rng = np.random.default_rng(0)
    train = rng.uniform(-1, 1, (8, 1, 8, 8)).astype(np.float32)
    queries = rng.uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)
    M.save_model(tmp_path / layout.FULL_MODEL, unet,
                 {"steps": 1, **M.model_metadata(cfg["model"], cfg["train"], train.shape)})
    save_npz(tmp_path / layout.TRAIN_DATA, train_images=train)
    save_npz(tmp_path / layout.VALIDATION_DATA, images=queries)
    save_npy(tmp_path / layout.lds_subsets("tune"),
             np.stack([np.sort(rng.permutation(8)[:4]) for _ in range(4)]))
    save_npy(tmp_path / layout.lds_outputs("tune", "validation"), rng.normal(size=(4, 3)))
    return tmp_path, unet, M.build_scheduler(cfg["model"]), train, queries


def _inputs(method, root):
    return {k: root / v for k, v in method.inputs("validation").items()}


def _loss_gradient(unet, sched, x, split, i, params):
    """∇ of the loss averaged over the K fixed items of example i of ``split``, by autograd."""
    t = torch.as_tensor(feature_timesteps(K, "uniform", sched.config.num_train_timesteps))
    eps = example_noises(derive_seed(SEED, "feature-noise", split), np.array([i]), K, x.shape)[0]
    xt = M.add_noise(sched, torch.as_tensor(x)[None].expand(K, *x.shape), eps, t)
    loss = ((unet(xt, t).sample - eps) ** 2).flatten(1).mean(1).mean()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def _losses(unet, sched, images, split):
    """(N, K) denoising MSEs at the fixed items, one forward pass per item."""
    t_grid = feature_timesteps(K, "uniform", sched.config.num_train_timesteps)
    out = np.empty((len(images), K))
    with torch.no_grad():
        for i, x in enumerate(images):
            eps = example_noises(derive_seed(SEED, "feature-noise", split), np.array([i]), K,
                                 x.shape)[0]
            for j, t in enumerate(t_grid):
                tt = torch.tensor([int(t)])
                xt = M.add_noise(sched, torch.as_tensor(x)[None], eps[j:j + 1], tt)
                out[i, j] = float(((unet(xt, tt).sample - eps[j:j + 1]) ** 2).mean())
    return out


@pytest.mark.parametrize("kind", ["kfac", "ekfac"])
def test_kfac_of_one_linear_layer_is_its_exact_ggn(kind):
    """For one linear layer under an MSE loss, K-FAC (and EK-FAC) with the exact type-2 factor
    *is* the GGN: the eigenbasis reproduces (2 ⁄ ND) Σ_n J_nᵀJ_n formed from explicit Jacobians
    (up to curvlinops' normalisation, removed by comparing at relative damping)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    X, Y = torch.randn(10, 4), torch.randn(10, 3)
    data = [(X[:5], Y[:5]), (X[5:], Y[5:])]
    basis = KF.fit_eigenbasis(net, data, kind, "type-2", num_data=10, seed=0)
    names, qa, qb, s = basis.layers[0]
    assert names == ["0.weight", "0.bias"]
    # Explicit GGN in the layout of the joint matrix [W | b] (3 × 5), row-major.
    A = torch.cat([X, torch.ones(10, 1)], dim=1).double()
    G = torch.kron(torch.eye(3, dtype=torch.float64), A.T @ A) * 2 / (10 * 3)
    Q = torch.kron(qb.double(), qa.double())
    G_fit = Q @ torch.diag(s.double().reshape(-1)) @ Q.T
    torch.testing.assert_close(G_fit / G_fit.trace(), G / G.trace(), atol=1e-6, rtol=1e-5)
    # Scores at relative damping: coordinates ⁄ (s + λ) · coordinates = g_qᵀ(G + λI)⁻¹g_i.
    g = torch.randn(4, 15, dtype=torch.float64)
    blocks = {"0.weight": g[:, :15].reshape(4, 3, 5)[..., :4].reshape(4, 12),
              "0.bias": g.reshape(4, 3, 5)[..., 4]}
    c = torch.cat(basis.coordinates(blocks), 1).double()
    lam = 0.1 * basis.mean_eigenvalue()
    fast = (c[:2] / (basis.eigenvalues().double() + lam)) @ c[2:].T
    lam_explicit = 0.1 * (G.trace() / 15) * (G_fit.trace() / G.trace())
    brute = g[:2] @ torch.linalg.solve(G * (G_fit.trace() / G.trace())
                                       + lam_explicit * torch.eye(15, dtype=torch.float64), g[2:].T)
    torch.testing.assert_close(fast, brute, atol=1e-8, rtol=1e-5)


@pytest.mark.parametrize("name", ["kfac", "ekfac"])
def test_kfac_scores_match_curvlinops_damped_inverse(run, name):
    """The method's scores on a UNet (conv, linear and attention layers; weight and bias joint)
    equal g_qᵀ (G + λI)⁻¹ g_i with the gradients from autograd and (G + λI)⁻¹ applied by
    curvlinops' own inverse operator with exact damping — so the eigen-coordinates, the
    parameter naming and the damping are all right."""
    from curvlinops import EKFACLinearOperator, KFACInverseLinearOperator, KFACLinearOperator

    root, unet, sched, train, queries = run
    method = build({"method": name, "seed": SEED, "n_timesteps": K, "fit_batch": 4,
                    "lambdas": [1e-2]})
    scores = method.score(_inputs(method, root), "validation")
    meta = method.extra_metadata()
    assert scores.shape == (3, 8) and set(meta["tune_lds_by_damping"]) == {"0.01", "0.001"}

    unet2, _ = M.load_model(root / layout.FULL_MODEL)
    denoiser = KF._Denoiser(unet2)
    layers = KF.supported_layers(denoiser)
    named = dict(denoiser.named_parameters())
    params = [named[n] for _, names in layers for n in names]
    split = method.split(_inputs(method, root), "train")
    data = KF._FitData(split, sched, SEED, 1, 4, torch.device("cpu"))
    cls = EKFACLinearOperator if name == "ekfac" else KFACLinearOperator
    op = cls(denoiser, torch.nn.MSELoss(), params, data, fisher_type="mc", kfac_approx="expand",
             separate_weight_and_bias=False, check_deterministic=False, num_data=8,
             seed=derive_seed(SEED, "curvature-labels") % 2**31,
             batch_size_fn=lambda b: b["x"].shape[0])
    lam = 1e-3 * float(op.trace) / sum(p.numel() for p in params)
    assert lam == pytest.approx(meta["damping_absolute"], rel=1e-4)
    inverse = KFACInverseLinearOperator(op, damping=lam, use_exact_damping=True)
    g_train = torch.stack([_loss_gradient(unet2, sched, x, "train", i, params)
                           for i, x in enumerate(train)])
    brute = np.empty((3, 8))
    for q, x in enumerate(queries):
        v = inverse @ _loss_gradient(unet2, sched, x, "validation", q, params).detach()
        brute[q] = (g_train.detach() @ v).numpy()
    np.testing.assert_allclose(scores, brute, rtol=2e-3, atol=1e-4 * np.abs(brute).max())


def test_kfac_refuses_bad_parameters():
    with pytest.raises(ValueError, match="fisher"):
        build({"method": "kfac", "fisher": "empirical"})
    with pytest.raises(ValueError, match="damping"):
        build({"method": "ekfac", "damping": 0})
    with pytest.raises(ValueError, match="fit_passes"):
        build({"method": "kfac", "fit_passes": 0})


@pytest.mark.parametrize("n,k", [(6, 9), (9, 6)])          # dual and primal kernel solves
@pytest.mark.parametrize("name", ["das", "das0"])
def test_das_matches_its_formula(run, n, k, name):
    """DAS: the kernel score times r_i (√MSE per timestep, unit-normalised, averaged); DAS0 also
    ÷ (1 − h_ii)² — formed explicitly: a direct solve, MSEs from one forward pass per item."""
    root, unet, sched, train, _ = run
    train = np.concatenate([train] * 2)[:n]
    save_npz(root / layout.TRAIN_DATA, train_images=train)
    rng = np.random.default_rng(1)
    phi, q = rng.normal(size=(n, k)).astype(np.float32), rng.normal(size=(3, k)).astype(np.float32)
    method = build({"method": name, "seed": SEED, "n_timesteps": K, "lambdas": [0.1]})
    inputs = _inputs(method, root)
    assert str(inputs["train_features"]).endswith("mean_K2u_e1_sparse4096_unit/train.npy")
    save_npy(inputs["train_features"], phi)
    save_npy(inputs["query_features"], q)
    save_npy(inputs["tune_subsets"], np.stack([np.sort(rng.permutation(n)[:n // 2]) for _ in range(4)]))
    scores = method.score(inputs, "validation")

    P, Qm = phi.astype(np.float64), q.astype(np.float64)
    eig = np.linalg.eigvalsh(P.T @ P)
    lam = 0.1 * eig[eig > eig.max() * 1e-10].mean()
    H = np.linalg.inv(P.T @ P + lam * np.eye(k))
    root_mse = np.sqrt(_losses(unet, sched, train, "train"))
    r = (root_mse / np.linalg.norm(root_mse, axis=1, keepdims=True)).mean(1)
    expected = (Qm @ H @ P.T) * r[None]
    if name == "das0":
        h = np.einsum("ik,kl,il->i", P, H, P)
        expected = expected / (1 - h)[None] ** 2
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(residual_weights(root_mse ** 2), r, rtol=1e-6)
    solver = KernelSolver(phi)
    np.testing.assert_allclose(leverages(solver, 0.1), np.einsum("ik,kl,il->i", P, H, P),
                               rtol=1e-6)


def test_unlearning_matches_an_explicit_step(run):
    """τ_i = ℓ(x_i; θ') − ℓ(x_i; θ) with θ' = θ + η u ⁄ ‖u‖ ‖θ‖, u = (F + δ mean F)⁻¹∇ℓ(x): the
    Fisher from autograd per-example gradients, the step applied to a copy of the model."""
    root, unet, sched, train, queries = run
    method = build({"method": "unlearning", "seed": SEED, "n_timesteps": K, "step": 0.05})
    scores = method.score(_inputs(method, root), "validation")

    params = list(unet.parameters())
    g_train = torch.stack([_loss_gradient(unet, sched, x, "train", i, params).detach()
                           for i, x in enumerate(train)]).double()
    fisher = (g_train ** 2).mean(0)
    damp = fisher + 0.1 * fisher.mean()
    theta = torch.cat([p.detach().reshape(-1) for p in params]).double()
    base = _losses(unet, sched, train, "train").mean(1)
    for q, x in enumerate(queries):
        u = _loss_gradient(unet, sched, x, "validation", q, params).detach().double() / damp
        delta = 0.05 * u / u.norm() * theta.norm()
        moved = copy.deepcopy(unet)
        torch.nn.utils.vector_to_parameters((theta + delta).float(), moved.parameters())
        expected = _losses(moved, sched, train, "train").mean(1) - base
        np.testing.assert_allclose(scores[q], expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())
    # The step is a real one: it moves the training losses.
    assert np.isfinite(scores).all() and np.abs(scores).max() > 0


def test_model_methods_declare_a_gpu_job_and_its_work(cfg):
    """Model methods run in compute_model_scores, a GPU rule sized by their declared work."""
    from dabench import resources as R

    config = copy.deepcopy(cfg)
    config["methods"].update({"ekfac": {"method": "ekfac", "seed": 0},
                              "unlearning": {"method": "unlearning", "seed": 0}})
    assert R.is_gpu_rule("compute_model_scores", config)
    need = R.estimate("compute_model_scores", config, {"method_id": "unlearning"})
    kinds = {w[0] for w in need.work}
    assert {"gradient_vmap", "forward", "linalg"} <= kinds or {"gradient_loop", "forward"} <= kinds
    ekfac = R.estimate("compute_model_scores", config, {"method_id": "ekfac"})
    assert any(w[0] == "train" for w in ekfac.work) and ekfac.gpu


def test_datainf_matches_its_closed_form(run):
    """DataInf: per layer l, q_lᵀ [(1 ⁄ nλ_l) Σ_i (I − g_il g_ilᵀ ⁄ (λ_l + ‖g_il‖²))] g_jl summed over
    layers, the d_l × d_l matrices formed explicitly from autograd gradients; λ_l = 0.1 × the
    layer's mean squared gradient entry."""
    root, unet, sched, train, queries = run
    method = build({"method": "datainf", "seed": SEED, "n_timesteps": K})
    scores = method.score(_inputs(method, root), "validation")

    named = list(unet.named_parameters())
    params = [p for _, p in named]
    g = torch.stack([_loss_gradient(unet, sched, x, "train", i, params).detach()
                     for i, x in enumerate(train)]).double()
    q = torch.stack([_loss_gradient(unet, sched, x, "validation", i, params).detach()
                     for i, x in enumerate(queries)]).double()
    layers, start = {}, 0
    for name, p in named:
        layers.setdefault(name.rsplit(".", 1)[0], []).extend(range(start, start + p.numel()))
        start += p.numel()
    expected = torch.zeros(3, 8, dtype=torch.float64)
    n = len(train)
    for cols in layers.values():
        gl, ql = g[:, cols], q[:, cols]
        lam = 0.1 * gl.pow(2).mean()
        eye = torch.eye(len(cols), dtype=torch.float64)
        inverse = sum(eye - torch.outer(gi, gi) / (lam + gi @ gi) for gi in gl) / (n * lam)
        expected += ql @ inverse @ gl.T
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-3,
                               atol=1e-4 * float(expected.abs().max()))


def test_loss_self_influence_is_the_mean_loss_and_scores_nothing(run):
    root, unet, sched, train, _ = run
    method = build({"method": "loss", "seed": SEED, "n_timesteps": K})
    values = method.self_influence({k: root / v for k, v in method.self_inputs().items()})
    np.testing.assert_allclose(values, _losses(unet, sched, train, "train").mean(1), rtol=1e-4)
    assert method.query_sets == () and method.has_self_influence
    with pytest.raises(ValueError, match="self-influence only"):
        method.inputs("validation")
