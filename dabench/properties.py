"""Global model properties F(θ) from generated samples (docs/computation.md §7).

A property model maps images to class logits and to an embedding; here it is the classifier the
workflow trains on the training set's labels (:mod:`dabench.embedding`), real weights on real data.
From one batch of generated samples (fixed seeds, the same for every model) three properties:

- ``inception``: an Inception-style score exp(E_x KL(p(y|x) ‖ p(y))) of the classifier's
  class probabilities (high when samples are confidently classified and cover the classes);
- ``entropy``: entropy of the assignment of the samples to clusters — Ward clustering of the
  embeddings of the full model's samples into ``n_clusters``; a new model's samples go to the
  nearest cluster centroid (diversity, the paper's CelebA-HQ property);
- ``quality``: a percentile of a per-image quality score: the classifier's logit margin (top-1
  minus top-2 logit), or — with ``shapley.aesthetic`` — the paper's own ArtBench property, an
  aesthetic score: a LAION-style aesthetic predictor (:class:`AestheticScorer`, a linear head
  on L2-normalised CLIP image embeddings) from local weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROPERTIES = ("inception", "entropy", "quality")
PROPERTY_LABELS = {"inception": "Inception-style score", "entropy": "Cluster entropy",
                   "quality": "Quality percentile"}


def inception_score(probs: np.ndarray) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))), p(y) the mean of p(y|x) over the samples."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    marginal = p.mean(0, keepdims=True)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean()))


def fit_clusters(embeddings: np.ndarray, n_clusters: int) -> np.ndarray:
    """Centroids (k × d) of a Ward clustering of ``embeddings`` into at most ``n_clusters``."""
    from scipy.cluster.hierarchy import fcluster, linkage

    x = np.asarray(embeddings, np.float64)
    if len(x) < 2:
        raise ValueError(f"clustering needs at least 2 samples, got {len(x)}")
    labels = fcluster(linkage(x, method="ward"), t=min(n_clusters, len(x)), criterion="maxclust")
    return np.stack([x[labels == c].mean(0) for c in np.unique(labels)])


def assign(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, np.float64)
    d = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    return d.argmin(1)


def cluster_entropy(embeddings: np.ndarray, centroids: np.ndarray) -> float:
    """H = −Σ p_i log p_i of the samples' nearest-centroid assignment (natural log)."""
    counts = np.bincount(assign(embeddings, centroids), minlength=len(centroids))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def logit_margin(logits: np.ndarray) -> np.ndarray:
    top = np.sort(np.asarray(logits, np.float64), axis=1)
    return top[:, -1] - top[:, -2]


class AestheticScorer:
    """A LAION-style aesthetic predictor: ``score(images)`` = head(CLIP image embedding / its
    norm), one number per image (higher: more pleasing to the people who rated LAION images).

    ``clip``: a saved transformers ``CLIPModel`` folder (the LAION predictors use ViT-L/14).
    ``head``: a torch state dict (.pth / .pt) of linear layers applied in order — the released
    "improved aesthetic predictor" (``layers.0`` … ``layers.7``: five linear layers with
    dropout between them, no activation) or the first linear one (``weight``, ``bias``);
    a .safetensors file with the same keys also works."""

    def __init__(self, clip, head):
        import torch

        from dabench.embedding import ClipEmbedder

        head = Path(head or "")
        if not head.is_file():
            raise FileNotFoundError(f"shapley.aesthetic.head: {str(head)!r} is not a file")
        self.clip = ClipEmbedder(clip)
        if head.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(head))
        else:
            state = torch.load(str(head), map_location="cpu", weights_only=True)
        self.layers = _linear_stack(state, str(head))
        width = self.layers[0][0].shape[1]
        dim = self.clip.describe()["dim"]
        if width != dim:
            raise ValueError(f"shapley.aesthetic: the head {head} takes {width}-dim embeddings, "
                             f"the CLIP model {clip} gives {dim}")

    def score(self, images: np.ndarray) -> np.ndarray:
        z = np.asarray(self.clip.embed(images), np.float64)
        x = z / np.linalg.norm(z, axis=1, keepdims=True)
        for w, b in self.layers:
            x = x @ w.T + b
        return x[:, 0]


def _linear_stack(state: dict, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (weight, bias) pairs of a state dict's linear layers in order: keys ``weight``/``bias``
    or ``<prefix>.<i>.weight``/``.bias`` sorted by i (dropout slots hold no tensors)."""
    import re

    state = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float64)
             for k, v in state.items()}
    if set(state) == {"weight", "bias"}:
        pairs = [(state["weight"], state["bias"])]
    else:
        index = sorted({int(m.group(1)) for k in state
                        if (m := re.fullmatch(r"(?:.*\.)?(\d+)\.weight", k))})
        prefix = {re.sub(r"\d+\.weight$", "", k) for k in state if k.endswith(".weight")}
        if not index or len(prefix) != 1:
            raise ValueError(f"shapley.aesthetic.head: {name} is not a stack of linear layers "
                             f"(keys {sorted(state)[:4]})")
        p = prefix.pop()
        pairs = [(state[f"{p}{i}.weight"], state[f"{p}{i}.bias"]) for i in index]
    for (w, _), (w2, _) in zip(pairs, pairs[1:]):
        if w2.shape[1] != w.shape[0]:
            raise ValueError(f"shapley.aesthetic.head: {name}'s layers do not chain "
                             f"({w.shape} then {w2.shape})")
    if pairs[-1][0].shape[0] != 1:
        raise ValueError(f"shapley.aesthetic.head: {name} gives {pairs[-1][0].shape[0]} outputs, "
                         f"not one score")
    return pairs


class PropertyModel:
    """The trained classifier as property model: ``logits(images)`` and ``embed(images)``; the
    per-image quality score (``quality_scores``) is the classifier's logit margin, or the
    aesthetic score when ``aesthetic`` ({clip, head}: :class:`AestheticScorer`) is given."""

    def __init__(self, classifier_path, aesthetic: dict | None = None):
        from dabench.embedding import ClassifierEmbedder

        self.embedder = ClassifierEmbedder(classifier_path)
        self.aesthetic = None if not aesthetic else AestheticScorer(aesthetic["clip"],
                                                                   aesthetic["head"])

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, classes) logits, in batches on the job's device."""
        import torch

        net, device = self.embedder.net, self.embedder.device
        with torch.no_grad():
            return np.concatenate([
                net(torch.as_tensor(images[i:i + batch_size], dtype=torch.float32,
                                    device=device)).float().cpu().numpy()
                for i in range(0, len(images), batch_size)])

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self.embedder.embed(images)

    def quality_scores(self, images: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        if self.aesthetic is not None:
            return self.aesthetic.score(images)
        return logit_margin(self.logits(images) if logits is None else logits)


def global_properties(images: np.ndarray, model: PropertyModel, centroids: np.ndarray,
                      percentile: float) -> dict:
    """The three properties of one model's generated samples (images in [-1, 1])."""
    logits = model.logits(images)
    z = logits - logits.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return {"inception": inception_score(probs),
            "entropy": cluster_entropy(model.embed(images), centroids),
            "quality": float(np.percentile(model.quality_scores(images, logits), percentile))}
