"""Offline ``LightningDataModule``s: MNIST-1D, MNIST and Fashion-MNIST (local IDX files), CIFAR-10 (a local copy
of its python version), sklearn digits.

Each ``train_dataloader()`` call shuffles with a fresh generator seeded from
``seed``, so every ``fit`` (e.g. every pruning round) sees the same order.
"""

import gzip
import pickle
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST1D_CACHE: dict[int, dict[str, np.ndarray]] = {}


def _split(n: int, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, val) index split of ``range(n)``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def _check_fraction(name: str, value: float, allow_zero: bool) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")


class _TensorDataModule(L.LightningDataModule):
    """Serves in-memory ``TensorDataset``s filled by the subclass's ``setup``."""

    def __init__(self, batch_size: int, seed: int, num_workers: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def _loader(self, dataset: TensorDataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must be called before the loaders")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


def _mnist1d_arrays(seed: int) -> dict[str, np.ndarray]:
    if seed not in _MNIST1D_CACHE:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = seed
        # make_dataset reseeds the global `random`/NumPy RNGs; restore them so
        # building a datamodule does not change the user's seeded streams.
        states = random.getstate(), np.random.get_state()
        try:
            data = make_dataset(args)
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
        _MNIST1D_CACHE[seed] = {k: data[k] for k in ("x", "y", "x_test", "y_test")}
    return _MNIST1D_CACHE[seed]


class MNIST1DDataModule(_TensorDataModule):
    """MNIST-1D (Greydanus 2020) generated offline: 4000 train / 1000 test, 40 features.

    The val loader serves the test split, as the MNIST-1D lottery-ticket notebook
    evaluates on it, unless ``val_fraction > 0`` holds out part of the train split.

    >>> dm = MNIST1DDataModule(val_fraction=0.1); dm.setup("fit")
    >>> len(dm.train_set), len(dm.val_set), len(dm.test_set)
    (3600, 400, 1000)
    """

    def __init__(
        self, batch_size: int = 100, seed: int = 42, val_fraction: float = 0.0, num_workers: int = 0
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        _check_fraction("val_fraction", val_fraction, allow_zero=True)
        self.val_fraction = val_fraction
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        arrays = _mnist1d_arrays(self.seed)
        x = torch.tensor(arrays["x"], dtype=torch.float32)
        y = torch.tensor(arrays["y"], dtype=torch.int64)
        self.test_set = TensorDataset(
            torch.tensor(arrays["x_test"], dtype=torch.float32),
            torch.tensor(arrays["y_test"], dtype=torch.int64),
        )
        if self.val_fraction == 0:
            self.train_set, self.val_set = TensorDataset(x, y), self.test_set
            return
        train, val = _split(len(y), max(1, round(len(y) * self.val_fraction)), self.seed)
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (LeCun's MNIST format), gzipped or not, into a tensor."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: bad magic number {raw[:4].hex()}")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ValueError(f"{path}: truncated header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    if len(raw) != offset + dtype.itemsize * int(np.prod(shape)):
        raise ValueError(f"{path}: size {len(raw)} bytes does not match header shape {shape}")
    data = np.frombuffer(raw, dtype, offset=offset).reshape(shape)
    return torch.from_numpy(data.astype(dtype.newbyteorder("="), copy=True))


def _read_idx_split(data_dir: Path, prefix: str, missing: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) of the ``train`` or ``t10k`` split; ``missing`` ends the error."""
    tensors = []
    for kind, ndim in (("images-idx3", 3), ("labels-idx1", 1)):
        name = f"{prefix}-{kind}-ubyte"
        found = [p for p in (data_dir / f"{name}.gz", data_dir / name) if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{name}[.gz] not found in {data_dir}. {missing}")
        tensor = read_idx(found[0])
        if tensor.dtype != torch.uint8 or tensor.ndim != ndim:
            raise ValueError(
                f"{found[0]}: expected {ndim}-d uint8 data, got {tensor.ndim}-d {tensor.dtype}"
            )
        tensors.append(tensor)
    images, labels = tensors
    if len(images) != len(labels):
        raise ValueError(f"{data_dir}: {len(images)} {prefix} images but {len(labels)} labels")
    return images, labels.long()


class _ImageDataModule(_TensorDataModule):
    """Image classification data read into memory by ``_load``; ``val_size`` train images are held out
    (``val_size=0``: the val loader serves the test set). Images are scaled to [0, 1] and normalized per channel
    with the dataset's published ``mean`` and ``std``."""

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __init__(self, data_dir: str, batch_size: int, val_size: int, download: bool, num_workers: int,
                 seed: int) -> None:
        super().__init__(batch_size, seed, num_workers)
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size!r}")
        self.data_dir, self.val_size, self.download = Path(data_dir), val_size, download

    def _torchvision(self, train: bool, download: bool) -> Any:
        raise NotImplementedError

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, H, W) or (N, H, W), and int64 labels (N,)."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                self._torchvision(train, download=True)

    def _dataset(self, images: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
        x = images.unsqueeze(1) if images.ndim == 3 else images
        shape = (1, -1, 1, 1)
        x = (x.float() / 255 - torch.tensor(self.mean).view(shape)) / torch.tensor(self.std).view(shape)
        return TensorDataset(x, labels.long())

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = self._load(train=True)
        if self.val_size >= len(labels):
            raise ValueError(
                f"val_size={self.val_size} leaves no training data out of {len(labels)}"
            )
        self.test_set = self._dataset(*self._load(train=False))
        if self.val_size == 0:
            self.train_set, self.val_set = self._dataset(images, labels), self.test_set
            return
        train, val = _split(len(labels), self.val_size, self.seed)
        self.train_set = self._dataset(images[train], labels[train])
        self.val_set = self._dataset(images[val], labels[val])


def _vision_dataset(name: str) -> Any:
    try:
        import torchvision.datasets
    except ImportError as err:
        raise ImportError("download=True needs torchvision: pip install 'lt-lightning[vision]'") from err
    return getattr(torchvision.datasets, name)


class _IDXDataModule(_ImageDataModule):
    """A 28x28 grey-scale dataset in LeCun's IDX files (``train-``/``t10k-images-idx3-ubyte[.gz]`` and labels).

    With ``download=True`` torchvision downloads into ``data_dir/<torchvision name>/raw`` and reads from there;
    otherwise the four IDX files must be in ``data_dir``.
    """

    torchvision_name = ""
    missing = ""

    def _torchvision(self, train: bool, download: bool) -> Any:
        return _vision_dataset(self.torchvision_name)(root=str(self.data_dir), train=train, download=download)

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.download:
            dataset = self._torchvision(train, download=False)
            return dataset.data, dataset.targets
        return _read_idx_split(self.data_dir, "train" if train else "t10k", self.missing)


class FashionMNISTDataModule(_IDXDataModule):
    """Fashion-MNIST (Xiao et al. 2017) from local IDX files; ``val_size`` train images are held out.

    With ``download=True`` torchvision downloads into ``data_dir/FashionMNIST/raw``
    and reads from there; otherwise the four IDX files must be in ``data_dir``.
    ``val_size=0`` makes the val loader serve the test set.
    """

    mean, std = (FASHION_MEAN,), (FASHION_STD,)
    torchvision_name = "FashionMNIST"
    missing = ("On Debian/Ubuntu `apt-get install dataset-fashion-mnist` provides the Fashion-MNIST files in "
               "/usr/share/datasets/fashion-mnist; or pass download=True (needs internet).")

    def __init__(
        self,
        data_dir: str = "/usr/share/datasets/fashion-mnist",
        batch_size: int = 60,
        val_size: int = 5000,
        download: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, val_size, download, num_workers, seed)
        self.save_hyperparameters()


class MNISTDataModule(_IDXDataModule):
    """MNIST (LeCun et al. 1998) from local IDX files, as :class:`FashionMNISTDataModule` (same file names and
    layout; torchvision's folder is ``data_dir/MNIST/raw``); normalized with MNIST's mean 0.1307 and std 0.3081.
    The default ``val_size`` holds out 5000 train images, as Frankle & Carbin (2019) do for early stopping."""

    mean, std = (MNIST_MEAN,), (MNIST_STD,)
    torchvision_name = "MNIST"
    missing = ("Put the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) there, or pass download=True "
               "(needs internet and torchvision).")

    def __init__(
        self,
        data_dir: str = "data/mnist",
        batch_size: int = 128,
        val_size: int = 5000,
        download: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, val_size, download, num_workers, seed)
        self.save_hyperparameters()


def read_cifar10_batch(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file of CIFAR-10's python version (a pickled dict with ``data``: N x 3072 uint8, rows of red,
    green then blue 32x32 planes, and ``labels``) as uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            # CIFAR-10's own format is a pickle, as torchvision reads it: load only files you trust.
            batch = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"cannot read CIFAR-10 batch {path}: {err}") from None
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()} if isinstance(batch, dict) else {}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch: expected a dict with 'data' and 'labels'")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path}: data of shape {data.shape} and {len(labels)} labels; expected (N, 3072) and N")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


