"""Random projections R^p -> R^k of gradients, behind one interface.

Implementations (:func:`make_projector` picks one by name):

- ``sparse`` (:class:`CountSketchProjector`): count-sketch / sparse JL — each parameter coordinate
  goes to one of k buckets with a random sign. O(p) per gradient whatever k is: the CPU default.
- ``gaussian`` / ``rademacher`` (:class:`DenseProjector`): dense i.i.d. N(0, 1/k) or ±1/√k
  matrices generated block-wise from the seed — never the whole p×k matrix unless it fits the
  memory budget, in which case it is cached.
- ``fast_jl`` (:class:`FastJLProjector`): traker's CUDA kernels (``fast_jl``), Rademacher, on GPU
  — the D-TRAK paper's projection, an optional extra (``make setup-fast-jl``).

Every projector is a pure function of (p, k, seed): the same seed gives the same projection in any
process and on any device, so training and query features can be computed by different jobs on
different machines. The count-sketch and the dense projections draw their randomness on the CPU
(torch's CPU generator) and only then move it to the gradients' device. ``fast_jl`` seeds its
tiles by the number of thread blocks it is launched with, which traker takes from the GPU's SM
count (108 on an A100, 132 on an H100: different matrices); dabench pins it to
:data:`FAST_JL_TILES` and records it in every feature sidecar.

Gradients come either as one (B, p) tensor or as a list of blocks (B, p_1), (B, p_2), … whose
widths add up to p — one per parameter tensor, in ``named_parameters`` order — so that a
per-example gradient is never copied into one flat tensor (:meth:`Projector.project`).
"""

from __future__ import annotations

import numpy as np
import torch

from dabench.seeds import derive_seed

PROJECTIONS = ("sparse", "gaussian", "rademacher", "fast_jl", "none")


# Thread-block tiles fast_jl is launched with (an A100's SM count): the same matrix on any GPU.
FAST_JL_TILES = 108


def as_blocks(grads) -> list[torch.Tensor]:
    """A (B, p) tensor or a list of (B, p_i) blocks, as a list of 2-d blocks."""
    if isinstance(grads, torch.Tensor):
        return [grads]
    return [g.reshape(g.shape[0], -1) for g in grads]


