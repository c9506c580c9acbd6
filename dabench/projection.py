"""Random projections R^p -> R^k of gradients, behind one interface.

Implementations (:func:`make_projector` picks one by name):

- ``sparse`` (:class:`CountSketchProjector`): count-sketch / sparse JL — each parameter coordinate
  goes to one of k buckets with a random sign. O(p) per gradient whatever k is: the CPU default.
- ``gaussian`` / ``rademacher`` (:class:`DenseProjector`): dense i.i.d. N(0, 1/k) or ±1/√k
  matrices generated block-wise from the seed — never the whole p×k matrix unless it fits the
  memory budget, in which case it is cached.
- ``fast_jl`` (:class:`FastJLProjector`): traker's CUDA kernels (``fast_jl``), Rademacher, on GPU.

Every projector is a pure function of (p, k, seed): the same seed gives the same projection in any
process, so training and query features can be computed by different jobs.
"""

from __future__ import annotations

import numpy as np
import torch

from dabench.config import derive_seed

PROJECTIONS = ("sparse", "gaussian", "rademacher", "fast_jl", "none")


class Projector:
    """Maps (B, p) gradients to (B, k) features."""

    name = ""

    def __init__(self, p: int, k: int, seed: int):
        self.p, self.k, self.seed = int(p), int(k), int(seed)

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"projection": self.name, "p": self.p, "k": self.k, "seed": self.seed}


class IdentityProjector(Projector):
    """No projection (k = p): exact gradients, for tiny models and tests."""

    name = "none"

    def __init__(self, p: int, k: int | None = None, seed: int = 0):
        super().__init__(p, p, seed)

    def project(self, grads):
        return grads.float()


class CountSketchProjector(Projector):
    """φ[b] = Σ_{i: h(i) = b} s(i) g_i with hash h: [p] -> [k] and signs s(i) ∈ {±1} from the seed.

    E[⟨Sg, Sg'⟩] = ⟨g, g'⟩ (an unbiased sketch of inner products)."""

    name = "sparse"

    def __init__(self, p: int, k: int, seed: int):
        super().__init__(p, k, seed)
        gen = torch.Generator().manual_seed(derive_seed(seed, "count-sketch"))
        self.buckets = torch.randint(0, k, (p,), generator=gen)
        self.signs = torch.randint(0, 2, (p,), generator=gen).float() * 2 - 1

    def project(self, grads):
        grads = grads.float()
        out = torch.zeros(grads.shape[0], self.k, dtype=grads.dtype, device=grads.device)
        out.index_add_(1, self.buckets.to(grads.device), grads * self.signs.to(grads.device))
        return out


class DenseProjector(Projector):
    """P ∈ R^{p×k}, entries N(0, 1/k) (gaussian) or ±1/√k (rademacher), generated in row blocks:
    block b (rows b·block … ) from a generator seeded by (seed, b). φ = gᵀP."""

    def __init__(self, p: int, k: int, seed: int, kind: str = "gaussian", block_rows: int = 8192,
                 cache_bytes: int = 1 << 30):
        super().__init__(p, k, seed)
        if kind not in ("gaussian", "rademacher"):
            raise ValueError(f"dense projection kind must be gaussian or rademacher, got {kind!r}")
        self.name = kind
        self.block_rows = block_rows
        self.cache = [] if p * k * 4 <= cache_bytes else None

    def _block(self, b: int) -> torch.Tensor:
        rows = min(self.block_rows, self.p - b * self.block_rows)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.name, b))
        if self.name == "gaussian":
            block = torch.randn(rows, self.k, generator=gen)
        else:
            block = torch.randint(0, 2, (rows, self.k), generator=gen).float() * 2 - 1
        return block / np.sqrt(self.k)

    def blocks(self):
        n = -(-self.p // self.block_rows)
        if self.cache is not None and len(self.cache) == n:
            yield from self.cache
            return
        for b in range(n):
            block = self._block(b)
            if self.cache is not None:
                self.cache.append(block)
            yield block

    def project(self, grads):
        grads = grads.float()
        out = torch.zeros(grads.shape[0], self.k, dtype=grads.dtype, device=grads.device)
        for b, block in enumerate(self.blocks()):
            start = b * self.block_rows
            out += grads[:, start:start + block.shape[0]] @ block.to(grads.device)
        return out


class FastJLProjector(Projector):
    """traker's CudaProjector (fast_jl kernels): Rademacher projections computed on the GPU without
    materialising P. Needs CUDA and the ``gpu`` extra (``pip install dabench[gpu]``)."""

    name = "fast_jl"

    def __init__(self, p: int, k: int, seed: int, device: str = "cuda", max_batch_size: int = 32):
        super().__init__(p, k, seed)
        try:
            import fast_jl  # noqa: F401
            from trak.projectors import CudaProjector, ProjectionType
        except ImportError as exc:
            raise RuntimeError("projection fast_jl needs CUDA with the traker and fast_jl packages "
                               "(pip install 'dabench[gpu]'); use projection: sparse on CPU") from exc
        if not torch.cuda.is_available():
            raise RuntimeError("projection fast_jl needs a CUDA GPU; use projection: sparse on CPU")
        # fast_jl wants a 32-bit seed and k a multiple of 512.
        self._proj = CudaProjector(grad_dim=p, proj_dim=k, seed=derive_seed(seed, "fast_jl") % 2**31,
                                   proj_type=ProjectionType.rademacher, device=device,
                                   max_batch_size=max_batch_size)

    def project(self, grads):
        return self._proj.project(grads.to("cuda").float(), model_id=0).float()


def make_projector(name: str, p: int, k: int, seed: int) -> Projector:
    if name == "sparse":
        return CountSketchProjector(p, k, seed)
    if name in ("gaussian", "rademacher"):
        return DenseProjector(p, k, seed, kind=name)
    if name == "fast_jl":
        return FastJLProjector(p, k, seed)
    if name == "none":
        return IdentityProjector(p)
    raise ValueError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
