"""Raw-pixel similarity (D-TRAK's simplest baseline): τ(x)_i = ⟨x, x_i⟩ or cos(x, x_i) on pixels."""

from __future__ import annotations

import numpy as np

from dabench import layout
from dabench.io import load_npz
from dabench.methods.base import AttributionMethod


def similarity(queries: np.ndarray, train: np.ndarray, kind: str) -> np.ndarray:
    """(Q, D) × (N, D) -> (Q, N) float32 dot products or cosine similarities of the rows."""
    q = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    t = np.asarray(train, dtype=np.float64).reshape(len(train), -1)
    if kind == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    elif kind != "dot":
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {kind!r}")
    return (q @ t.T).astype(np.float32)


class PixelSimilarity(AttributionMethod):
    name = "pixel"
    label = "Raw pixel"
    family = "similarity"
    defaults = {"similarity": "dot"}

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["similarity"] not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {self.params['similarity']!r}")

    @property
    def variant(self) -> str:
        return self.params["similarity"]

    def inputs(self, query_set):
        return {"train": layout.TRAIN_DATA, "queries": layout.query_file(query_set)}

    def score(self, inputs, query_set):
        train = load_npz(inputs["train"])["train_images"]
        queries = load_npz(inputs["queries"])["images"]
        return similarity(queries, train, self.params["similarity"])
