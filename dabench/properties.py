"""Global model properties F(θ) from generated samples (docs/computation.md §7).

A property model maps images to class logits and to an embedding; here it is the classifier the
workflow trains on the training set's labels (:mod:`dabench.embedding`), real weights on real data.
From one batch of generated samples (fixed seeds, the same for every model) three properties:

- ``inception``: an Inception-style score exp(E_x KL(p(y|x) ‖ p(y))) of the classifier's
  class probabilities (high when samples are confidently classified and cover the classes);
- ``entropy``: entropy of the assignment of the samples to clusters — Ward clustering of the
  embeddings of the full model's samples into ``n_clusters``; a new model's samples go to the
  nearest cluster centroid (diversity, the paper's CelebA-HQ property);
- ``quality``: a percentile of a per-image quality score, the classifier's logit margin
  (top-1 minus top-2 logit; the paper's aesthetic-score property).
"""

from __future__ import annotations

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


class PropertyModel:
    """The trained classifier as property model: ``logits(images)`` and ``embed(images)``."""

    def __init__(self, classifier_path):
        from dabench.embedding import ClassifierEmbedder

        self.embedder = ClassifierEmbedder(classifier_path)

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


def global_properties(images: np.ndarray, model: PropertyModel, centroids: np.ndarray,
                      percentile: float) -> dict:
    """The three properties of one model's generated samples (images in [-1, 1])."""
    logits = model.logits(images)
    z = logits - logits.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return {"inception": inception_score(probs),
            "entropy": cluster_entropy(model.embed(images), centroids),
            "quality": float(np.percentile(logit_margin(logits), percentile))}
