"""The counterfactual at a sampling step (D-TRAK Appendix E): resuming a trajectory, the step of a
timestep, and per-step Journey-TRAK scores checked against a brute-force computation."""

import json

import numpy as np
import pytest
import torch

from dabench import journey_counterfactual as J
from dabench import model as M
from dabench.features import FeatureSpec, example_noises, featurize, projection_seed
from dabench.io import save_npz
from dabench.sampling import generate
from dabench.seeds import derive_seed


@pytest.fixture
def tiny(cfg):
    return M.build_unet(cfg["model"], 1, 8, init_seed=0), M.build_scheduler(cfg["model"])


def test_resuming_the_trajectory_with_the_same_model_gives_the_same_sample(tiny):
    """DDIM is deterministic: state s of a trajectory, resumed at step s with the model that made
    it, ends in the original sample (for every s) — so any difference the counterfactual measures
    comes from the retrained model alone."""
    unet, sched = tiny
    seeds = np.array([11, 12, 13])
    whole = generate(unet, sched.config, seeds, inference_steps=10)
    for s in (1, 4, 9):
        again = generate(unet, sched.config, seeds, inference_steps=10, keep_trajectory=False,
                         start_step=s, start_states=whole["trajectory"][s])
        np.testing.assert_allclose(again["images"], whole["images"], atol=1e-5)
    # Another state at step 4 leads elsewhere: the start really is used.
    other = generate(unet, sched.config, seeds, inference_steps=10, keep_trajectory=False,
                     start_step=4, start_states=whole["trajectory"][5])
    assert not np.allclose(other["images"], whole["images"], atol=1e-3)
    with pytest.raises(ValueError, match="needs start_states"):
        generate(unet, sched.config, seeds, inference_steps=10, start_step=3)


def test_the_step_of_a_timestep_is_the_nearest_sampling_step():
    t = np.array([900, 800, 700, 600, 500, 400, 300, 200, 100, 0, -1])
    assert J.step_of(t, 400) == 5 and J.step_of(t, 349) == 6 and J.step_of(t, 350) == 5
    assert J.step_of(t, 0) == 9          # never the final state (-1)


def test_per_step_journey_trak_scores_match_brute_force(tiny, cfg, tmp_path):
    """Per-step Journey-TRAK at timestep τ: x̂₀ from state s (the DDIM clean estimate, by its
    formula, clipped as the sampler clips it), the mean over R noises of autograd gradients of ℓ(x̂₀, t_s, ε_r), then the TRAK
    kernel solve with the journey-trak method's relative λ — all formed explicitly here."""
    unet, sched = tiny
    n_train, R, seed, lam = 6, 3, 5, 0.1
    rng = np.random.default_rng(0)
    train = rng.uniform(-1, 1, (n_train, 1, 8, 8)).astype(np.float32)
    spec = FeatureSpec("loss", 2, projection="none", k=0)
    featurize(unet, sched, train, spec, 1, projection_seed(seed), tmp_path / "train.npy")
    phi = np.load(tmp_path / "train.npy").astype(np.float64)
    gen = generate(unet, sched.config, np.array([21, 22, 23]), inference_steps=10)
    np.save(tmp_path / "trajectory.npy", gen["trajectory"])
    save_npz(tmp_path / "samples.npz", images=gen["images"], seeds=gen["seeds"],
             trajectory_timesteps=gen["trajectory_timesteps"])
    M.save_model(tmp_path / "model.safetensors", unet,
                 {"steps": 1, **M.model_metadata(cfg["model"], cfg["train"], train.shape)})
    (tmp_path / "side.json").write_text(json.dumps(
        {"params": {"projection": "none", "k": 0}, "lambda_relative": lam}))
    queries, timesteps = [0, 2], [400, 300]
    J.write_step_scores(tmp_path / "model.safetensors", cfg["model"], tmp_path / "samples.npz",
                        tmp_path / "trajectory.npy", tmp_path / "train.npy",
                        tmp_path / "side.json", queries, timesteps, R, seed,
                        tmp_path / "scores.npz")
    out = np.load(tmp_path / "scores.npz")
    assert out["scores"].shape == (2, 2, n_train)
    # Φ(ΦᵀΦ + λI)⁻¹g = (ΦΦᵀ + λI)⁻¹Φg: the N×N form (p is too large for a p×p inverse).
    gram = phi @ phi.T
    eig = np.linalg.eigvalsh(gram)
    scale = eig[eig > eig.max() * 1e-10].mean()
    solve = np.linalg.inv(gram + lam * scale * np.eye(n_train))
    alphas = torch.as_tensor(sched.alphas_cumprod)
    for a, tau in enumerate(timesteps):
        s = J.step_of(gen["trajectory_timesteps"], tau)
        t = int(gen["trajectory_timesteps"][s])
        assert out["steps"][a] == s and abs(t - tau) <= 50
        for b, q in enumerate(queries):
            x_s = torch.as_tensor(gen["trajectory"][s, q:q + 1])
            with torch.no_grad():
                eps = unet(x_s, torch.tensor([t])).sample
            x0 = (x_s - (1 - alphas[t]).sqrt() * eps) / alphas[t].sqrt()
            assert sched.config.clip_sample          # DDIM clips its clean estimate to [-1, 1]
            x0 = x0.clamp(-1, 1)
            noises = example_noises(derive_seed(seed, "journey-step-noise", tau), np.array([b]),
                                    R, (1, 8, 8))[0]
            grads = []
            for r in range(R):
                unet.zero_grad()
                M.per_example_loss(unet, sched, x0, torch.tensor([t]), noises[r:r + 1]).sum().backward()
                grads.append(torch.cat([p.grad.reshape(-1) for p in unet.parameters()]))
            g = torch.stack(grads).mean(0).double().numpy()
            expected = solve @ (phi @ g)
            np.testing.assert_allclose(out["scores"][a, b], expected, rtol=2e-3,
                                       atol=2e-3 * np.abs(expected).max())
    # The two timesteps' attributions differ (Journey-TRAK attributes each step on its own).
    assert not np.allclose(out["scores"][0], out["scores"][1])
