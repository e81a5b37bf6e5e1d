"""Tests for trainers.data: loaders (real CIFAR on-disk format, synthetic, digits), augment, batches."""

from __future__ import annotations

import os
import pickle
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainers.data import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, DATASETS,
                           DataError, DataSplits, augment, batches, channel_stats, load_dataset,
                           normalize)

torch.set_num_threads(2)

CIFAR10_TRAIN_PER_BATCH = 6  # x 5 batches = 30 training images
CIFAR10_TEST = 10
CIFAR100_TRAIN = 40
CIFAR100_TEST = 12


# --- a tiny CIFAR in the real on-disk format ------------------------------------------------------

def _images(first_index: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random CIFAR rows (uint8 [n, 3072], R then G then B planes, each 32x32 row-major) whose first
    two red pixels spell the image's global index, so tests can tell which image went where."""
    rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    idx = np.arange(first_index, first_index + n)
    rows[:, 0], rows[:, 1] = idx // 256, idx % 256
    return rows


def _dump(path, obj) -> None:
    # torchvision unpickles with encoding="latin1" and reads str keys ("data", "labels"): what the
    # original Python 2 pickles turn into under Python 3. Bytes keys would not be found.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.fixture
def cifar10_dir(tmp_path):
    """data_dir holding cifar-10-batches-py/ with 5 train batches, a test batch and batches.meta."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    train_x, train_y = [], []
    for b in range(5):
        x = _images(b * CIFAR10_TRAIN_PER_BATCH, CIFAR10_TRAIN_PER_BATCH, rng)
        y = [int(v) for v in rng.integers(0, 10, CIFAR10_TRAIN_PER_BATCH)]
        _dump(folder / f"data_batch_{b + 1}", {"batch_label": f"training batch {b + 1} of 5", "labels": y,
                                               "data": x, "filenames": [f"img{i}.png" for i in range(len(y))]})
        train_x.append(x)
        train_y += y
    test_x = _images(1000, CIFAR10_TEST, rng)
    test_y = [int(v) for v in rng.integers(0, 10, CIFAR10_TEST)]
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_y, "data": test_x,
                                  "filenames": [f"t{i}.png" for i in range(CIFAR10_TEST)]})
    _dump(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 6,
                                    "num_vis": 3072})
    return tmp_path, (np.concatenate(train_x), np.array(train_y)), (test_x, np.array(test_y))


@pytest.fixture
def cifar100_dir(tmp_path):
    """data_dir holding cifar-100-python/ with train, test and meta (fine and coarse labels)."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    sets = {}
    for split, first, n in (("train", 0, CIFAR100_TRAIN), ("test", 1000, CIFAR100_TEST)):
        x = _images(first, n, rng)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        _dump(folder / split, {"filenames": [f"{split}{i}.png" for i in range(n)], "batch_label": split,
                               "fine_labels": fine, "coarse_labels": [v // 5 for v in fine], "data": x})
        sets[split] = (x, np.array(fine))
    _dump(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                            "coarse_label_names": [f"c{i}" for i in range(20)]})
    return tmp_path, sets["train"], sets["test"]


@pytest.fixture
def skip_md5(monkeypatch):
    """Skip only the md5 comparison: torchvision's file checks (CIFAR10._check_integrity and
    _load_meta) both call cifar.check_integrity; a missing file still fails it."""
    import torchvision.datasets.cifar as cifar
    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def _index_of(x: torch.Tensor) -> torch.Tensor:
    """The global image index written into each image's first two red pixels by _images."""
    return x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()


def _expected_nchw(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows.reshape(-1, 3, 32, 32))


# --- CIFAR ----------------------------------------------------------------------------------------

def test_cifar10_final_round_trips_the_pickles(cifar10_dir, skip_md5):
    root, (train_rows, train_y), (test_rows, test_y) = cifar10_dir
    ds = load_dataset("cifar10", data_dir=root, split="final")
    assert isinstance(ds, DataSplits)
    assert (ds.name, ds.num_classes, ds.eval_name) == ("cifar10", 10, "test")
    assert ds.train_x.shape == (30, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.train_y.shape == (30,) and ds.train_y.dtype == torch.int64
    assert ds.eval_x.shape == (CIFAR10_TEST, 3, 32, 32) and ds.eval_x.dtype == torch.uint8
    assert ds.train_x.is_contiguous()
    assert torch.equal(ds.train_x, _expected_nchw(train_rows))
    assert torch.equal(ds.train_y, torch.from_numpy(train_y))
    assert torch.equal(ds.eval_x, _expected_nchw(test_rows))
    assert torch.equal(ds.eval_y, torch.from_numpy(test_y))
    # Spot-check the layout by hand: row r, column c of the green plane is byte 1024 + 32 r + c.
    assert ds.train_x[7, 1, 5, 9].item() == train_rows[7, 1024 + 32 * 5 + 9]
    # The authors' datasets/cifar10.lua constants.
    assert ds.mean == CIFAR10_MEAN == (125.3, 123.0, 113.9)
    assert ds.std == CIFAR10_STD == (63.0, 62.1, 66.7)


def test_cifar10_search_split(cifar10_dir, skip_md5):
    root, (train_rows, train_y), _ = cifar10_dir
    ds = load_dataset("cifar10", data_dir=root, split="search", val_fraction=0.2, seed=3)
    assert ds.eval_name == "val"
    assert (len(ds.train_y), len(ds.eval_y)) == (24, 6)
    tr, va = _index_of(ds.train_x), _index_of(ds.eval_x)
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(30))
    # Labels travel with their images, and the test images never appear.
    assert torch.equal(ds.train_y, torch.from_numpy(train_y)[tr])
    assert torch.equal(ds.eval_y, torch.from_numpy(train_y)[va])
    assert torch.equal(ds.eval_x, _expected_nchw(train_rows)[va])

    again = load_dataset("cifar10", data_dir=root, split="search", val_fraction=0.2, seed=3)
    assert torch.equal(_index_of(again.eval_x), va)
    other = load_dataset("cifar10", data_dir=root, split="search", val_fraction=0.2, seed=4)
    assert not torch.equal(_index_of(other.eval_x), va)


def test_cifar100_round_trips_fine_labels(cifar100_dir, skip_md5):
    root, (train_rows, train_fine), (test_rows, test_fine) = cifar100_dir
    ds = load_dataset("cifar100", data_dir=root, split="final")
    assert (ds.name, ds.num_classes, ds.eval_name) == ("cifar100", 100, "test")
    assert torch.equal(ds.train_x, _expected_nchw(train_rows))
    assert torch.equal(ds.train_y, torch.from_numpy(train_fine))
    assert torch.equal(ds.eval_x, _expected_nchw(test_rows))
    assert torch.equal(ds.eval_y, torch.from_numpy(test_fine))
    # CIFAR-100's own statistics (the authors' datasets/cifar100.lua), not CIFAR-10's.
    assert ds.mean == CIFAR100_MEAN == (129.3, 124.1, 112.4)
    assert ds.std == CIFAR100_STD == (68.2, 65.4, 70.4)

    search = load_dataset("cifar100", data_dir=root, split="search", val_fraction=0.25, seed=0)
    assert (len(search.train_y), len(search.eval_y)) == (30, 10)


def _assert_one_line(err: DataError, *parts: str) -> str:
    msg = str(err)
    assert "\n" not in msg and msg.strip() == msg
    for p in parts:
        assert p in msg, (p, msg)
    return msg


@pytest.mark.parametrize("name,folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_without_download(tmp_path, name, folder):
    where = tmp_path / "nowhere"
    with pytest.raises(DataError) as exc:
        load_dataset(name, data_dir=where, download=False)
    msg = _assert_one_line(exc.value, str(where.resolve()), folder, "download")
    assert "not found" in msg
    assert not where.exists()  # no download was attempted


def test_partly_missing_cifar_names_the_missing_file(cifar10_dir, skip_md5):
    root = cifar10_dir[0]
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", data_dir=root)
    _assert_one_line(exc.value, str(root.resolve()), "test_batch")


def test_cifar_failing_md5_is_reported_as_corrupt(cifar10_dir):
    # No md5 patch: the fixture's files are not the real ones, so torchvision's check fails.
    root = cifar10_dir[0]
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", data_dir=root)
    _assert_one_line(exc.value, str((root / "cifar-10-batches-py").resolve()), "corrupt")


def test_cifar_unreadable_file_is_reported_as_corrupt(cifar10_dir, skip_md5):
    root = cifar10_dir[0]
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle\nat all")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", data_dir=root)
    _assert_one_line(exc.value, str(root.resolve()), "corrupt")


def test_cifar_download_failure_offline(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", data_dir=tmp_path / "dl", download=True)
    _assert_one_line(exc.value, str((tmp_path / "dl").resolve()), "cifar-10-python.tar.gz", "URLError")


def test_download_is_skipped_when_files_are_intact(cifar10_dir, skip_md5, monkeypatch):
    import torchvision.datasets.cifar as cifar
    monkeypatch.setattr(cifar, "download_and_extract_archive",
                        lambda *a, **k: pytest.fail("downloaded although the files were there"))
    ds = load_dataset("cifar10", data_dir=cifar10_dir[0], download=True, split="final")
    assert len(ds.train_y) == 30


# --- argument errors ------------------------------------------------------------------------------

def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DataError) as exc:
        load_dataset("imagenet")
    _assert_one_line(exc.value, "imagenet", *DATASETS)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_val_fraction_must_be_inside_0_1(bad):
    with pytest.raises(DataError) as exc:
        load_dataset("synthetic", split="search", val_fraction=bad, synthetic_train_size=20, synthetic_test_size=5)
    _assert_one_line(exc.value, "val_fraction")


def test_val_fraction_is_ignored_for_final():
    ds = load_dataset("synthetic", split="final", val_fraction=0.0, synthetic_train_size=20, synthetic_test_size=5)
    assert (len(ds.train_y), len(ds.eval_y), ds.eval_name) == (20, 5, "test")


def test_train_fraction_keeps_a_fixed_subset_of_the_training_images():
    full = load_dataset("digits", split="search", val_fraction=0.3, seed=2)
    part = load_dataset("digits", split="search", val_fraction=0.3, seed=2, train_fraction=0.25)
    again = load_dataset("digits", split="search", val_fraction=0.3, seed=2, train_fraction=0.25)
    assert len(part.train_y) == round(len(full.train_y) * 0.25)
    assert torch.equal(part.eval_y, full.eval_y)  # the validation images do not change
    assert torch.equal(part.train_x, again.train_x)
    # every kept image is one of the full training set's
    full_rows = {bytes(x.numpy().tobytes()) for x in full.train_x}
    assert all(bytes(x.numpy().tobytes()) in full_rows for x in part.train_x)
    final = load_dataset("digits", split="final", train_fraction=0.5)
    assert len(final.train_y) == round(len(load_dataset("digits", split="final").train_y) * 0.5)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_train_fraction_must_be_in_0_1(bad):
    with pytest.raises(DataError) as exc:
        load_dataset("synthetic", train_fraction=bad, synthetic_train_size=20, synthetic_test_size=5)
    _assert_one_line(exc.value, "train_fraction")


def test_unknown_split():
    with pytest.raises(DataError) as exc:
        load_dataset("digits", split="test")
    _assert_one_line(exc.value, "search", "final")


# --- synthetic ------------------------------------------------------------------------------------

def _synthetic(**kw) -> DataSplits:
    kw = {"split": "final", "synthetic_train_size": 200, "synthetic_test_size": 50, **kw}
    return load_dataset("synthetic", **kw)


def test_synthetic_shapes_and_determinism():
    a = _synthetic(seed=5)
    assert a.train_x.shape == (200, 3, 32, 32) and a.train_x.dtype == torch.uint8
    assert a.eval_x.shape == (50, 3, 32, 32) and a.eval_y.dtype == torch.int64
    assert a.num_classes == 10 and set(a.train_y.tolist()) == set(range(10))
    assert torch.bincount(a.train_y).tolist() == [20] * 10  # balanced
    b = _synthetic(seed=5)
    for field in ("train_x", "train_y", "eval_x", "eval_y"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.mean == b.mean and a.std == b.std
    assert (a.mean, a.std) == channel_stats(a.train_x)
    c = _synthetic(seed=6)
    assert not torch.equal(a.train_x, c.train_x)
    # Train and test draw from separate streams: resizing one leaves the other alone.
    d = _synthetic(seed=5, synthetic_test_size=80)
    assert torch.equal(a.train_x, d.train_x) and torch.equal(a.train_y, d.train_y)
    # Not degenerate: pixels use the range and images differ.
    assert a.train_x.float().std() > 30 and len(torch.unique(a.train_x.flatten(1), dim=0)) == 200


def test_synthetic_100_classes_and_search_split():
    ds = load_dataset("synthetic", split="search", val_fraction=0.25, synthetic_train_size=400,
                      synthetic_test_size=10, synthetic_num_classes=100, seed=1)
    assert ds.num_classes == 100 and ds.eval_name == "val"
    assert (len(ds.train_y), len(ds.eval_y)) == (300, 100)
    assert int(ds.train_y.min()) >= 0 and int(ds.train_y.max()) < 100


def _tiny_net(num_classes: int, pool_first: int = 1) -> nn.Module:
    layers = [nn.AvgPool2d(pool_first)] if pool_first > 1 else []
    layers += [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes)]
    return nn.Sequential(*layers)


def _fit_and_score(ds: DataSplits, model: nn.Module, epochs: int, flip: bool, crop_pad: int) -> float:
    """Plain SGD through batches() and augment(); the last epoch at a tenth of the rate so that the
    BN running statistics settle. Returns accuracy on the eval set."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        if epoch == epochs - 1:
            for group in opt.param_groups:
                group["lr"] = 0.005
        model.train()
        for idx in batches(len(ds.train_y), 32, gen, drop_last=True):
            x = augment(ds.train_x[idx], ds.mean, ds.std, gen, crop_pad=crop_pad, flip=flip)
            loss = F.cross_entropy(model(x), ds.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return (model(normalize(ds.eval_x, ds.mean, ds.std)).argmax(1) == ds.eval_y).float().mean().item()


def test_synthetic_is_learnable():
    ds = _synthetic(seed=0, synthetic_train_size=800, synthetic_test_size=200)
    torch.manual_seed(0)  # the model's initial weights
    # The prototypes are smooth (6x6 patterns upscaled): pooling to 16x16 first loses little.
    acc = _fit_and_score(ds, _tiny_net(10, pool_first=2), epochs=4, flip=True, crop_pad=2)
    assert acc >= 0.5, acc  # chance is 0.1


# --- digits ---------------------------------------------------------------------------------------

def test_digits_sizes_and_values():
    final = load_dataset("digits", split="final")
    assert (final.name, final.num_classes, final.eval_name) == ("digits", 10, "test")
    assert len(final.train_y) + len(final.eval_y) == 1797
    assert len(final.eval_y) == 360
    for x in (final.train_x, final.eval_x):
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey as RGB
    assert int(final.train_x.min()) == 0 and int(final.train_x.max()) > 200
    assert set(final.train_y.tolist()) == set(range(10)) == set(final.eval_y.tolist())
    assert (final.mean, final.std) == channel_stats(final.train_x)

    s0 = load_dataset("digits", split="search", val_fraction=0.1, seed=0)
    s1 = load_dataset("digits", split="search", val_fraction=0.1, seed=1)
    assert (len(s0.train_y), len(s0.eval_y)) == (1293, 144)
    assert not torch.equal(s0.eval_x, s1.eval_x)
    # The test set is fixed whatever the seed; search never sees it.
    assert torch.equal(load_dataset("digits", split="final", seed=7).eval_x, final.eval_x)
    test_rows = {bytes(r) for r in final.eval_x.flatten(1).numpy()}
    search_rows = {bytes(r) for r in torch.cat([s0.train_x, s0.eval_x]).flatten(1).numpy()}
    assert search_rows == {bytes(r) for r in final.train_x.flatten(1).numpy()}
    assert len(test_rows - search_rows) >= 350  # (a few digits are pixel-identical duplicates)


def test_digits_images_match_their_labels():
    """A small model reaches 90% on the val split: images and labels were kept together."""
    ds = load_dataset("digits", split="search", seed=0)
    torch.manual_seed(0)  # the model's initial weights
    # The images are 8x8 upscaled: pooling back to 8x8 first makes the model 16x cheaper.
    acc = _fit_and_score(ds, _tiny_net(10, pool_first=4), epochs=5, flip=False, crop_pad=0)
    assert acc >= 0.9, acc


# --- device ---------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_on_cuda():
    ds = _synthetic(device="cuda")
    assert all(t.is_cuda for t in (ds.train_x, ds.train_y, ds.eval_x, ds.eval_y))
    out = augment(ds.train_x[:16], ds.mean, ds.std, torch.Generator().manual_seed(0), cyclic_shift=True)
    assert out.is_cuda and out.dtype == torch.float32
    cpu = augment(ds.train_x[:16].cpu(), ds.mean, ds.std, torch.Generator().manual_seed(0), cyclic_shift=True)
    torch.testing.assert_close(out.cpu(), cpu)


def test_datasplits_to_moves_every_tensor():
    ds = _synthetic().to("meta")
    assert all(t.device.type == "meta" for t in (ds.train_x, ds.train_y, ds.eval_x, ds.eval_y))


# --- augment --------------------------------------------------------------------------------------

MEAN, STD = CIFAR10_MEAN, CIFAR10_STD


def _batch(n: int = 32, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    # Odd values only: channel 1's mean is 123.0, and no pixel may normalise to an exact 0 here,
    # so that a zero in the output can only be padding.
    x = torch.randint(0, 128, (n, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return x * 2 + 1


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_augment_shape_dtype_and_determinism():
    x = _batch()
    out = augment(x, MEAN, STD, _gen(1), crop_pad=4, flip=True, cyclic_shift=True)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
    assert torch.equal(out, augment(x, MEAN, STD, _gen(1), crop_pad=4, flip=True, cyclic_shift=True))
    assert not torch.equal(out, augment(x, MEAN, STD, _gen(2), crop_pad=4, flip=True, cyclic_shift=True))
    g = _gen(1)
    first = augment(x, MEAN, STD, g)
    assert not torch.equal(first, augment(x, MEAN, STD, g))  # the generator advances


def test_normalize():
    x = _batch(4)
    out = normalize(x, MEAN, STD)
    assert out.dtype == torch.float32
    ref = (x.double() - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / \
        torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ref.float())


def test_augment_without_randomness_is_normalize():
    x = _batch(8)
    assert torch.equal(augment(x, MEAN, STD, _gen(), crop_pad=0, flip=False), normalize(x, MEAN, STD))


def test_flip_mirrors_about_half_the_images():
    x = _batch(200)
    nx = normalize(x, MEAN, STD)
    out = augment(x, MEAN, STD, _gen(3), crop_pad=0, flip=True)
    same = (out == nx).flatten(1).all(1)
    mirrored = (out == nx.flip(3)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())  # every image is exactly one of the two
    assert 70 <= int(mirrored.sum()) <= 130


def _padded_crop(nx: torch.Tensor, pad: int, dy: int, dx: int) -> torch.Tensor:
    """Reference: crop of the zero-padded image at offset (dy, dx) in [0, 2 pad]."""
    h, w = nx.shape[-2:]
    return F.pad(nx, (pad, pad, pad, pad))[..., dy:dy + h, dx:dx + w]


def test_crop_is_a_shift_with_zero_fill_of_at_most_pad():
    pad, x = 4, _batch(48)
    nx = normalize(x, MEAN, STD)
    out = augment(x, MEAN, STD, _gen(4), crop_pad=pad, flip=False)
    seen = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if torch.equal(out[i], _padded_crop(nx[i], pad, dy, dx))]
        assert len(hits) == 1, i
        dy, dx = hits[0]
        seen.add(hits[0])
        # Zeros (all channels) sit exactly in the uncovered border, nowhere else.
        zero = (out[i] == 0).all(0)
        expect = torch.ones(32, 32, dtype=torch.bool)
        expect[max(pad - dy, 0):32 + min(pad - dy, 0), max(pad - dx, 0):32 + min(pad - dx, 0)] = False
        assert torch.equal(zero, expect), i
    assert len(seen) > 20  # offsets really vary


def test_cyclic_shift_rolls_along_one_axis_two_thirds_of_the_time():
    x = _batch(600, seed=1)
    nx = normalize(x, MEAN, STD)
    out = augment(x, MEAN, STD, _gen(5), crop_pad=0, flip=False, cyclic_shift=True)
    # Pixels are only moved: each image keeps its multiset of values per channel.
    assert torch.equal(out.flatten(2).sort(2).values, nx.flatten(2).sort(2).values)
    kinds = {"none": 0, "width": 0, "height": 0}
    for i in range(len(x)):
        if torch.equal(out[i], nx[i]):
            kinds["none"] += 1
            continue
        by_w = [d for d in range(1, 32) if torch.equal(out[i], nx[i].roll(-d, 2))]
        by_h = [d for d in range(1, 32) if torch.equal(out[i], nx[i].roll(-d, 1))]
        assert len(by_w) + len(by_h) == 1, i
        kinds["width" if by_w else "height"] += 1
    # P(unchanged) = 1/3 + 2/3 * 1/32 (an offset of the full size wraps to itself).
    assert 0.27 <= kinds["none"] / 600 <= 0.44, kinds
    # Width and height equally likely: their difference within 4 sigma of a fair split.
    assert abs(kinds["width"] - kinds["height"]) <= 4 * (kinds["width"] + kinds["height"]) ** 0.5, kinds


def test_full_pipeline_is_roll_of_crop_of_flip():
    """normalise -> flip -> crop -> cyclic shift, in that order: each output must be one of them."""
    pad, x = 1, _batch(12, seed=2)
    nx = normalize(x, MEAN, STD)
    out = augment(x, MEAN, STD, _gen(6), crop_pad=pad, flip=True, cyclic_shift=True)
    for i in range(len(x)):
        cands = []
        for img in (nx[i], nx[i].flip(2)):
            for dy in range(2 * pad + 1):
                for dx in range(2 * pad + 1):
                    c = _padded_crop(img, pad, dy, dx)
                    cands += [c] + [c.roll(-d, a) for a in (1, 2) for d in range(1, 32)]
        assert (torch.stack(cands) == out[i]).flatten(1).all(1).any(), i


def test_augment_non_square_and_other_channels():
    x = torch.randint(0, 256, (5, 2, 12, 20), dtype=torch.uint8, generator=_gen())
    out = augment(x, (100.0, 50.0), (10.0, 20.0), _gen(), crop_pad=3, cyclic_shift=True)
    assert out.shape == (5, 2, 12, 20)


# --- batches --------------------------------------------------------------------------------------

def test_batches_cover_every_index_once():
    parts = batches(103, 10, _gen(0), drop_last=False)
    assert [len(p) for p in parts] == [10] * 10 + [3]
    assert all(p.dtype == torch.int64 and p.device.type == "cpu" for p in parts)
    flat = torch.cat(parts)
    assert sorted(flat.tolist()) == list(range(103))
    assert flat.tolist() != list(range(103))  # shuffled


def test_batches_drop_last_and_order():
    assert [len(p) for p in batches(103, 10, _gen(0), drop_last=True)] == [10] * 10
    assert batches(7, 10, _gen(0), drop_last=True) == []
    assert torch.equal(torch.cat(batches(25, 10, None, drop_last=False)), torch.arange(25))
    assert batches(0, 4, None, drop_last=False) == []


def test_batches_deterministic_per_generator_state():
    a = torch.cat(batches(50, 8, _gen(11), drop_last=False))
    b = torch.cat(batches(50, 8, _gen(11), drop_last=False))
    c = torch.cat(batches(50, 8, _gen(12), drop_last=False))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = _gen(11)
    first, second = torch.cat(batches(50, 8, g, False)), torch.cat(batches(50, 8, g, False))
    assert torch.equal(first, a) and not torch.equal(first, second)  # next epoch, new order
