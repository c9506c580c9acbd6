import numpy as np
import pytest
import torch

from dabench import projection as P


@pytest.mark.parametrize("name", ["sparse", "gaussian", "rademacher"])
def test_same_seed_same_projection_and_inner_products_kept(name):
    g = torch.randn(6, 3000, generator=torch.Generator().manual_seed(0))
    a = P.make_projector(name, 3000, 2048, seed=5).project(g)
    b = P.make_projector(name, 3000, 2048, seed=5).project(g)
    c = P.make_projector(name, 3000, 2048, seed=6).project(g)
    assert torch.equal(a, b) and not torch.equal(a, c)
    exact = g @ g.T
    approx = a @ a.T
    # JL: inner products kept up to O(‖g‖²/√k) (‖g‖² ≈ 3000 here).
    assert torch.allclose(approx, exact, atol=4 * 3000 / np.sqrt(2048))


def test_dense_blocks_equal_the_whole_matrix():
    proj = P.DenseProjector(100, 16, seed=1, block_rows=30, cache_bytes=0)
    whole = torch.cat(list(proj.blocks()))
    assert whole.shape == (100, 16)
    g = torch.randn(3, 100)
    assert torch.allclose(proj.project(g), g @ whole, atol=1e-5)
    entries = P.DenseProjector(100, 16, seed=1, kind="rademacher", block_rows=30)
    values = torch.cat(list(entries.blocks())).abs().unique()
    assert torch.allclose(values, torch.tensor([0.25]))


def test_count_sketch_by_hand():
    proj = P.CountSketchProjector(5, 3, seed=0)
    g = torch.arange(1.0, 6.0)[None]
    expected = torch.zeros(1, 3)
    for i in range(5):
        expected[0, proj.buckets[i]] += proj.signs[i] * g[0, i]
    assert torch.equal(proj.project(g), expected)


def test_fast_jl_explains_what_it_needs():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the CPU message is not shown")
    with pytest.raises(RuntimeError, match="fast_jl needs"):
        P.make_projector("fast_jl", 100, 512, 0)
