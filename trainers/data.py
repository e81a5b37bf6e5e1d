"""Datasets as whole on-device tensors, batched augmentation and index batches.

Every dataset is loaded once into uint8 NCHW tensors on the target device (CIFAR-10 is 150 MB), so
training needs no DataLoader or worker processes: an epoch is a list of index batches, and each
batch is gathered, normalised and augmented on the device in a few kernels (the airbench style).

Datasets:
- ``cifar10`` / ``cifar100``: torchvision's classes, read from (or downloaded into) ``data_dir``.
- ``synthetic``: seeded, learnable, in-memory 32x32 images of any size; for tests and smoke runs.
- ``digits``: scikit-learn's bundled 8x8 digits (1797 images) upscaled to 32x32x3; no download.

``split="search"`` holds out part of the *training* set as validation, so a hyperparameter search
never sees the test set; ``split="final"`` trains on the whole training set and evaluates on test.
"""

from __future__ import annotations

import fcntl

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trainers.config import DATASETS as _DATASET_CLASSES
from trainers.errors import DataError  # defined without torch, for the CLIs

DATASETS = tuple(_DATASET_CLASSES)  # one list, in trainers.config
SPLITS = ("search", "final")

# The authors' constants, per dataset, each "computed from entire CIFAR-10 [-100] training set"
# (datasets/cifar10.lua, datasets/cifar100.lua).
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)
CIFAR100_MEAN = (129.3, 124.1, 112.4)
CIFAR100_STD = (68.2, 65.4, 70.4)
CIFAR_STATS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}

# The digits "official" train/test split never depends on the run's seed, so every run, search or
# final, is scored against the same test images.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

# Probability that the authors' cyclic shift ("Jigsaw" in datasets/transforms.lua) fires at all.
CYCLIC_SHIFT_P = 2.0 / 3.0


@dataclass
class DataSplits:
    """A dataset split into the images to train on and the images to evaluate on, all on one device."""

    name: str
    num_classes: int
    train_x: torch.Tensor  # uint8 [N, 3, H, W]
    train_y: torch.Tensor  # int64 [N]
    eval_x: torch.Tensor  # uint8 validation set (split="search") or test set (split="final")
    eval_y: torch.Tensor
    eval_name: str  # "val" or "test"
    mean: tuple[float, float, float]  # per channel, 0-255 scale
    std: tuple[float, float, float]

    def to(self, device: str | torch.device) -> "DataSplits":
        """The same splits with every tensor moved to `device`."""
        return replace(self, train_x=self.train_x.to(device), train_y=self.train_y.to(device),
                       eval_x=self.eval_x.to(device), eval_y=self.eval_y.to(device))


# --- loading --------------------------------------------------------------------------------------

def load_dataset(name: str, data_dir: str | Path = "data", split: str = "search", val_fraction: float = 0.1,
                 seed: int = 0, train_fraction: float = 1.0, download: bool = False, device: str | torch.device = "cpu",
                 synthetic_train_size: int = 2000, synthetic_test_size: int = 500,
                 synthetic_num_classes: int = 10) -> DataSplits:
    """Load dataset `name` and split it for a search (train/val) or a final run (train/test).

    split="search" splits the training set deterministically by `seed` into train (1 - val_fraction)
    and val (val_fraction); split="final" returns the whole training set and the test set. Then
    `train_fraction` < 1 keeps that share of the training images (a subset fixed by `seed`). `data_dir`
    and `download` matter for CIFAR only; the synthetic_* arguments for "synthetic" only. mean/std are
    the authors' constants of that CIFAR (`CIFAR_STATS`), otherwise the returned training images'.
    Raises DataError for anything the user can fix (unknown name, missing or corrupt files, ...).
    """
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for dataset {key!r}; use one of: {', '.join(SPLITS)}")
    if split == "search" and not 0.0 < float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be strictly between 0 and 1 for split='search' on {key!r}, "
                        f"got {val_fraction!r}")

    if key in ("cifar10", "cifar100"):
        train_x, train_y, test_x, test_y, num_classes = _load_cifar(key, data_dir, download)
    elif key == "synthetic":
        train_x, train_y, test_x, test_y, num_classes = _make_synthetic(
            synthetic_train_size, synthetic_test_size, synthetic_num_classes, seed)
    else:
        train_x, train_y, test_x, test_y, num_classes = _load_digits()

    if split == "search":
        train_idx, val_idx = _search_split(len(train_y), val_fraction, seed, key)
        eval_x, eval_y, eval_name = train_x[val_idx], train_y[val_idx], "val"
        train_x, train_y = train_x[train_idx], train_y[train_idx]
    else:
        eval_x, eval_y, eval_name = test_x, test_y, "test"
    if not 0.0 < float(train_fraction) <= 1.0:
        raise DataError(f"train_fraction must be in (0, 1] for {key!r}, got {train_fraction!r}")
    if train_fraction < 1.0:
        keep = _subset(len(train_y), train_fraction, seed)
        train_x, train_y = train_x[keep], train_y[keep]

    if key in CIFAR_STATS:
        mean, std = CIFAR_STATS[key]
    else:
        mean, std = channel_stats(train_x)
    return DataSplits(name=key, num_classes=num_classes, train_x=train_x, train_y=train_y,
                      eval_x=eval_x, eval_y=eval_y, eval_name=eval_name, mean=mean, std=std).to(device)