class CIFAR10DataModule(_ImageDataModule):
    """CIFAR-10 (Krizhevsky 2009) from an existing local copy of its python version, read without downloading:
    ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` in ``data_dir`` or in ``data_dir/cifar-10-batches-py``
    (where torchvision and the ``cifar-10-python.tar.gz`` archive put them). ``download=True`` lets torchvision
    download and extract the archive into ``data_dir`` first (needs internet).

    ``augment=True`` (OpenLTH's default for CIFAR-10 training) flips each training image horizontally with
    probability 1/2 and crops it at a random offset from its 4-pixel zero padding, on the device after the batch
    is moved there, with the global torch RNG (so ``seed_everything`` fixes it); validation and test images are
    never augmented. ``val_size=0`` (OpenLTH's setting) makes the val loader serve the test set.
    """

    mean, std = CIFAR10_MEAN, CIFAR10_STD

    def __init__(
        self,
        data_dir: str = "data/cifar10",
        batch_size: int = 128,
        val_size: int = 5000,
        augment: bool = True,
        download: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, val_size, download, num_workers, seed)
        self.augment = augment
        self.save_hyperparameters()

    def _torchvision(self, train: bool, download: bool) -> Any:
        return _vision_dataset("CIFAR10")(root=str(self.data_dir), train=train, download=download)

    def _folder(self) -> Path:
        for folder in (self.data_dir, self.data_dir / "cifar-10-batches-py"):
            if (folder / "test_batch").is_file():
                return folder
        raise FileNotFoundError(
            f"CIFAR-10 batches (data_batch_1 .. data_batch_5, test_batch) not found in {self.data_dir} or "
            f"{self.data_dir / 'cifar-10-batches-py'}: extract cifar-10-python.tar.gz there, or pass download=True "
            "(needs internet and torchvision)."
        )

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        folder = self._folder()
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"CIFAR-10 batch files {missing} not found in {folder}")
        images, labels = zip(*(read_cifar10_batch(folder / n) for n in names))
        return torch.cat(images), torch.cat(labels)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not (self.augment and self.trainer is not None and self.trainer.training):
            return batch
        x, y = batch
        return random_flip_crop(x), y


