"""Config sections: every setting has one, YAML and the command line accept them or the flat names, a run's
config.yaml is written in sections and reads back, and a misplaced key names its section."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import yaml

from rewardlab.config import (
    METHOD_PRESETS,
    SECTION_OF,
    SECTIONS,
    ConfigError,
    config_to_dict,
    load_config,
    read_saved_config,
    save_config,
)


def test_every_setting_of_every_config_has_exactly_one_section():
    fields = {f.name for cls, _ in METHOD_PRESETS.values() for f in dataclasses.fields(cls)}
    assert fields == set(SECTION_OF)
    listed = [name for names in SECTIONS.values() for name in names]
    assert len(listed) == len(set(listed))
    assert not set(SECTIONS) & fields  # a section name is never also a setting


def test_sections_flat_names_and_dotted_overrides_give_the_same_config(tmp_path):
    sectioned = tmp_path / "sectioned.yaml"
    sectioned.write_text(yaml.safe_dump({"sampling": {"temperature": 0.7, "num_generations": 4},
                                         "optimisation": {"learning_rate": 1e-4, "batch_size": 16},
                                         "loss": {"beta": 0.02}}))
    flat = tmp_path / "flat.yaml"
    flat.write_text(yaml.safe_dump({"temperature": 0.7, "num_generations": 4, "learning_rate": 1e-4, "batch_size": 16,
                                    "beta": 0.02}))
    dotted = load_config("grpo", overrides=["sampling.temperature=0.7", "sampling.num_generations=4",
                                            "optimisation.learning_rate=1e-4", "batch_size=16", "loss.beta=0.02"])
    a, b = load_config("grpo", sectioned), load_config("grpo", flat)
    assert config_to_dict(a) == config_to_dict(b) == config_to_dict(dotted)
    assert (a.temperature, a.num_generations, a.learning_rate, a.beta) == (0.7, 4, 1e-4, 0.02)


@pytest.mark.parametrize("overrides, message", [
    (["optimisation.temperature=1"], r"temperature belongs to section 'sampling', not 'optimisation'"),
    (["sampl.temperature=1"], r"unknown section 'sampl'.*Did you mean 'sampling'"),
    (["sampling.temprature=1"], r"unknown config key 'temprature'.*Did you mean: temperature"),
    ({"sampling": 3}, r"sampling is a section; give it a mapping"),
    ({"temperature": 1.0, "sampling": {"temperature": 0.5}}, r"temperature is given twice"),
])
def test_a_misplaced_or_doubled_key_is_an_error_naming_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("grpo", overrides=overrides)


def test_a_runs_config_yaml_is_written_in_sections_and_reads_back(tmp_path):
    cfg = load_config("dpo", overrides={"beta": 0.3, "max_length": 40, "learning_rate": 2e-4})
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    saved = yaml.safe_load(path.read_text())
    assert saved["method"] == "dpo" and saved["loss"]["beta"] == 0.3 and saved["data"]["max_length"] == 40
    assert not set(saved) - set(SECTIONS) - {"method"}  # nothing left flat
    assert config_to_dict(load_config("dpo", path)) == config_to_dict(cfg)
    assert read_saved_config(path)["learning_rate"] == 2e-4
    flat = tmp_path / "old.yaml"  # a config.yaml written flat, as runs before sections did
    flat.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    assert config_to_dict(load_config("dpo", flat)) == config_to_dict(cfg)
    assert read_saved_config(flat)["learning_rate"] == 2e-4


def test_settings_of_a_section_the_run_does_not_read_are_named_in_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="rewardlab.config"):
        load_config("grpo", overrides={"flowrl_beta": 3.0, "vf_coef": 0.5, "temperature": 0.9})
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("flowrl_beta, vf_coef: set, but this run does not read the critic/flowrl")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rewardlab.config"):
        cfg = load_config("flowrl", overrides={"flowrl_beta": 3.0})
        load_config("ppo", overrides={"vf_coef": 0.5})
        save_config(cfg, tmp_path / "config.yaml")
        load_config("flowrl", tmp_path / "config.yaml")  # a saved run lists every setting: no warning
    assert not caplog.records


def test_an_objective_checks_its_own_settings_at_load(monkeypatch):
    """The flowrl and self-distillation entries of OBJECTIVES validate their sections; an objective added to the
    registry gets its check run at load, before anything is written."""
    from rewardlab.trainers.objectives import OBJECTIVES, Objective

    with pytest.raises(ConfigError, match="flowrl_beta must be > 0"):
        load_config("flowrl", overrides={"flowrl_beta": -1.0})
    with pytest.raises(ConfigError, match="sdpo_mix and rlsd_lambda must be in"):
        load_config("sdpo", overrides={"sdpo_mix": 2.0})
    assert load_config("grpo", overrides={"flowrl_beta": -1.0}).flowrl_beta == -1.0  # not read (and warned about)

    def needs_beta(cfg):
        if cfg.beta <= 0:
            raise ConfigError("test_checked needs beta > 0")

    monkeypatch.setitem(OBJECTIVES._items, "test_checked", Objective(check=needs_beta, outcome_only=False))
    with pytest.raises(ConfigError, match="test_checked needs beta > 0"):
        load_config("grpo", overrides={"objective": "test_checked"})
    assert load_config("grpo", overrides={"objective": "test_checked", "beta": 0.1}).objective == "test_checked"