class Projector:
    """Maps (B, p) gradients — one tensor or a list of (B, p_i) blocks — to (B, k) features."""

    name = ""

    def __init__(self, p: int, k: int, seed: int):
        self.p, self.k, self.seed = int(p), int(k), int(seed)

    def project(self, grads) -> torch.Tensor:
        blocks = as_blocks(grads)
        width = sum(b.shape[1] for b in blocks)
        if width != self.p:
            raise ValueError(f"{self.name} projection of p = {self.p} got gradients of width {width}")
        return self._project(blocks)

    def _project(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def state_bytes(self) -> int:
        """Memory the projector keeps (its random state), for memory planning."""
        return 0

    def describe(self) -> dict:
        return {"projection": self.name, "p": self.p, "k": self.k, "seed": self.seed}


class IdentityProjector(Projector):
    """No projection (k = p): exact gradients, for tiny models and tests."""

    name = "none"

    def __init__(self, p: int, k: int | None = None, seed: int = 0):
        super().__init__(p, p, seed)

    def _project(self, blocks):
        return torch.cat([b.float() for b in blocks], dim=1)


class CountSketchProjector(Projector):
    """φ[b] = Σ_{i: h(i) = b} s(i) g_i with hash h: [p] -> [k] and signs s(i) ∈ {±1} from the seed.

    E[⟨Sg, Sg'⟩] = ⟨g, g'⟩ (an unbiased sketch of inner products). Drawn on the CPU from the
    seed, kept as int32 buckets and int8 signs (5 bytes per parameter), moved once to the device
    the gradients are on; each block is sketched on its own, so no flat gradient is formed."""

    name = "sparse"

    def __init__(self, p: int, k: int, seed: int):
        super().__init__(p, k, seed)
        gen = torch.Generator().manual_seed(derive_seed(seed, "count-sketch"))
        self.buckets = torch.randint(0, k, (p,), generator=gen).to(torch.int32)
        self.signs = (torch.randint(0, 2, (p,), generator=gen) * 2 - 1).to(torch.int8)
        self._on = {}

    def _state(self, device):
        key = str(device)
        if key not in self._on:
            self._on = {key: (self.buckets.to(device), self.signs.to(device))}
        return self._on[key]

    def _project(self, blocks):
        device = blocks[0].device
        buckets, signs = self._state(device)
        out = torch.zeros(blocks[0].shape[0], self.k, dtype=torch.float32, device=device)
        start = 0
        for block in blocks:
            end = start + block.shape[1]
            # int64 / float copies of the block's slice only: index_add_ is ~20x slower with
            # int32 indices, and the whole state in int64 + float32 would be 12 bytes/parameter.
            out.index_add_(1, buckets[start:end].long(), block.float() * signs[start:end].float())
            start = end
        return out

    def state_bytes(self):
        return 5 * self.p


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

    def _project(self, blocks):
        device = blocks[0].device
        out = torch.zeros(blocks[0].shape[0], self.k, dtype=torch.float32, device=device)
        # Walk the rows of P (block-wise) and the gradient blocks side by side: each product
        # takes the overlap of a row block of P with a gradient block.
        grads = iter(blocks)
        g, g_start = next(grads), 0
        for b, rows in enumerate(self.blocks()):
            rows = rows.to(device)
            r_start, r_end = b * self.block_rows, b * self.block_rows + rows.shape[0]
            pos = r_start
            while pos < r_end:
                while pos >= g_start + g.shape[1]:
                    g_start += g.shape[1]
                    g = next(grads)
                stop = min(r_end, g_start + g.shape[1])
                out += g[:, pos - g_start:stop - g_start].float() @ rows[pos - r_start:stop - r_start]
                pos = stop
        return out

    def state_bytes(self):
        return 0 if self.cache is None else 4 * self.p * self.k


class FastJLProjector(Projector):
    """traker's CudaProjector (fast_jl kernels): Rademacher projections computed on the GPU without
    materialising P — D-TRAK's own projection. Needs CUDA, traker and fast_jl
    (``make setup-fast-jl`` builds it for the installed torch). Its tile count is pinned to
    :data:`FAST_JL_TILES` so that every GPU model computes the same matrix. fast_jl takes one flat
    (B, p) tensor: the blocks are joined on the GPU (one copy of the batch's gradients)."""

    name = "fast_jl"

    def __init__(self, p: int, k: int, seed: int, device: str = "cuda", max_batch_size: int = 32):
        super().__init__(p, k, seed)
        try:
            import fast_jl  # noqa: F401
            from trak.projectors import CudaProjector, ProjectionType
        except ImportError as exc:
            raise RuntimeError("projection fast_jl needs CUDA with the traker and fast_jl packages "
                               "(make setup-fast-jl on a GPU machine); projection: sparse runs "
                               "anywhere") from exc
        if not torch.cuda.is_available():
            raise RuntimeError("projection fast_jl needs a CUDA GPU; projection: sparse runs on "
                               "the CPU and on GPUs")
        if k % 512:
            raise ValueError(f"projection fast_jl needs k to be a multiple of 512, got {k}")
        # fast_jl wants a 32-bit seed and k a multiple of 512.
        self._proj = CudaProjector(grad_dim=p, proj_dim=k, seed=derive_seed(seed, "fast_jl") % 2**31,
                                   proj_type=ProjectionType.rademacher, device=device,
                                   max_batch_size=max_batch_size)
        self._proj.num_sms = FAST_JL_TILES

    def _project(self, blocks):
        flat = torch.cat([b.to("cuda").float() for b in blocks], dim=1)
        return self._proj.project(flat, model_id=0).float()

    def describe(self):
        return {**super().describe(), "fast_jl_tiles": FAST_JL_TILES}


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
