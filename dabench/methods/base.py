"""The interface every attribution method implements.

A method is a class with a ``name`` (its registry key), a display ``label`` and ``family`` (for
tables and figure colours), ``defaults`` (its parameters), :meth:`inputs` (the run artefacts it
reads, as paths relative to the run folder, from :mod:`dabench.layout`) and :meth:`score`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class AttributionMethod:
    name: str = ""
    label: str = ""
    family: str = ""
    defaults: dict = {}
    # Prefixes of parameter values in the ids of swept methods (``d-trak-K100``).
    abbreviations: dict = {}
    # The query sets the method defines scores for (None: every one). Journey-TRAK needs a
    # sampling trajectory, so it attributes generated queries only.
    query_sets: tuple[str, ...] | None = None

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise KeyError(f"method {self.name!r} has no parameter {', '.join(map(repr, unknown))}"
                           f" (parameters: {', '.join(sorted(self.defaults)) or 'none'})")
        self.params = {**self.defaults, **params}

    @property
    def variant(self) -> str:
        """A short description of the parameters that distinguish rows of one method in tables."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))

    def bind(self, config: dict) -> None:
        """Fill the parameters that come from the run's config (checkpoints, embedder, …) and
        check them against it; raise ValueError naming what is wrong."""

    def covers(self, query_set: str) -> bool:
        return self.query_sets is None or query_set in self.query_sets

    def inputs(self, query_set: str) -> dict[str, str]:
        """name -> path (relative to the run folder) of each artefact :meth:`score` reads."""
        raise NotImplementedError

    def score(self, inputs: dict[str, Path], query_set: str) -> np.ndarray:
        """Attribution scores, (Q, N) float32: queries × training examples, positive = the
        training example helps (lowers the query's loss)."""
        raise NotImplementedError

    def cost(self, n_train: int, n_queries: int, sizes, config: dict) -> tuple[float, float]:
        """(peak bytes, CPU FLOPs) of scoring ``n_queries`` queries against ``n_train`` training
        examples — what :mod:`dabench.resources` declares for the job. ``sizes``: the run's
        :class:`dabench.resources.Sizes` (``p``, ``image_bytes``). The default: the scores and
        a few copies of them, and the images."""
        return 3 * 8 * n_queries * n_train + 2 * (n_train + n_queries) * sizes.image_bytes \
            + (64 << 20), 4.0 * n_queries * n_train

    def extra_metadata(self) -> dict:
        """Anything :meth:`score` chose (e.g. λ) that belongs in the scores' sidecar."""
        return {}