def _search_split(n: int, val_fraction: float, seed: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted train and val indices of a seeded random split of range(n); both parts non-empty."""
    if n < 2:
        raise DataError(f"dataset {name!r} has {n} training image(s); a search split needs at least 2")
    n_val = min(max(int(round(n * val_fraction)), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    # Sorted so that a subset keeps the dataset's own order; batches() shuffles anyway.
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _subset(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded `fraction` of range(n), at least one."""
    k = max(int(round(n * fraction)), 1)
    # seed + 1: a different draw from the validation split's, which used `seed` itself.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    return perm[:k].sort().values


def channel_stats(x_uint8: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 NCHW images, on the 0-255 scale."""
    x = x_uint8.to(torch.float64).transpose(0, 1).reshape(x_uint8.shape[1], -1)
    mean = x.mean(1)
    std = x.std(1, correction=0).clamp_min(1e-3)  # a constant channel must not divide by zero
    return tuple(mean.tolist()), tuple(std.tolist())


# --- CIFAR ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _CifarInfo:
    title: str
    num_classes: int


_CIFAR = {"cifar10": _CifarInfo("CIFAR-10", 10), "cifar100": _CifarInfo("CIFAR-100", 100)}


def _cifar_class(key: str):
    # Imported here so that the synthetic and digits datasets work without touching torchvision.
    from torchvision.datasets import CIFAR10, CIFAR100
    return CIFAR10 if key == "cifar10" else CIFAR100


def _cifar_files(cls) -> list[str]:
    return [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _load_cifar(key: str, data_dir: str | Path, download: bool):
    """(train_x, train_y, test_x, test_y, num_classes) of CIFAR-10/100 as uint8 NCHW / int64 tensors."""
    info, cls = _CIFAR[key], _cifar_class(key)
    root = Path(data_dir).expanduser().resolve()
    folder = root / cls.base_folder
    if download:
        _download_cifar(cls, info, root)
    missing = [f for f in _cifar_files(cls) if not (folder / f).is_file()]
    if missing:
        what = f"expected {cls.base_folder}/" if len(missing) == len(_cifar_files(cls)) else \
            f"{cls.base_folder}/ lacks {', '.join(missing)}"
        raise DataError(f"{info.title} not found in {root} ({what}); rerun with download enabled "
                        f"(--download / dataset.download: true) or place the extracted archive there")
    try:
        train, test = cls(root=str(root), train=True), cls(root=str(root), train=False)
        data = [(_nchw(ds.data), torch.as_tensor(ds.targets, dtype=torch.int64)) for ds in (train, test)]
    # torchvision reports a failed md5 check as RuntimeError; a truncated or foreign file surfaces
    # from pickle/numpy as any of the others.
    except Exception as e:  # noqa: BLE001 -- every failure here means the files on disk are bad
        raise DataError(f"{info.title} in {folder} is corrupt or incomplete ({_one_line(e)}); delete "
                        f"{folder} and rerun with download enabled, or replace it with a fresh "
                        f"extraction of {cls.url}") from e
    for x, y in data:
        if len(x) != len(y) or (len(y) and (int(y.min()) < 0 or int(y.max()) >= info.num_classes)):
            raise DataError(f"{info.title} in {folder} is corrupt: {len(x)} images, {len(y)} labels, "
                            f"labels must lie in [0, {info.num_classes}); replace it with a fresh "
                            f"extraction of {cls.url}")
    (train_x, train_y), (test_x, test_y) = data
    return train_x, train_y, test_x, test_y, info.num_classes


def _download_cifar(cls, info: _CifarInfo, root: Path) -> None:
    """Download and extract the archive into `root` unless intact files are already there."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        # Trials starting together on a fresh node share data_dir: one downloads, the others
        # wait on the lock and then find intact files.
        with open(root / ".download.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # The constructor's download=True is torchvision's only public download path; it
            # skips the download when the files are present and their md5 sums match.
            cls(root=str(root), train=True, download=True)
    # Offline: URLError (an OSError); a bad or partial archive: RuntimeError (md5) or a TarError.
    except Exception as e:  # noqa: BLE001 -- whatever went wrong, the user's fix is the same
        raise DataError(f"could not download {info.title} into {root} ({_one_line(e)}); check the "
                        f"network, or fetch {cls.url} by hand and extract it there "
                        f"(giving {root / cls.base_folder}/)") from e


def _nchw(data_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data_nhwc, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "no details"
    return f"{type(e).__name__}: {text}"


# --- synthetic ------------------------------------------------------------------------------------

SYNTHETIC_SIZE = 32
_SYNTH_PROTO_RES = 6  # prototypes are random 6x6 patterns: smooth, yet distinct for 100 classes
_SYNTH_MAX_SHIFT = 3  # pixels each way
_SYNTH_NOISE = 0.10  # per-pixel Gaussian noise, fraction of the 0-255 range
_SYNTH_CHUNK = 4096  # images generated per step, bounding the float32 scratch memory


def _make_synthetic(train_size: int, test_size: int, num_classes: int, seed: int):
    """Seeded, learnable images: a smooth random prototype per class, then per-image shift and noise.

    Train and test share the prototypes but draw their per-image randomness from separate streams,
    so changing one size never changes the other set.
    """
    if int(num_classes) < 2:
        raise DataError(f"synthetic dataset needs synthetic_num_classes >= 2, got {num_classes!r}")
    for what, n in (("synthetic_train_size", train_size), ("synthetic_test_size", test_size)):
        if int(n) < 1:
            raise DataError(f"synthetic dataset needs {what} >= 1, got {n!r}")
    side = SYNTHETIC_SIZE + 2 * _SYNTH_MAX_SHIFT
    low = torch.rand(num_classes, 3, _SYNTH_PROTO_RES, _SYNTH_PROTO_RES, generator=_stream(seed, 0))
    protos = F.interpolate(low, size=(side, side), mode="bicubic", align_corners=False).clamp_(0, 1)
    train_x, train_y = _synthetic_images(protos, train_size, _stream(seed, 1))
    test_x, test_y = _synthetic_images(protos, test_size, _stream(seed, 2))
    return train_x, train_y, test_x, test_y, int(num_classes)


def _stream(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator per (seed, stream); SeedSequence decorrelates nearby seeds."""
    state = np.random.SeedSequence([abs(int(seed)), int(seed < 0), stream]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def _synthetic_images(protos: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    c = protos.shape[0]
    # Balanced labels (every class n // c or n // c + 1 times) in random order.
    labels = (torch.arange(n) % c)[torch.randperm(n, generator=gen)]
    out = torch.empty(n, 3, SYNTHETIC_SIZE, SYNTHETIC_SIZE, dtype=torch.uint8)
    for start in range(0, n, _SYNTH_CHUNK):
        y = labels[start:start + _SYNTH_CHUNK]
        b = len(y)
        off = torch.randint(0, 2 * _SYNTH_MAX_SHIFT + 1, (2, b), generator=gen)
        grid = torch.arange(SYNTHETIC_SIZE)
        img = _gather_pixels(protos[y], off[0, :, None] + grid, off[1, :, None] + grid)
        # Per-image contrast and per-channel brightness, so that no single pixel gives the class away.
        contrast = 0.6 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen)
        brightness = 0.06 * torch.randn(b, 3, 1, 1, generator=gen)
        img = 0.5 + contrast * (img - 0.5) + brightness
        img += _SYNTH_NOISE * torch.randn(img.shape, generator=gen)
        out[start:start + b] = (img * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return out, labels


# --- digits ---------------------------------------------------------------------------------------

def _load_digits():
    """scikit-learn's 8x8 digits as 32x32x3 uint8, with a fixed stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.from_numpy(digits.images).float().unsqueeze(1) * (255.0 / 16.0)  # 0..16 -> 0..255
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = x.round_().clamp_(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)
    y = torch.from_numpy(digits.target).to(torch.int64)
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_FRACTION,
                                           random_state=DIGITS_SPLIT_SEED, stratify=digits.target)
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10


# --- per-batch transforms -------------------------------------------------------------------------

def normalize(x_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel as float32 on x's device; the evaluation transform."""
    m = torch.tensor(mean, dtype=torch.float32, device=x_uint8.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x_uint8.device).view(1, -1, 1, 1)
    return (x_uint8.to(torch.float32) - m) / s


def augment(x_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float], generator: torch.Generator,
            crop_pad: int = 4, flip: bool = True, cyclic_shift: bool = False) -> torch.Tensor:
    """The authors' training augmentation of a uint8 NCHW batch, as float32 on x's device.

    In order: normalise; horizontal flip (p=0.5); random HxW crop of the image zero-padded by
    `crop_pad` (zero after normalising, i.e. the mean colour); optionally the cyclic shift: with
    p=2/3 roll the image along its width or its height (half each) by a random offset, wrapping.
    All three steps only move pixels, so they are composed into one source row and column per
    output pixel and the batch is gathered once; random draws come from the CPU `generator`.
    """
    if x_uint8.dim() != 4:
        raise ValueError(f"augment expects an NCHW batch, got shape {tuple(x_uint8.shape)}")
    if crop_pad < 0:
        raise ValueError(f"crop_pad must be >= 0, got {crop_pad}")
    b, _, h, w = x_uint8.shape
    rows = torch.arange(h).expand(b, h)
    cols = torch.arange(w).expand(b, w)
    # Walk back from the output to the source: undo the shift, then the crop, then the flip.
    if cyclic_shift:
        rows, cols = _cyclic_shift_source(rows, cols, generator)
    if crop_pad:
        off = torch.randint(0, 2 * crop_pad + 1, (2, b), generator=generator) - crop_pad
        rows, cols = rows + off[0, :, None], cols + off[1, :, None]
    if flip:
        flipped = torch.rand(b, generator=generator) < 0.5
        # Mirroring maps the padding to the padding (c < 0 <-> w-1-c >= w), so validity survives it.
        cols = torch.where(flipped[:, None], w - 1 - cols, cols)
    row_ok, col_ok = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    dev = x_uint8.device
    pixels = _gather_pixels(x_uint8, rows.clamp(0, h - 1).to(dev), cols.clamp(0, w - 1).to(dev))
    out = normalize(pixels, mean, std)
    if crop_pad:
        inside = row_ok.to(dev)[:, None, :, None] & col_ok.to(dev)[:, None, None, :]
        out = out.masked_fill_(~inside, 0.0)
    return out


def _cyclic_shift_source(rows: torch.Tensor, cols: torch.Tensor, generator: torch.Generator):
    """Source coordinates of the authors' "Jigsaw": out[j] = in[(j + d) % size], d uniform in 1..size."""
    b, h = rows.shape
    w = cols.shape[1]
    fires = torch.rand(b, generator=generator) < CYCLIC_SHIFT_P
    along_width = torch.rand(b, generator=generator) < 0.5
    d_w = torch.randint(1, w + 1, (b,), generator=generator)
    d_h = torch.randint(1, h + 1, (b,), generator=generator)
    d_w = torch.where(fires & along_width, d_w, 0)
    d_h = torch.where(fires & ~along_width, d_h, 0)
    return (rows + d_h[:, None]) % h, (cols + d_w[:, None]) % w


def _gather_pixels(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[i, c, r, s] = x[i, c, rows[i, r], cols[i, s]]: a per-image crop/flip/roll in one gather."""
    n, c = x.shape[:2]
    i = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return x[i, ch, rows[:, None, :, None], cols[:, None, None, :]]


# --- batches --------------------------------------------------------------------------------------

def batches(n: int, batch_size: int, generator: torch.Generator | None, drop_last: bool) -> list[torch.Tensor]:
    """One epoch of index batches (int64, CPU): a permutation of range(n) drawn from `generator`, or
    range(n) in order when it is None, cut into `batch_size` pieces; a short last piece is dropped
    when `drop_last`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    parts = list(order.split(batch_size)) if n else []  # split() of an empty tensor gives [empty]
    if drop_last and parts and len(parts[-1]) < batch_size:
        parts.pop()
    return parts
