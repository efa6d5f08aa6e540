import dataclasses
from pathlib import Path

import pytest
import yaml

from nmt.config import Config, DecodeConfig, ModelConfig, architecture_keys, decode_options, load_config, to_dict
from nmt.errors import NmtError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_defaults_and_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  cell: lstm\n  hidden_size: 64\ntrain:\n  lr: 5e-4\n"))
    assert cfg.model.cell == "lstm" and cfg.model.hidden_size == 64
    assert cfg.train.lr == 5e-4  # YAML 1.1 reads '5e-4' as a string; float fields accept it
    assert cfg.model.embed_size == Config().model.embed_size


def test_overrides_apply_after_the_file(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  cell: lstm\n"),
                      ["model.cell=gru", "train.lr=0.01", "data.test=[a, b]", "train.tensorboard=true"])
    assert cfg.model.cell == "gru" and cfg.train.lr == 0.01
    assert cfg.data.test == ["a", "b"] and cfg.train.tensorboard is True


@pytest.mark.parametrize("text, overrides, message", [
    ("model:\n  hiden_size: 3\n", [], "model.hiden_size: unknown key; did you mean hidden_size?"),
    ("modle:\n  cell: gru\n", [], "modle: unknown key; did you mean model?"),
    ("model:\n  hidden_size: big\n", [], "model.hidden_size: expected int, got 'big'"),
    ("model:\n  hidden_size: 0\n", [], "model.hidden_size: 0 is below the minimum 1"),
    ("model:\n  cell: transformer\n", [], "model.cell: 'transformer' is not one of rnn, lstm, gru"),
    ("train:\n  tensorboard: 1\n", [], "train.tensorboard: expected bool, got 1"),
    ("train:\n  epochs: 2.5\n", [], "train.epochs: expected int, got 2.5"),
    ("data:\n  test: x\n", [], "data.test: expected a list, got 'x'"),
    ("model: 3\n", [], "model: expected a mapping, got 3"),
    ("", ["model.nope=1"], "model.nope: unknown key"),
    ("", ["train.lr"], "--set train.lr: expected KEY=VALUE"),
    ("", ["model.cell.x=1"], "model.cell: expected str"),
    ("model:\n  tie_embeddings: true\n", [], "model.readout_size (512) must equal model.embed_size (256)"),
])
def test_bad_values_name_the_key(tmp_path, text, overrides, message):
    with pytest.raises(NmtError) as err:
        load_config(write(tmp_path, text), overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(NmtError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(NmtError, match="invalid YAML at line"):
        load_config(write(tmp_path, "model:\n  cell: [gru\n"))


def test_every_recipe_loads_and_lists_only_what_differs_from_the_defaults():
    recipes = sorted((REPO / "recipes").rglob("*.yaml"))
    assert recipes
    defaults = to_dict(Config())
    for path in recipes:
        load_config(path)
        for section, values in yaml.safe_load(path.read_text()).items():
            for key, value in values.items():
                assert value != defaults[section][key], f"{path.name}: {section}.{key} restates the default {value!r}"


def test_several_files_merge_left_to_right(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model:\n  cell: lstm\n  hidden_size: 512\ntrain:\n  lr: 0.001\n")
    small = tmp_path / "cpu.yaml"
    small.write_text("model:\n  hidden_size: 128\n")
    cfg = load_config([base, small], ["train.lr=0.002"])
    assert (cfg.model.cell, cfg.model.hidden_size, cfg.train.lr) == ("lstm", 128, 0.002)


def test_yes_and_no_are_strings_as_in_yaml_1_2(tmp_path):
    """YAML 1.1 reads `no` as False, which made `mixed_precision: no` (the default's own spelling) an
    error; only true/false are booleans, so a boolean field given `yes` says so."""
    path = write(tmp_path, "train:\n  mixed_precision: no\n  tensorboard: true\n")
    cfg = load_config([path])
    assert cfg.train.mixed_precision == "no" and cfg.train.tensorboard is True
    assert load_config([path], ["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(NmtError, match="train.tensorboard: expected bool, got 'yes'"):
        load_config([path], ["train.tensorboard=yes"])


@pytest.mark.parametrize("base, nbest, given, beam", [
    ({}, 1, {}, 5),                               # the base's beam
    ({}, 8, {}, 8),                               # raised to nbest when not given
    ({"beam_size": 2}, 3, {}, 3),                 # the base's beam is raised too
    ({}, 2, {"beam_size": 2}, 2),
    ({}, 7, {"beam_size": None}, 7),              # None: not given
    ({"sampling": True}, 9, {"beam_size": 1}, 1),  # samples need no beam
])
def test_decode_options_raise_the_beam_to_nbest(base, nbest, given, beam):
    assert decode_options(DecodeConfig(**base), nbest, **given).beam_size == beam


@pytest.mark.parametrize("base, nbest, given, message", [
    ({}, 4, {"beam_size": 2}, "^nbest: 4 needs beam_size of at least 4, got 2$"),
    ({}, 0, {}, "^nbest: must be at least 1, got 0$"),
    ({}, 1, {"temperature": 0.5}, "^temperature: applies to sampling only; add sampling$"),
    ({}, 1, {"top_k": 5, "sampling": False}, "^top_k: applies to sampling only"),
    ({}, 1, {"beam_size": 0}, "^beam_size: 0 is below the minimum 1$"),
    ({}, 1, {"beam_sise": 3}, "^beam_sise: unknown key; did you mean beam_size\\?$"),
])
def test_decode_options_refuse_naming_the_key(base, nbest, given, message):
    with pytest.raises(NmtError, match=message):
        decode_options(DecodeConfig(**base), nbest, **given)


def test_sampling_settings_pass_with_sampling_on():
    opts = decode_options(DecodeConfig(sampling=True), 3, temperature=0.5, top_k=5, top_p=0.9)
    assert (opts.temperature, opts.top_k, opts.top_p) == (0.5, 5, 0.9)


def test_architecture_keys_are_every_model_field_but_those_of_training():
    fields = set(ModelConfig.__dataclass_fields__)
    assert set(architecture_keys()) == fields - {"dropout", "init", "init_range"}


def test_print_config_prints_the_resolved_config_and_trains_nothing(tmp_path, capsys, monkeypatch):
    """`nmt-train --print-config`: the recipes and --set applied, as YAML that loads back to the same
    config; no run directory is made. Without a recipe it prints the defaults."""
    from nmt.cli.commands import train_main

    monkeypatch.chdir(tmp_path)
    recipe = write(tmp_path, "model:\n  cell: lstm\ntrain:\n  mixed_precision: bf16\n")
    assert train_main([str(recipe), "--set", "model.hidden_size=64", "--print-config"]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    cfg = load_config(printed)
    assert cfg == load_config(recipe, ["model.hidden_size=64"])
    assert (cfg.model.cell, cfg.model.hidden_size, cfg.train.mixed_precision) == ("lstm", 64, "bf16")
    assert not (tmp_path / "runs").exists()
    assert train_main(["--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == to_dict(Config())


def test_the_configuration_reference_is_current():
    """docs/config.md is what scripts/config_reference.py writes from the dataclasses now: after
    changing a field, run the script."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.reference()
    assert (REPO / "docs" / "config.md").read_text(encoding="utf-8") == text, "run scripts/config_reference.py"
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory):
            nested = f.default_factory if dataclasses.is_dataclass(f.default_factory) else None
            for key in [f"{f.name}.{g.name}" for g in dataclasses.fields(nested)] if nested else [f.name]:
                assert f"| `{section.name}.{key}` |" in text
