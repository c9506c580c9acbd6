"""Embedding similarity: ⟨e(x), e(x_i)⟩ or cos on an image embedding e (D-TRAK's "CLIP
similarity"). The embedder is the run's (config ``embedder``, :mod:`dabench.embedding`): CLIP
from a local path at paper scale, offline a classifier the workflow trains on the real data —
the table's label says which."""

from __future__ import annotations

from dabench import layout
from dabench.io import load_checked_npy
from dabench.methods.base import AttributionMethod
from dabench.methods.pixel import similarity


class EmbeddingSimilarity(AttributionMethod):
    name = "embedding"
    family = "similarity"
    # ``embedder: null`` = the run's embedder.kind (filled in by config validation).
    defaults = {"similarity": "dot", "embedder": None}

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["similarity"] not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {self.params['similarity']!r}")

    def bind(self, config):
        kind = config["embedder"]["kind"]
        if self.params["embedder"] not in (None, kind):
            raise ValueError(f"embedder {self.params['embedder']!r} is not the run's "
                             f"embedder.kind {kind!r}")
        self.params["embedder"] = kind

    @property
    def label(self) -> str:
        return ("CLIP similarity" if self.params["embedder"] == "clip"
                else "Classifier-embedding similarity")

    @property
    def variant(self) -> str:
        return self.params["similarity"]

    def inputs(self, query_set):
        kind = self.params["embedder"] or "classifier"
        return {"train": layout.embeddings(kind, "train"),
                "queries": layout.embeddings(kind, query_set)}

    def score(self, inputs, query_set):
        return similarity(load_checked_npy(inputs["queries"]), load_checked_npy(inputs["train"]),
                          self.params["similarity"])