def random_flip_crop(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) flipped horizontally with probability 1/2, then cropped back to H x W at a
    random offset from its zero padding of ``padding`` pixels (the standard CIFAR augmentation).

    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> y = random_flip_crop(x, padding=0)
    >>> torch.equal(y, x) or torch.equal(y, x.flip(3))
    True
    """
    n, _, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    if padding == 0:
        return x
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    index = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[index, channels, rows, cols]


class DigitsDataModule(_TensorDataModule):
    """scikit-learn's 8x8 digits: 1797 samples, 64 features in [0, 1]; for fast tests.

    There is no separate test split: the test loader serves the val split.

    >>> dm = DigitsDataModule(); dm.setup()
    >>> len(dm.train_set), len(dm.val_set), tuple(dm.train_set[0][0].shape)
    (1348, 449, (64,))
    """

    def __init__(self, batch_size: int = 64, seed: int = 0, val_fraction: float = 0.25) -> None:
        super().__init__(batch_size, seed, num_workers=0)
        _check_fraction("val_fraction", val_fraction, allow_zero=False)
        self.val_fraction = val_fraction
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
        y = torch.tensor(digits.target, dtype=torch.int64)
        train, val = _split(len(y), max(1, round(len(y) * self.val_fraction)), self.seed)
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = self.test_set = TensorDataset(x[val], y[val])
