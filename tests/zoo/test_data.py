import gzip
import json
import os
import pickle
import random
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lt_lightning.cli import main
from lt_lightning.zoo import (
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNIST1DDataModule,
    MNISTDataModule,
    read_cifar10_batch,
    read_idx,
)
from lt_lightning.zoo.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    FASHION_MEAN,
    FASHION_STD,
    MNIST_MEAN,
    MNIST_STD,
    random_flip_crop,
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="apt-get install dataset-fashion-mnist",
)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Minimal IDX writer for uint8 data, independent of the reader under test."""
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_fashion_files(directory: Path, n_train: int = 40, n_test: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(directory / name, array)
    return arrays


# --- IDX parser -------------------------------------------------------------


@needs_fashion
@pytest.mark.parametrize(("prefix", "n"), [("train", 60_000), ("t10k", 10_000)])
def test_read_idx_real_fashion_files(prefix, n):
    images = read_idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (n,)
    assert torch.equal(labels.unique(), torch.arange(10))
    assert images.max() == 255 and images.min() == 0


def test_read_idx_plain_and_gzipped_agree(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (3, 4, 5))
    plain = read_idx(write_idx(tmp_path / "a-idx3-ubyte", array))
    # gzip is detected from the content, not the file name.
    zipped = read_idx(write_idx(tmp_path / "b-idx3-ubyte", array, compress=True))
    assert torch.equal(plain, torch.from_numpy(array.astype(np.uint8)))
    assert torch.equal(plain, zipped)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28)))
    data = bytearray(path.read_bytes())
    data[0:4] = b"\x12\x34\x08\x03"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is not an IDX file: bad magic number 12340803"):
        read_idx(path)


def test_read_idx_rejects_truncated_data(tmp_path):
    path = write_idx(tmp_path / "labels", np.zeros(10))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"labels: size 17 bytes does not match header shape \(10,\)"):
        read_idx(path)
    gz = write_idx(tmp_path / "labels.gz", np.zeros(10), compress=True)
    gz.write_bytes(gz.read_bytes()[:-6])
    with pytest.raises(ValueError, match=r"cannot read IDX file .*labels\.gz"):
        read_idx(gz)


# --- Fashion-MNIST -----------------------------------------------------------


@needs_fashion
def test_fashion_datamodule_real_files():
    dm = FashionMNISTDataModule(batch_size=500)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (55_000, 5_000, 10_000)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (500, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    train_x = dm.train_set.tensors[0]
    # The published statistics normalise the train images to ~zero mean, unit std.
    assert abs(train_x.mean().item()) < 0.01 and abs(train_x.std().item() - 1) < 0.01
    assert train_x.min().item() == pytest.approx(-FASHION_MEAN / FASHION_STD)


def test_fashion_split_is_deterministic_by_seed(tmp_path):
    write_fashion_files(tmp_path)

    def val_images(seed):
        dm = FashionMNISTDataModule(str(tmp_path), val_size=10, seed=seed)
        dm.setup()
        assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 12)
        return dm.val_set.tensors[0]

    assert torch.equal(val_images(0), val_images(0))
    assert not torch.equal(val_images(0), val_images(1))


def test_fashion_val_size_zero_validates_on_test_set(tmp_path):
    write_fashion_files(tmp_path)
    dm = FashionMNISTDataModule(str(tmp_path), val_size=0)
    dm.setup()
    assert dm.val_set is dm.test_set and len(dm.train_set) == 40


def test_fashion_missing_files_error_names_file_and_fixes(tmp_path):
    dm = FashionMNISTDataModule(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\[\.gz\] not found") as info:
        dm.setup()
    assert "apt-get install dataset-fashion-mnist" in str(info.value)
    assert "download=True" in str(info.value)


def test_fashion_download_uses_torchvision_layout(tmp_path):
    # torchvision looks for uncompressed files in <root>/FashionMNIST/raw and,
    # when they exist, skips the download: this exercises download=True offline.
    raw = tmp_path / "FashionMNIST" / "raw"
    arrays = write_fashion_files(raw)
    with pytest.raises(FileNotFoundError):  # our own reader does not look there
        FashionMNISTDataModule(str(tmp_path), val_size=10).setup()

    via_torchvision = FashionMNISTDataModule(str(tmp_path), val_size=10, download=True)
    via_torchvision.prepare_data()
    via_torchvision.setup()
    via_reader = FashionMNISTDataModule(str(raw), val_size=10)
    via_reader.setup()
    for split in ("train_set", "val_set", "test_set"):
        for a, b in zip(getattr(via_torchvision, split).tensors, getattr(via_reader, split).tensors):
            assert torch.equal(a, b)
    expected = (torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255 - FASHION_MEAN) / FASHION_STD
    assert torch.allclose(via_torchvision.test_set.tensors[0][:, 0], expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_size": -1}, r"val_size must be >= 0, got -1"),
        ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
        ({"num_workers": -2}, r"num_workers must be >= 0, got -2"),
    ],
)
def test_fashion_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FashionMNISTDataModule(**kwargs)


def test_fashion_val_size_too_large(tmp_path):
    write_fashion_files(tmp_path)
    with pytest.raises(ValueError, match=r"val_size=40 leaves no training data out of 40"):
        FashionMNISTDataModule(str(tmp_path), val_size=40).setup()


# --- MNIST-1D ----------------------------------------------------------------


def test_mnist1d_shapes_and_val_is_test_split():
    dm = MNIST1DDataModule()
    dm.setup("fit")
    x, y = dm.train_set.tensors
    assert x.shape == (4000, 40) and x.dtype == torch.float32
    assert y.shape == (4000,) and y.dtype == torch.int64
    assert torch.equal(y.unique(), torch.arange(10))
    assert dm.val_set is dm.test_set and dm.test_set.tensors[0].shape == (1000, 40)
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (100, 40) and yb.shape == (100,)


def test_mnist1d_deterministic_by_seed_and_keeps_global_rng():
    a, b = MNIST1DDataModule(seed=42), MNIST1DDataModule(seed=42)
    a.setup(), b.setup()
    assert torch.equal(a.train_set.tensors[0], b.train_set.tensors[0])

    random.seed(123), np.random.seed(123)
    other = MNIST1DDataModule(seed=7)
    other.setup()
    assert (random.random(), np.random.rand()) == (random.Random(123).random(), np.random.RandomState(123).rand())
    assert not torch.equal(a.train_set.tensors[0], other.train_set.tensors[0])


def test_mnist1d_val_fraction_holds_out_train():
    dm = MNIST1DDataModule(val_fraction=0.25)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3000, 1000, 1000)
    full = MNIST1DDataModule()
    full.setup()
    # train + val is a permutation of the full train split (rows sorted by first feature).
    rows = torch.cat([dm.train_set.tensors[0], dm.val_set.tensors[0]])
    full_rows = full.train_set.tensors[0]
    assert torch.equal(rows[rows[:, 0].argsort()], full_rows[full_rows[:, 0].argsort()])


@pytest.mark.parametrize("val_fraction", [-0.1, 1.0])
def test_mnist1d_bad_val_fraction(val_fraction):
    with pytest.raises(ValueError, match=rf"val_fraction must be in \[0, 1\), got {val_fraction}"):
        MNIST1DDataModule(val_fraction=val_fraction)


def test_loader_settings():
    dm = MNIST1DDataModule(num_workers=2)
    dm.setup()
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.persistent_workers and train.num_workers == 2 and not train.drop_last
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler)
    default = MNIST1DDataModule()
    default.setup()
    assert not default.train_dataloader().persistent_workers


# --- digits --------------------------------------------------------------------


def test_digits_shapes_and_deterministic_shuffle():
    dm = DigitsDataModule()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (1348, 449)
    assert dm.test_set is dm.val_set
    x, y = dm.train_set.tensors
    assert x.shape == (1348, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1
    # Each fit gets the same shuffled order; the order is not the stored one.
    first = [yb for _, yb in dm.train_dataloader()]
    second = [yb for _, yb in dm.train_dataloader()]
    assert all(torch.equal(p, q) for p, q in zip(first, second))
    assert not torch.equal(torch.cat(first), y) and torch.equal(torch.cat(first).sort().values, y.sort().values)
    assert sum(len(b) for b in first) == 1348  # drop_last=False keeps the short batch


@pytest.mark.parametrize("val_fraction", [0.0, 1.0])
def test_digits_bad_val_fraction(val_fraction):
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        DigitsDataModule(val_fraction=val_fraction)


def test_loaders_before_setup_raise():
    with pytest.raises(RuntimeError, match=r"DigitsDataModule.setup\(\) must be called"):
        DigitsDataModule().train_dataloader()


# --- MNIST, CIFAR-10 and OpenLTH's recipes (examples/configs/openlth_*.yaml) on small files in their formats ---

CONFIGS = Path(__file__).parents[2] / "examples" / "configs"


def write_cifar_files(directory: Path, per_batch: int = 4, n_test: int = 6) -> dict[str, dict]:
    """CIFAR-10's python version: six pickled dicts with bytes keys, as the real archive holds them."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        batches[name] = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"filenames": [b"x.png"] * n}
        with open(directory / name, "wb") as f:
            pickle.dump(batches[name], f)
    return batches


