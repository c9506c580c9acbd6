"""Local copies of the paper datasets' formats, from real images shipped in packages.

foolbox ships 20 real CIFAR-10 and 20 real CIFAR-100 test images (PNG, label in the file name).
They are written here in the layouts the paper configs read — the CIFAR-10 python batches, the
CIFAR-100 python pickles, an image folder for CelebA — so a paper config runs unchanged but for
``data.path`` and its counts. Each batch repeats the 20 images (``repeat`` times), so that class
filters (CIFAR-2: automobile + horse) still find enough examples. CIFAR-100's coarse labels
(super-classes) are not in foolbox's file names: the fixture groups the fine labels into 4
groups (fine label mod 4) — a test grouping, enough for the Shapley branch to have groups.
A tiny randomly initialised CLIPModel stands in for CLIP ViT-B/32 (no weights can be
downloaded here); the paper's UNet is what these runs exercise.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np


def foolbox_images(prefix: str):
    """(20, 32, 32, 3) uint8 real images and their labels."""
    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        return None, None
    folder = Path(spec.origin).parent / "data"
    files = sorted(folder.glob(f"{prefix}_*.png"))
    labels = np.array([int(f.stem.split("_")[2]) for f in files])
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return pixels, labels


def write_cifar10(root: Path, repeat: int = 4) -> Path:
    pixels, labels = foolbox_images("cifar10")
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.tile(pixels.transpose(0, 3, 1, 2).reshape(len(pixels), 3072), (repeat, 1))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rows, b"labels": np.tile(labels, repeat).tolist()}, fh)
    return root


def write_cifar100(root: Path, repeat: int = 4) -> Path:
    pixels, labels = foolbox_images("cifar100")
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.tile(pixels.transpose(0, 3, 1, 2).reshape(len(pixels), 3072), (repeat, 1))
    fine = np.tile(labels, repeat)
    for name in ("train", "test"):
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rows, b"fine_labels": fine.tolist(),
                         b"coarse_labels": (fine % 4).tolist()}, fh)
    return root


def write_image_folder(root: Path) -> Path:
    """CelebA's layout: <root>/train/<class>/*.png and <root>/test/<class>/*.png."""
    from PIL import Image

    pixels, _ = foolbox_images("cifar10")
    for i, img in enumerate(pixels):
        split = "test" if i % 5 == 4 else "train"
        (root / split / "faces").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / split / "faces" / f"{i:03d}.png")
    return root


def write_tiny_clip(folder: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    conf = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32,
                                   "num_hidden_layers": 1, "num_attention_heads": 2,
                                   "vocab_size": 64},
                      vision_config={"hidden_size": 16, "intermediate_size": 32,
                                     "num_hidden_layers": 1, "num_attention_heads": 2,
                                     "image_size": 32, "patch_size": 8},
                      projection_dim=8)
    CLIPModel(conf).eval().save_pretrained(folder)
    return folder


def paper_data(root: Path) -> dict:
    """dataset name -> data.path, plus ``clip``: the embedder folder."""
    return {"cifar10": str(write_cifar10(root / "cifar10")),
            "cifar100": str(write_cifar100(root / "cifar100")),
            "image_folder": str(write_image_folder(root / "celeba")),
            "clip": str(write_tiny_clip(root / "clip"))}
