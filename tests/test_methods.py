import numpy as np
import pytest

from dabench import methods
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


def test_a_new_method_is_one_class_and_one_registry_line(monkeypatch):
    from dabench import config

    class Constant(methods.AttributionMethod):
        name = "constant"
        label = "Constant"
        family = "similarity"
        defaults = {"value": 1.0}

    monkeypatch.setitem(methods.REGISTRY, "constant", Constant)
    c = config.validate({"methods": {"c": {"method": "constant"}}})
    assert c["methods"]["c"] == {"method": "constant", "value": 1.0}


def test_the_readme_example_method_works(repo, tmp_path, monkeypatch):
    """The worked example of README.md 'Adding a method' runs as printed."""
    import re

    from dabench.io import save_npz

    text = (repo / "README.md").read_text()
    code = re.search(r"```python\n# dabench/methods/pixel_l2.py\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    cls = namespace["PixelL2"]
    monkeypatch.setitem(methods.REGISTRY, cls.name, cls)
    rng = np.random.default_rng(0)
    train, queries = rng.normal(size=(5, 1, 2, 2)), rng.normal(size=(3, 1, 2, 2))
    save_npz(tmp_path / "train.npz", train_images=train)
    save_npz(tmp_path / "q.npz", images=queries)
    m = methods.build({"method": "pixel-l2"})
    scores = m.score({"train": tmp_path / "train.npz", "queries": tmp_path / "q.npz"}, "validation")
    assert scores.shape == (3, 5)
    assert scores[1, 2] == pytest.approx(-((queries[1] - train[2]) ** 2).sum())
