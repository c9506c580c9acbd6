import numpy as np
import pytest

from dabench import methods
from dabench.config import ConfigError
from dabench.methods.pixel import similarity


def test_pixel_dot_and_cosine_by_hand():
    q = np.array([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])          # 2 queries, 1x1x2 "images"
    t = np.array([[[[2.0, 0.0]]], [[[0.0, 3.0]]], [[[1.0, 1.0]]]])
    assert np.allclose(similarity(q, t, "dot"), [[2, 0, 1], [2, 3, 2]])
    s = 1 / np.sqrt(2)
    assert np.allclose(similarity(q, t, "cosine"), [[1, 0, s], [s, s, 1]], atol=1e-6)


def test_registry_builds_and_refuses():
    m = methods.build({"method": "pixel", "similarity": "cosine"})
    assert m.variant == "cosine" and m.label == "Raw pixel"
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        methods.build({"method": "nope"})
    with pytest.raises(ValueError, match="similarity must be"):
        methods.build({"method": "pixel", "similarity": "l2"})


def test_methods_declare_run_relative_inputs():
    m = methods.build({"method": "pixel"})
    assert m.inputs("generation") == {"train": "data/train.npz", "queries": "generation/samples.npz"}
    with pytest.raises(ValueError, match="unknown query set"):
        m.inputs("test")


@pytest.fixture
def registry_snapshot():
    """Methods and families defined by a test leave the registry as it was."""
    from dabench.methods.base import FAMILIES

    saved, families = dict(methods.REGISTRY), dict(FAMILIES)
    yield
    methods.REGISTRY.clear()
    methods.REGISTRY.update(saved)
    FAMILIES.clear()
    FAMILIES.update(families)


def test_a_new_method_registers_itself_by_being_defined(registry_snapshot, tmp_path):
    """A class with inputs and score is registered by its definition alone: the config validates
    it with its defaults and the built method scores queries against the training set."""
    from dabench import config, layout
    from dabench.io import load_npz, save_npz

    class Constant(methods.AttributionMethod):
        name = "constant"
        label = "Constant"
        family = "similarity"
        defaults = {"value": 1.0}

        def inputs(self, query_set):
            return {"train": layout.TRAIN_DATA, "queries": layout.query_file(query_set)}

        def score(self, inputs, query_set):
            n = len(load_npz(inputs["train"])["train_images"])
            q = len(load_npz(inputs["queries"])["images"])
            return np.full((q, n), self.params["value"], dtype=np.float32)

    assert methods.REGISTRY["constant"] is Constant
    c = config.validate({"methods": {"c": {"method": "constant", "value": 2.5}}})
    assert c["methods"]["c"] == {"method": "constant", "value": 2.5}
    with pytest.raises(ConfigError, match="unknown method"):
        config.validate({"methods": {"c": {"method": "constant-typo"}}})
    save_npz(tmp_path / "train.npz", train_images=np.zeros((4, 1, 2, 2), np.float32))
    save_npz(tmp_path / "q.npz", images=np.zeros((3, 1, 2, 2), np.float32))
    m = methods.build(c["methods"]["c"])
    assert set(m.inputs("validation")) == {"train", "queries"}
    scores = m.score({"train": tmp_path / "train.npz", "queries": tmp_path / "q.npz"}, "validation")
    assert scores.shape == (3, 4) and (scores == 2.5).all()