def test_mnist_reads_idx_files_with_mnist_statistics(tmp_path):
    arrays = write_fashion_files(tmp_path)  # the same IDX names and layout as Fashion-MNIST
    dm = MNISTDataModule(str(tmp_path), val_size=0)
    dm.setup()
    assert dm.val_set is dm.test_set and len(dm.train_set) == 40
    expected = (torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255 - MNIST_MEAN) / MNIST_STD
    assert torch.allclose(dm.test_set.tensors[0][:, 0], expected)
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\[\.gz\] not found in .*download=True"):
        MNISTDataModule(str(tmp_path / "empty")).setup()


@pytest.mark.parametrize("inside", [False, True])
def test_cifar10_reads_the_python_batches_without_downloading(tmp_path, inside):
    folder = tmp_path / "cifar-10-batches-py" if inside else tmp_path
    batches = write_cifar_files(folder)
    dm = CIFAR10DataModule(str(tmp_path), val_size=5, seed=1)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 6)
    x, y = dm.test_set.tensors
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and y.tolist() == batches["test_batch"][b"labels"]
    row = batches["test_batch"][b"data"][2]
    # Each row holds the red, green and blue 32 x 32 planes in turn, rows of pixels within a plane.
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        value = (row[c * 1024 + h * 32 + w] / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        assert x[2, c, h, w].item() == pytest.approx(value, abs=1e-5)
    train_labels = sorted(dm.train_set.tensors[1].tolist() + dm.val_set.tensors[1].tolist())
    assert train_labels == sorted(v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"])


def test_cifar10_errors_name_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 batches .* not found in .*cifar-10-batches-py.*download"):
        CIFAR10DataModule(str(tmp_path)).setup()
    write_cifar_files(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 batch files \['data_batch_3'\] not found"):
        CIFAR10DataModule(str(tmp_path), val_size=0).setup()
    (tmp_path / "bad").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"bad: data of shape \(2, 10\) and 2 labels; expected \(N, 3072\)"):
        read_cifar10_batch(tmp_path / "bad")
    (tmp_path / "text").write_text("not a pickle")
    with pytest.raises(ValueError, match=r"cannot read CIFAR-10 batch .*text"):
        read_cifar10_batch(tmp_path / "text")


def test_random_flip_crop_returns_a_flipped_shifted_copy_of_each_image():
    torch.manual_seed(0)
    x = torch.randn(16, 2, 6, 6)
    y = random_flip_crop(x, padding=1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    flipped = torch.nn.functional.pad(x.flip(3), (1, 1, 1, 1))
    seen = set()
    for i in range(len(x)):
        options = [(f, dy, dx) for f, source in ((0, padded), (1, flipped)) for dy in range(3) for dx in range(3)
                   if torch.equal(y[i], source[i, :, dy:dy + 6, dx:dx + 6])]
        assert options, i
        seen.add(options[0])
    assert len(seen) > 4  # offsets and flips differ between images


def _recipe(name: str, tmp_path: Path, data_dir: Path) -> Path:
    """The config with its data in ``data_dir``, 3 steps a round, 2 rounds, the rewind point at step 1."""
    config = yaml.safe_load((CONFIGS / name).read_text())
    config["trainer"].pop("max_epochs")
    config["trainer"].update(max_steps=3, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path)
    rewind, imp = config["trainer"]["callbacks"]
    rewind["init_args"]["step"] = 1
    imp["init_args"]["rounds"] = 1
    config["data"]["init_args"].update(data_dir=str(data_dir), batch_size=4)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("name", ["openlth_lenet_mnist.yaml", "openlth_resnet20_cifar10.yaml",
                                  "openlth_vgg16_cifar10.yaml"])
def test_openlth_recipes_parse_and_run_a_few_steps(tmp_path, name, monkeypatch):
    data = tmp_path / "data"
    (write_fashion_files if "mnist" in name else write_cifar_files)(data)
    full = yaml.safe_load((CONFIGS / name).read_text())
    imp = full["trainer"]["callbacks"][1]["init_args"]
    assert (full["model"]["init_args"]["lr"], imp["pruning_fraction"], imp["allocation"]) == (0.1, 0.2, "global")
    monkeypatch.setattr(sys, "argv", ["lt-lightning"])
    assert main(["fit", "--config", str(_recipe(name, tmp_path, data))]) == 0
    run = tmp_path / full["trainer"]["logger"]["init_args"]["name"] / "version_0"
    history = json.loads((run / "imp_history.json").read_text())
    history = history["rounds"] if isinstance(history, dict) else history
    assert [r["round"] for r in history] == [0, 1] and history[1]["start_step"] == 1
    assert history[1]["density"] == pytest.approx(0.8, abs=0.01)
    if "keep_dense" in imp:  # the output layer is never pruned, as OpenLTH's pruning_layers_to_ignore
        assert history[1]["layer_density"]["model.out.weight"] == 1.0
    assert os.path.isfile(run / "config.yaml")
