"""TrainConfig YAML: validation, one-line ConfigErrors naming file and field, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers.config import (ConfigError, ModelConfig, TrainConfig, dump_config, load_config,
                             parse_config)
from trainers.model.spec import NetworkSpec, model_spec

VALID = """\
model:
  family: gunn
  stem_channels: 8
  head_channels: null
  projection: true
  gunn_mode: keep
  stages:
    - {N: 8, P: 2, K: 2, M: 1}
    - {N: 12, P: 3, K: 1, M: 1}
data:
  name: synthetic
  synthetic_train_size: 256
optim:
  lr: 0.05
  weight_decay: 0.0005
schedule:
  kind: cosine
  warmup_epochs: 1
epochs: 4
batch_size: 32
device: cpu
num_threads: 1
out_dir: null
"""

STAGES = "model:\n  stages:\n    - {N: 8, P: 2}\n"


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    assert "Traceback" not in msg
    return msg


def test_valid_yaml_loads(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    assert isinstance(cfg, TrainConfig)
    assert cfg.epochs == 4 and cfg.batch_size == 32 and cfg.device == "cpu" and cfg.out_dir is None
    assert cfg.model.gunn_mode == "keep" and cfg.schedule.kind == "cosine"
    assert cfg.optim.lr == 0.05 and cfg.data.synthetic_train_size == 256
    spec = cfg.model.network_spec(10)
    assert spec == NetworkSpec(stages=((8, 2, 2, 1), (12, 3, 1, 1)), stem_channels=8,
                               head_channels=None, projection=True, num_classes=10)


def test_defaults_and_registered_model(tmp_path):
    cfg = load_config(write(tmp_path, "model: {name: gunn15}\n"))
    assert cfg.epochs == 300 and cfg.schedule.kind == "step" and cfg.schedule.milestones == [0.5, 0.75]
    assert cfg.optim.nesterov is True and cfg.data.name == "synthetic"
    assert cfg.model.network_spec(10) == model_spec("gunn15", 10)
    assert cfg.model.network_spec(100).num_classes == 100


@pytest.mark.parametrize("text,fields,words", [
    (STAGES + "optim: {lrr: 0.1}\n", ["optim: "], ["unknown key 'lrr'", "did you mean 'lr'"]),
    (STAGES + "colour: blue\n", ["colour"], ["unknown key"]),
    (STAGES + "epochs: many\n", ["epochs"], ["integer", "'many'"]),
    (STAGES + "optim: {lr: fast}\n", ["optim.lr"], ["'fast'"]),
    (STAGES + "epochs: -3\n", ["epochs"], ["-3"]),
    (STAGES + "epochs: 0\n", ["epochs"], [">= 1"]),
    ("model:\n  stages:\n    - {N: 9, P: 2}\n", ["model.stages.0"], ["N=9", "P=2", "divisible"]),
    ("model:\n  stages:\n    - {N: 8, P: 2}\n    - {N: 10, P: 4}\n", ["model.stages.1"],
     ["N=10", "P=4", "divisible"]),
    ("model:\n  stages:\n    - {N: 0, P: 2}\n", ["model.stages.0.N"], []),
    ("model: {name: gunn15, stages: [{N: 8, P: 2}]}\n", ["model"], ["name", "stages"]),
    ("model: {family: gunn}\n", ["model"], ["name", "stages"]),
    ("model: {name: gunn99}\n", ["model"], ["gunn99", "gunn15"]),
    ("model: {name: gunn15, family: tunn}\n", ["model.family"], ["'tunn'"]),
    ("epochs: 3\n", ["model"], ["missing"]),
    (STAGES + "data: {name: mnist}\n", ["data.name"], ["'mnist'"]),
    (STAGES + "schedule: {kind: linear}\n", ["schedule.kind"], ["'linear'"]),
    (STAGES + "epochs: 2\nschedule: {warmup_epochs: 5}\n", ["schedule.warmup_epochs"], ["epochs"]),
])
def test_bad_values_name_the_file_and_field(tmp_path, text, fields, words):
    msg = config_error(write(tmp_path, text))
    for f in fields + words:
        assert f in msg, (f, msg)


def test_malformed_yaml(tmp_path):
    msg = config_error(write(tmp_path, "model: {name: gunn15\nepochs: [\n"))
    assert "malformed YAML" in msg and "line " in msg


def test_yaml_python_tag_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, STAGES + f'epochs: !!python/object/apply:os.system ["touch {marker}"]\n')
    msg = config_error(path)
    assert "python/object/apply:os.system" in msg
    assert not marker.exists()


def test_missing_file(tmp_path):
    msg = config_error(tmp_path / "nope.yaml")
    assert "no such file" in msg


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "list"), ("", "empty file"), ("42\n", "int")])
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    msg = config_error(write(tmp_path, text))
    assert "mapping" in msg and kind in msg


def test_a_directory_is_not_a_config(tmp_path):
    d = tmp_path / "cfgdir"
    d.mkdir()
    config_error(d)


def test_parse_config_uses_the_given_source():
    with pytest.raises(ConfigError) as info:
        parse_config({"model": {"name": "gunn15"}, "epochs": -1}, source="command line")
    assert str(info.value).startswith("command line: epochs: ")


@pytest.mark.parametrize("text", [VALID, "model: {name: sunn15}\ntracking: {uri: 'sqlite:///x.db', "
                                          "experiment: e, tags: {a: b}}\n"])
def test_dump_load_round_trip(tmp_path, text):
    cfg = load_config(write(tmp_path, text))
    out = tmp_path / "dumped.yaml"
    dump_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    assert again.model_dump() == cfg.model_dump()
    # And a second round trip is byte-identical.
    out2 = tmp_path / "dumped2.yaml"
    dump_config(again, out2)
    assert out2.read_text() == out.read_text()


def test_transition_option(tmp_path):
    # A registered model keeps its own unless told; explicit stages take their stem's.
    assert ModelConfig(name="gunn18").network_spec(1000).transition == "pool_conv"
    assert ModelConfig(name="gunn15").network_spec(10).transition == "conv_pool"
    spec = ModelConfig(name="gunn18", transition="conv_pool").network_spec(1000)
    assert spec == NetworkSpec(**{**model_spec("gunn18").to_dict(), "transition": "conv_pool"})
    assert ModelConfig(stages=[{"N": 8, "P": 2}], stem="imagenet").network_spec(10).transition \
        == "pool_conv"
    cfg = load_config(write(tmp_path, STAGES + "  transition: pool_conv\n"))
    assert cfg.model.network_spec(10).transition == "pool_conv"
    msg = config_error(write(tmp_path, STAGES + "  transition: pool\n", "bad.yaml"))
    assert "model.transition" in msg and "'pool'" in msg


def test_model_config_from_spec_round_trips():
    spec = NetworkSpec(stages=((8, 2, 2, 1), (12, 3, 1, 1)), family="sunn", stem_channels=6,
                       head_channels=16, projection=False, num_classes=10)
    mc = ModelConfig.from_spec(spec, gunn_mode="naive")
    assert mc.gunn_mode == "naive"
    assert mc.network_spec(10) == spec