def test_the_readme_example_method_works(repo, tmp_path, registry_snapshot):
    """The worked example of README.md 'Adding a method' runs as printed."""
    import re

    from dabench.io import save_npz

    text = (repo / "README.md").read_text()
    code = re.search(r"```python\n# dabench/methods/pixel_l2.py\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    cls = namespace["PixelL2"]
    assert methods.REGISTRY[cls.name] is cls
    rng = np.random.default_rng(0)
    train, queries = rng.normal(size=(5, 1, 2, 2)), rng.normal(size=(3, 1, 2, 2))
    save_npz(tmp_path / "train.npz", train_images=train)
    save_npz(tmp_path / "q.npz", images=queries)
    m = methods.build({"method": "pixel-l2"})
    scores = m.score({"train": tmp_path / "train.npz", "queries": tmp_path / "q.npz"}, "validation")
    assert scores.shape == (3, 5)
    assert scores[1, 2] == pytest.approx(-((queries[1] - train[2]) ** 2).sum())


def test_a_method_name_is_registered_once_and_abstract_methods_are_enforced(registry_snapshot):
    with pytest.raises(TypeError, match="'pixel' .* already registered by dabench.methods.pixel"):
        class Impostor(methods.AttributionMethod):
            name = "pixel"

            def inputs(self, query_set):
                return {}

            def score(self, inputs, query_set):
                return np.zeros((1, 1))

    class NoScore(methods.AttributionMethod):
        name = "no-score"

        def inputs(self, query_set):
            return {}

    with pytest.raises(TypeError, match="abstract"):
        NoScore()


def test_a_new_family_declares_its_label_and_colour(registry_snapshot):
    from dabench.figures import colour
    from dabench.methods.base import FALLBACK_COLOUR, family_style

    class Far(methods.AttributionMethod):
        name = "far"
        family = "distance"
        family_label = "distance-based"
        colour = "#e377c2"

        def inputs(self, query_set):
            return {}

        def score(self, inputs, query_set):
            return np.zeros((1, 1))

    assert family_style("distance").label == "distance-based" and colour("distance") == "#e377c2"
    assert colour("trak") == "#d62728" and colour("undeclared") == FALLBACK_COLOUR


def test_capabilities_are_declared_not_guessed():
    def built(entry):
        return methods.build(entry)

    assert built({"method": "trak"}).tunes_lambda and built({"method": "datamodel"}).tunes_lambda
    assert not built({"method": "gradient"}).tunes_lambda
    assert not built({"method": "empirical-influence"}).tunes_lambda
    assert built({"method": "tracincp"}).has_self_influence
    assert not built({"method": "gas"}).has_self_influence
    assert all(built({"method": m}).uses_checkpoints
               for m in ("tracincp", "gas", "diffusion-tracin", "diffusion-retrac"))
    assert not built({"method": "trak"}).uses_checkpoints
    ensemble = built({"method": "d-trak-ensemble", "n_models": 3})
    assert ensemble.n_models == 3 and ensemble.single == "d-trak"
    assert built({"method": "d-trak"}).n_models is None and built({"method": "d-trak"}).single is None
    assert built({"method": "trak", "n_timesteps": 7}).n_timesteps == 7
    assert built({"method": "pixel"}).n_timesteps is None
    with pytest.raises(ValueError, match="defines no self-influence"):
        built({"method": "pixel"}).self_inputs()


# ---- gradient-feature methods -----------------------------------------------------------------

from dabench.methods.kernel import KernelSolver  # noqa: E402


@pytest.mark.parametrize("n,k", [(6, 9), (9, 6)])   # dual (N < k) and primal (N >= k)
def test_trak_kernel_matches_a_direct_solve(n, k):
    rng = np.random.default_rng(n)
    phi, q = rng.normal(size=(n, k)), rng.normal(size=(4, k))
    solver = KernelSolver(phi)
    assert solver.dual == (n < k)
    lam = solver.absolute(0.1)
    inv = np.linalg.inv(phi.T @ phi + lam * np.eye(k))
    assert np.allclose(solver.scores(q, 0.1), q @ inv @ phi.T)
    assert np.allclose(solver.inverse_norms(0.1), np.linalg.norm(inv @ phi.T, axis=0))


def _feature_inputs(tmp_path, phi, q, subsets, outputs):
    from dabench.io import save_npy

    paths = {"train_features": tmp_path / "t.npy", "query_features": tmp_path / "q.npy",
             "tune_subsets": tmp_path / "s.npy", "tune_outputs": tmp_path / "o.npy"}
    for key, arr in zip(paths, (phi, q, subsets, outputs)):
        save_npy(paths[key], arr)
    return paths


def test_trak_family_scores_and_tune_selection(tmp_path):
    from dabench.metrics import indicator, lds_per_query

    rng = np.random.default_rng(0)
    phi, q = rng.normal(size=(12, 20)), rng.normal(size=(3, 20))
    subsets = np.stack([np.sort(rng.choice(12, 6, replace=False)) for _ in range(8)])
    # Tune outputs made additive in the TRAK scores at λ = 1 (relative): that λ must win.
    solver = KernelSolver(phi)
    truth = solver.scores(q, 1.0)
    outputs = -(truth @ indicator(subsets, 12).T).T
    inputs = _feature_inputs(tmp_path, phi, q, subsets, outputs)
    trak = methods.build({"method": "trak", "lambdas": [1e-3, 1.0, 100.0]})
    scores = trak.score(inputs, "validation")
    assert trak.extra_metadata()["lambda_relative"] == 1.0
    assert np.allclose(scores, truth)
    assert np.allclose(lds_per_query(scores, subsets, outputs), 1.0)
    lam = solver.absolute(1.0)
    inv = np.linalg.inv(phi.T @ phi + lam * np.eye(20))
    rel = methods.build({"method": "relative-if", "lambdas": [1.0]}).score(inputs, "validation")
    assert np.allclose(rel, q @ inv @ phi.T / np.linalg.norm(inv @ phi.T, axis=0))
    ren = methods.build({"method": "renormalized-if", "lambdas": [1.0]}).score(inputs, "validation")
    assert np.allclose(ren, q @ inv @ phi.T / np.linalg.norm(phi, axis=1))
    grad = methods.build({"method": "gradient", "similarity": "cosine"}).score(inputs, "validation")
    assert np.allclose(grad, similarity(q, phi, "cosine"), atol=1e-6)


def test_d_trak_reads_features_of_its_output_function():
    m = methods.build({"method": "d-trak", "n_timesteps": 100})
    assert m.label == "D-TRAK" and m.variant == "square"
    assert m.inputs("generation")["train_features"] == "features/full/square_K100u_e1_sparse4096/train.npy"
    assert m.inputs("generation")["tune_outputs"] == "lds/tune/generation_outputs.npy"


def test_sweeps_expand_into_method_ids():
    out = methods.expand({"d": {"method": "d-trak", "function": ["square", "mean"],
                                "n_timesteps": [10, 100]}})
    assert sorted(out) == ["d-mean-K10", "d-mean-K100", "d-square-K10", "d-square-K100"]
    assert out["d-mean-K100"]["function"] == "mean" and out["d-mean-K100"]["n_timesteps"] == 100
    # a list-valued parameter (the λ grid) is a value, not a sweep
    assert list(methods.expand({"t": {"method": "trak", "lambdas": [1, 2]}})) == ["t"]
