"""Bad input fails early with a message that says what, where and what to do, and writes nothing."""

import json
import math
import subprocess
import sys

import pytest

import rewardlab
from rewardlab.config import ConfigError, load_config
from rewardlab.data import DataError
from rewardlab.rewards import RewardError

from .test_trainers import small


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def grpo(tmp_path, **overrides):
    return rewardlab.train("grpo", small(tmp_path, run_name="bad", batch_size=8, num_generations=4, **overrides))


def raising_reward(completions, **kwargs):
    raise ZeroDivisionError("oops")


def short_reward(completions, **kwargs):
    return [1.0] * (len(completions) - 1)


def nan_reward(completions, **kwargs):
    return [math.nan if i == 1 else 0.0 for i in range(len(completions))]


def test_missing_dataset_column_names_the_column_and_writes_nothing(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "1+1="}, {"prompt": "2+2="}])
    with pytest.raises((RewardError, DataError), match="answer"):
        grpo(tmp_path, dataset=data, reward_funcs=["math"])
    assert not (tmp_path / "bad").exists()


def test_empty_prompt_names_the_row_and_writes_nothing(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "1+1=", "answer": "2"}, {"prompt": "", "answer": "4"}])
    with pytest.raises(DataError, match=r"row 1 .*prompt"):
        grpo(tmp_path, dataset=data)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "fn,pattern",
    [
        ("raising_reward", r"raising_reward.*ZeroDivisionError|ZeroDivisionError.*raising_reward"),
        ("short_reward", r"short_reward.*2.*1|short_reward"),
        ("nan_reward", r"nan_reward.*sample 1|sample 1.*nan_reward"),
    ],
)
def test_bad_reward_functions_are_named_with_the_sample(tmp_path, fn, pattern):
    with pytest.raises(RewardError, match=pattern):
        grpo(tmp_path, reward_funcs=[f"tests.test_errors:{fn}"])
    assert not (tmp_path / "bad").exists()


def test_unknown_registry_name_lists_the_valid_ones_at_load(tmp_path):
    with pytest.raises(ConfigError, match=r"advantage='gpro': unknown advantage estimator; valid: dr_grpo, gae, grpo, reinforce_pp, rloo\. Did you mean 'grpo'\?"):
        grpo(tmp_path, advantage="gpro")
    with pytest.raises(ConfigError, match=r"loss_type='dapoo': unknown loss aggregation; valid: bnpo, cispo, dapo, dr_grpo, grpo, sapo, seq_mean_token_mean.*Did you mean 'dapo'"):
        load_config("grpo", overrides={"loss_type": "dapoo"})
    with pytest.raises(ConfigError, match=r"policy_loss='gpso'.*valid: cispo, gspo, ppo_clip, sapo\. Did you mean 'gspo'"):
        load_config("grpo", overrides={"policy_loss": "gpso"})
    assert not (tmp_path / "bad").exists()


def test_config_typo_names_the_field_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'learnig_rate'.*Did you mean: learning_rate"):
        load_config("grpo", overrides=["learnig_rate=1e-4"])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("num_generation: 8\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'num_generation'.*num_generations"):
        load_config("grpo", cfg_file)
    with pytest.raises(ConfigError, match="learning_rate must be float"):
        load_config("grpo", overrides=["learning_rate=fast"])


def test_cli_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", "train", "grpo", "epsilonn=0.3", f"output_dir={tmp_path}"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "unknown config key 'epsilonn'" in result.stderr and "Traceback" not in result.stderr


def test_cli_delegates_classic_with_its_own_flags():
    result = subprocess.run([sys.executable, "-m", "rewardlab.cli", "classic", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "q_learning" in result.stdout + result.stderr
