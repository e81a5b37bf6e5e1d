"""Checkpoints: round trip, atomic writes, and refusal of corrupt or tampered files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from trainers.checkpoint import (CHECKPOINT_NAME, FORMAT_VERSION, RESUME_HARMLESS, CheckpointError,
                                 config_changes, describe_changes, load_checkpoint,
                                 resume_config_changes, save_checkpoint)
from trainers.config import parse_config


def sample_state() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "model": {"w": torch.randn(3, 4, generator=g), "b": torch.arange(5),
                  "bn.num_batches_tracked": torch.tensor(7)},
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(2)}},
                      "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]},
        "epoch": 3, "step": 42, "history": [{"epoch": 1, "train_loss": 2.5}, {"epoch": 2, "val_acc": 0.5}],
        "config": {"model": {"name": None, "stages": [{"N": 8, "P": 2}]}, "device": "cpu"},
        "rng": {"torch": torch.get_rng_state(), "data": torch.Generator().manual_seed(1).get_state(),
                "cuda": None},
    }


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def assert_one_line_naming(err: Exception, path: Path):
    msg = str(err)
    assert "\n" not in msg
    assert str(path) in msg


def test_round_trip(tmp_path):
    state = sample_state()
    path = save_checkpoint(state, tmp_path / "run" / CHECKPOINT_NAME)  # creates the directory
    assert path == tmp_path / "run" / CHECKPOINT_NAME and path.is_file()
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == FORMAT_VERSION
    loaded.pop("format_version")
    assert_same(state, loaded)
    # A directory resolves to the checkpoint inside it.
    assert_same(loaded, {k: v for k, v in load_checkpoint(tmp_path / "run").items()
                         if k != "format_version"})


def test_save_leaves_no_temp_files_and_replaces(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint({"epoch": 1}, path)
    save_checkpoint({"epoch": 2}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]
    assert load_checkpoint(path)["epoch"] == 2


def test_failed_write_keeps_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(sample_state(), path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"\x80\x02garbage-half-written" * 100)  # what a crash mid-write leaves
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 99, "model": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]  # temp file removed
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3
    assert_same(loaded["model"], sample_state()["model"])


def test_interrupted_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    """Even a KeyboardInterrupt during the write leaves the previous checkpoint and no temp file."""
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint({"epoch": 1}, path)

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint\n", b"PK\x03\x04truncated zip"])
def test_corrupt_file_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert_one_line_naming(info.value, path)


def test_truncated_real_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(sample_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert_one_line_naming(info.value, path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "nope.pt")
    assert_one_line_naming(info.value, tmp_path / "nope.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)  # a directory without checkpoint.pt
    assert_one_line_naming(info.value, tmp_path / CHECKPOINT_NAME)


class _TouchOnLoad:
    """Unpickling this runs `touch <marker>`: the classic malicious-pickle payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _OpenOnLoad:
    """Unpickling this creates a file via builtins.open (no shell needed)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_TouchOnLoad, _OpenOnLoad])
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_tampered_checkpoint_is_refused_without_running_code(tmp_path, payload, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / CHECKPOINT_NAME
    evil = {"format_version": FORMAT_VERSION, "model": {"w": torch.zeros(2)}, "epoch": 1,
            "extra": payload(marker)}
    if writer == "torch.save":
        torch.save(evil, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(evil, f, protocol=2)

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert_one_line_naming(info.value, path)
    assert not marker.exists(), "loading a tampered checkpoint ran its payload"

    # The file really is live: an unsafe load would have run the payload.
    if writer == "pickle":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_checkpoint_without_format_version_is_refused(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="format_version") as info:
        load_checkpoint(path)
    assert_one_line_naming(info.value, path)


@pytest.mark.parametrize("obj", [{"format_version": 999, "epoch": 1}, [torch.zeros(2)], torch.zeros(3)])
def test_foreign_checkpoint_is_refused(tmp_path, obj):
    path = tmp_path / CHECKPOINT_NAME
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert_one_line_naming(info.value, path)


# --- what a resume may change -----------------------------------------------------------------

def cfg_dict(**over) -> dict:
    d = {"model": {"stages": [{"N": 8, "P": 2}, {"N": 12, "P": 3}]}, "epochs": 300}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return parse_config(d).model_dump(mode="json")


def test_config_changes_name_every_path_that_differs():
    saved = cfg_dict()
    assert config_changes(saved, saved) == []
    new = cfg_dict(epochs=200, optim={"lr": 0.2}, amp=False,
                   model={"stages": [{"N": 8, "P": 4}, {"N": 12, "P": 3}]})
    assert config_changes(saved, new) == ["model.stages.0.P: 2 -> 4", "optim.lr: 0.1 -> 0.2",
                                          "epochs: 300 -> 200", "amp: true -> false"]
    fewer = cfg_dict(model={"stages": [{"N": 8, "P": 2}]})
    assert config_changes(saved, fewer)[0] == "model.stages.1.N: 12 -> null"
    assert config_changes(None, new) == []  # a checkpoint without a config: nothing to compare


def test_harmless_changes_are_left_out():
    assert set(RESUME_HARMLESS) >= {"device", "out_dir", "num_threads", "tracking",
                                    "eval_batch_size"}
    saved = cfg_dict()
    moved = cfg_dict(device="cuda:1", out_dir="elsewhere", num_threads=3, eval_batch_size=7,
                     tracking={"uri": "sqlite:///m.db", "tags": {"a": "b"}},
                     data={"data_dir": "/d", "download": True},
                     model={"gunn_mode": "keep", "stages": [{"N": 8, "P": 2}, {"N": 12, "P": 3}]})
    assert config_changes(saved, moved) == []
    assert config_changes(saved, cfg_dict(seed=1, data={"name": "digits"})) == [
        "data.name: synthetic -> digits", "seed: 0 -> 1"]


def test_a_key_added_since_the_checkpoint_reads_as_its_default():
    saved = cfg_dict()
    del saved["optim"]["nesterov"], saved["schedule"]["warmup_epochs"]
    assert config_changes(saved, cfg_dict())[0] == "optim.nesterov: null -> true"  # raw
    assert resume_config_changes(saved, parse_config(cfg_dict())) == []
    assert resume_config_changes(saved, parse_config(cfg_dict(epochs=3))) == ["epochs: 300 -> 3"]


def test_describe_changes_is_one_line():
    changes = [f"k{i}: {i} -> {i + 1}" for i in range(9)]
    assert describe_changes(changes[:2]) == "k0: 0 -> 1; k1: 1 -> 2"
    assert describe_changes(changes, most=3) == "k0: 0 -> 1; k1: 1 -> 2; k2: 2 -> 3; and 6 more"


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_where(tmp_path):
    """A real full filesystem (a 1 MiB tmpfs): the write fails with one line naming the file,
    the previous checkpoint still loads, no temporary file is left."""
    from tests.conftest import fill, small_filesystem
    from trainers.disk_full import DiskFullError

    with small_filesystem(tmp_path / "disk", "1m") as disk:
        path = disk / CHECKPOINT_NAME
        save_checkpoint({"epoch": 1, "model": {"w": torch.ones(1000)}}, path)
        filler = fill(disk)
        with pytest.raises(DiskFullError) as e:
            save_checkpoint({"epoch": 2, "model": {"w": torch.ones(100_000)}}, path)
        assert str(e.value) == f"disk full: no room to write {path} (No space left on device)"
        assert load_checkpoint(path)["epoch"] == 1
        assert sorted(p.name for p in disk.iterdir()) == [".filler", CHECKPOINT_NAME]
        filler.unlink()  # space freed: the next write goes through
        save_checkpoint({"epoch": 2, "model": {"w": torch.ones(100_000)}}, path)
        assert load_checkpoint(path)["epoch"] == 2
