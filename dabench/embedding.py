"""Image embedders for embedding similarity (docs/computation.md §4) and the counterfactual
evaluation's cosine
similarity (docs/computation.md §5).

- ``classifier`` (offline default): a small CNN the workflow trains on the training set's labels
  (real digits, Fashion-MNIST, …); the embedding is its penultimate layer (4·width features).
  Its validation accuracy is recorded beside it, so the table says what the embedder is.
- ``clip`` (paper scale): ``transformers.CLIPModel`` read from a local folder (no download);
  grey images are repeated to RGB, resized to the model's input size and normalised with the
  folder's preprocessor statistics (OpenAI's when it has none); the embedding is
  ``get_image_features``.

Images come in the model's range [-1, 1], (N, C, H, W).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from dabench.seeds import derive_seed

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def classifier(channels: int, n_classes: int, width: int) -> torch.nn.Module:
    """conv(width) → conv(2·width) → global pool → linear(4·width) [embedding] → linear(classes)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.GELU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.GELU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width, 4 * width), nn.GELU(),
        nn.Linear(4 * width, n_classes),
    )


def train_classifier(images: np.ndarray, labels: np.ndarray, cfg: dict, seed: int,
                     batch_size: int = 64) -> tuple[torch.nn.Module, dict]:
    """Train :func:`classifier` with Adam on (images, labels); deterministic for a seed."""
    classes, y = np.unique(labels, return_inverse=True)
    torch.manual_seed(derive_seed(seed, "embedder-init") % 2**31)
    net = classifier(images.shape[1], len(classes), cfg["width"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    rng = np.random.default_rng(derive_seed(seed, "embedder-batches"))
    x, y = torch.as_tensor(images), torch.as_tensor(y)
    tic = time.perf_counter()
    for _ in range(cfg["steps"]):
        idx = torch.as_tensor(rng.integers(0, len(x), size=min(batch_size, len(x))))
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), {"classes": classes.tolist(), "final_loss": float(loss.detach()),
                        "train_seconds": time.perf_counter() - tic}


@torch.no_grad()
def accuracy(net: torch.nn.Module, images: np.ndarray, labels: np.ndarray, classes: list) -> float:
    pred = np.asarray(classes)[net(torch.as_tensor(images)).argmax(1).numpy()]
    return float((pred == labels).mean())


class Embedder:
    """``embed(images) -> (N, d) float32``; ``describe()`` for sidecars."""

    kind = ""

    device = torch.device("cpu")

    def embed(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, d) float32 embeddings, in batches on the job's device."""
        out = [self._embed(torch.as_tensor(images[i:i + batch_size], dtype=torch.float32,
                                           device=self.device)).float().cpu()
               for i in range(0, len(images), batch_size)]
        return torch.cat(out).numpy().astype(np.float32)

    def _to_device(self, module):
        from dabench import device as D

        self.device = D.current()
        return module.to(self.device)

    def describe(self) -> dict:
        return {"kind": self.kind}


class ClassifierEmbedder(Embedder):
    kind = "classifier"

    def __init__(self, path):
        from dabench.io import load_tensors

        tensors, meta = load_tensors(path)
        self.meta = meta
        self.net = classifier(meta["channels"], len(meta["classes"]), meta["width"])
        self.net.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()})
        self.net = self._to_device(self.net).eval()

    @torch.no_grad()
    def _embed(self, x):
        return self.net[:-1](x)     # everything but the last linear layer: the penultimate layer

    def describe(self):
        return {"kind": self.kind, "dim": 4 * self.meta["width"],
                "validation_accuracy": self.meta.get("validation_accuracy")}


class ClipEmbedder(Embedder):
    kind = "clip"

    def __init__(self, path):
        from transformers import CLIPModel

        folder = Path(path or "")
        if not path or not (folder / "config.json").exists():
            raise FileNotFoundError(f"embedder.path: {path!r} is not a saved CLIPModel folder "
                                    f"(no config.json)")
        self.model = self._to_device(CLIPModel.from_pretrained(folder, local_files_only=True)).eval()
        self.size = self.model.config.vision_config.image_size
        stats = folder / "preprocessor_config.json"
        pre = json.loads(stats.read_text()) if stats.exists() else {}
        self.mean = torch.tensor(pre.get("image_mean", CLIP_MEAN), device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(pre.get("image_std", CLIP_STD), device=self.device).view(1, 3, 1, 1)
        self.path = str(folder)

    @torch.no_grad()
    def _embed(self, x):
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
        out = self.model.get_image_features(pixel_values=(x - self.mean) / self.std)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def describe(self):
        return {"kind": self.kind, "path": self.path, "image_size": self.size,
                "dim": int(self.model.config.projection_dim)}


def load_embedder(cfg: dict, classifier_path=None) -> Embedder:
    """The run's embedder: the trained classifier (``classifier_path``) or CLIP (``cfg.path``)."""
    if cfg["kind"] == "clip":
        return ClipEmbedder(cfg["path"])
    if classifier_path is None:
        raise ValueError("the classifier embedder needs the trained model's path")
    return ClassifierEmbedder(classifier_path)


# ------------------------------------------------------------------------------------------------
# Workflow stages


def write_classifier(train_path, validation_path, cfg: dict, seed: int, out_path) -> dict:
    """Workflow stage: train the classifier embedder on the training set; record its accuracy."""
    from dabench.io import load_npz, save_tensors

    from dabench.data import display_images

    # Images, never a latent model's latents: the embedder sees what a person sees.
    train, val = load_npz(train_path), load_npz(validation_path)
    x_train, x_val = display_images(train, "train_images"), display_images(val)
    net, info = train_classifier(x_train, train["labels"], cfg, seed)
    info["validation_accuracy"] = accuracy(net, x_val, val["labels"], info["classes"])
    info["train_accuracy"] = accuracy(net, x_train, train["labels"], info["classes"])
    meta = {**info, "width": cfg["width"], "channels": int(x_train.shape[1]),
            "steps": cfg["steps"], "lr": cfg["lr"], "seed": seed}
    save_tensors(out_path, {k: v.detach().contiguous() for k, v in net.state_dict().items()}, meta)
    print(f"[dabench] embedder: classifier, train accuracy {info['train_accuracy']:.3f}, "
          f"validation accuracy {info['validation_accuracy']:.3f}", flush=True)
    return meta


def write_embeddings(cfg: dict, classifier_path, split_files: dict, out_paths: dict) -> None:
    """Workflow stage: embeddings of every split (split -> (npz path, array key)), with sidecars."""
    from dabench.io import load_npz, save_json, save_npy

    embedder = load_embedder(cfg, classifier_path)
    for split, (path, key) in split_files.items():
        from dabench.data import display_images

        emb = embedder.embed(display_images(load_npz(path), key))
        save_npy(out_paths[split], emb)
        save_json(Path(out_paths[split]).with_suffix(".json"),
                  {**embedder.describe(), "split": split, "shape": list(emb.shape),
                   "images": str(path)})
