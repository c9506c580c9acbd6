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
