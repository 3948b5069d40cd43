"""One loader for both config families: the language-model trainers' (rewardlab/config.py) and the classic
algorithms' (rewardlab/classic/config.py) go through rewardlab/config_loading.py and word a mistake the same."""

from __future__ import annotations

from typing import Literal

import pytest

import rewardlab.classic.config as classic_config
import rewardlab.config as llm_config
from rewardlab import config_loading
from rewardlab.classic.cli import main as classic_main
from rewardlab.classic.config import build_config
from rewardlab.classic.ppo import PPOConfig
from rewardlab.config import ConfigError, load_config


def message(call, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as error:
        call(*args, **kwargs)
    return str(error.value)


def llm_error(overrides=None, path=None) -> str:
    return message(load_config, "grpo", path, overrides)


def classic_error(overrides=(), path=None) -> str:
    """As `classic ppo --config path key=value ...` loads its config."""
    def load():
        base = config_loading.read_yaml_mapping(path) if path else None
        return build_config(PPOConfig, overrides, base=base, base_source=str(path))
    return message(load)


# (mistake on the command line, the message both loaders give, with <Config> for the config class)
SAME_MISTAKES = [
    ("tensorbord=false", "command line: unknown config key 'tensorbord' for <Config>. Did you mean: tensorboard?"),
    ("learning_rate=fast", "command line: learning_rate must be float (a number, e.g. 3e-4), got str 'fast'"),
    ("seed=1.5", "command line: seed must be int (a whole number, e.g. 100_000 or 1e5), got float 1.5"),
    ("tensorboard=maybe", "command line: tensorboard must be bool (true or false), got str 'maybe'"),
    ("torch_threads=[2]", "command line: torch_threads must be int (a whole number, e.g. 100_000 or 1e5), got list [2]"),
    ("seed", "override 'seed' is not key=value (e.g. learning_rate=1e-4)"),
    ("seed=[1,", "override 'seed=[1,': the value is not valid YAML"),
]


@pytest.mark.parametrize("override, expected", SAME_MISTAKES)
def test_the_same_mistake_on_the_command_line_gives_the_same_message(override, expected):
    llm, classic = llm_error([override]), classic_error([override])
    assert llm.replace("GRPOConfig", "<Config>") == classic.replace("PPOConfig", "<Config>")
    assert expected in llm.replace("GRPOConfig", "<Config>")


@pytest.mark.parametrize("text, expected", [
    ("tensorbord: false\n", "{path}: unknown config key 'tensorbord' for <Config>. Did you mean: tensorboard?"),
    ("seed: 1.5\n", "{path}: seed must be int (a whole number, e.g. 100_000 or 1e5), got float 1.5"),
    ("seed: [1,\n", "{path} is not valid YAML: while parsing a flow node"),
    ("- seed\n", "{path}: expected a mapping of key: value at the top level"),
    ("1: 2\n", "{path}: config keys are names, got the int 1"),
])
def test_the_same_mistake_in_a_yaml_file_gives_the_same_message(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    llm, classic = llm_error(path=path), classic_error(path=path)
    assert llm.replace("GRPOConfig", "<Config>") == classic.replace("PPOConfig", "<Config>")
    assert expected.format(path=path) in llm.replace("GRPOConfig", "<Config>")
    assert message(load_config, "grpo", tmp_path / "none.yaml") == f"config file not found: {tmp_path / 'none.yaml'}"


def test_the_classic_command_line_reports_the_shared_message(tmp_path, capsys):
    options = tmp_path / "ppo.yaml"
    options.write_text("tensorbord: false\n")
    assert classic_main(["ppo", "--config", str(options)]) == 2
    assert capsys.readouterr().err == f"rewardlab: error: {options}: unknown config key 'tensorbord' for PPOConfig. Did you mean: tensorboard?\n"


def test_both_loaders_go_through_the_shared_functions(monkeypatch):
    calls: list[tuple[str, str]] = []
    check_keys, convert = config_loading.check_keys, config_loading.convert

    def spy_check_keys(cls, keys, source):
        calls.append(("check_keys", cls.__name__))
        return check_keys(cls, keys, source)

    def spy_convert(value, annotation, key, source):
        calls.append(("convert", key))
        return convert(value, annotation, key, source)

    monkeypatch.setattr(config_loading, "check_keys", spy_check_keys)
    monkeypatch.setattr(config_loading, "convert", spy_convert)
    load_config("grpo", overrides=["seed=3"])
    build_config(PPOConfig, ["seed=4"])
    assert ("check_keys", "GRPOConfig") in calls and ("check_keys", "PPOConfig") in calls
    assert calls.count(("convert", "seed")) == 2

    for name in ("ConfigError", "parse_overrides", "read_yaml_mapping", "convert_settings", "field_docs"):
        assert getattr(llm_config, name) is getattr(config_loading, name), name
    for name in ("ConfigError", "parse_overrides", "read_yaml_mapping", "convert_settings", "field_docs", "field_types"):
        assert getattr(classic_config, name) is getattr(config_loading, name), name
    assert issubclass(ConfigError, ValueError)  # classic's pytest.raises(ValueError) and `except ValueError` still hold


def test_bad_values_of_classic_settings_are_config_errors():
    assert type(message(build_config, PPOConfig, ["clip_coef=0"])) is str  # range checks (require) too
    with pytest.raises(ConfigError, match="ppo.name must be a plain folder name"):
        build_config(PPOConfig, ["name=a/b"])


def test_field_docs_read_both_families():
    assert "Gymnasium id" in config_loading.field_docs(PPOConfig)["env_id"]  # from the RunConfig base
    assert "PPO ratio clipping epsilon" in config_loading.field_docs(PPOConfig)["clip_coef"]
    assert "Sampling temperature" in config_loading.field_docs(llm_config.GRPOConfig)["temperature"]


@pytest.mark.parametrize("value, annotation, expected", [
    ("1e5", int, 100_000), (2.0, int, 2), ("100_000", int, 100_000), (3, float, 3.0), ("3e-3", float, 3e-3),
    ("on", bool, True), (0, bool, False), ("64, 32", tuple[int, ...], (64, 32)), ([1, 2], tuple[int, ...], (1, 2)),
    (64, tuple[int, ...], (64,)), ("math", list, ["math"]), ('{"a": 1}', dict, {"a": 1}), ({"a": 1}, dict, {"a": 1}),
    ("none", float | None, None), (None, float | None, None), ("0.5", float | None, 0.5), ("b", Literal["a", "b"], "b"),
])
def test_convert_takes_each_annotation_kind(value, annotation, expected):
    got = config_loading.convert(value, annotation, "k", "here")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value, annotation, expected", [
    (True, int, "here: k must be int (a whole number, e.g. 100_000 or 1e5), got bool True"),
    (7, str, "here: k must be str (text; quote a value YAML reads as a number or boolean, e.g. '007' or 'yes'), got int 7"),
    ("c", Literal["a", "b"], "here: k must be one of: a, b, got str 'c'"),
    ("x", float | None, "here: k must be float (a number, e.g. 3e-4) or null, got str 'x'"),
    ({"a": 1}, list, "here: k must be list (e.g. [a, b]), got dict {'a': 1}"),
    (10**400, float, "here: k=10000000000000000000... (401 digits) is beyond a float's range"),
    ("x" * 500, int, "here: k must be int (a whole number, e.g. 100_000 or 1e5), got str '" + "x" * 96 + "..."),
])
def test_convert_names_the_key_the_source_and_what_fits(value, annotation, expected):
    assert message(config_loading.convert, value, annotation, "k", "here") == expected
