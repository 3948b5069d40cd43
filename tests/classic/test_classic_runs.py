"""Configs, the run directory, resume, the CLI: each algorithm for a few hundred steps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rewardlab.classic import a2c, dqn, ppo, q_learning, reinforce, sac
from rewardlab.classic.cli import main
from rewardlab.classic.config import ConfigError, build_config, load_config_dict, save_config
from rewardlab.classic.envs import make_env
from rewardlab.classic.policies import load_policy
from rewardlab.classic.runs import read_trainer_state
from rewardlab.runs import RunDirError, list_checkpoints

# (module, config overrides): a few hundred steps each, checkpoints at a multiple of log_every
SMOKE = {
    "q_learning": (q_learning, q_learning.QLearningConfig, {"env_id": "FrozenLake-v1", "total_steps": 600}),
    "dqn": (dqn, dqn.DQNConfig, {"total_steps": 600, "learning_starts": 200, "train_frequency": 4, "batch_size": 32}),
    "reinforce": (reinforce, reinforce.ReinforceConfig, {"total_steps": 600, "episodes_per_update": 2}),
    "a2c": (a2c, a2c.A2CConfig, {"total_steps": 600}),
    "ppo": (ppo, ppo.PPOConfig, {"total_steps": 512, "num_steps": 16, "log_every": 64}),
    "ppo_box": (ppo, ppo.PPOConfig, {"env_id": "Pendulum-v1", "total_steps": 384, "num_steps": 16, "log_every": 64,
                                     "checkpoint_every": 128}),
    "sac": (sac, sac.SACConfig, {"env_id": "Pendulum-v1", "total_steps": 600, "learning_starts": 200, "batch_size": 32,
                                 "hidden_sizes": (32, 32)}),
}
RUN_FIELDS = {"log_every": 100, "checkpoint_every": 300, "keep_checkpoints": 0}
TIMING = ("time", "sps")  # the only metrics allowed to differ between identical runs


def make_config(algo, quiet, **overrides):
    _, config_class, fields = SMOKE[algo]
    return config_class(**{**RUN_FIELDS, **quiet, **fields, **overrides})


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", list(SMOKE))
def test_run_directory_layout_and_exact_resume(name, quiet):
    module = SMOKE[name][0]
    config = make_config(name, quiet, eval_episodes=2)
    policy, history = module.train(config)
    run_dir = config.run_dir

    # the layout of docs/architecture.md#run-directories
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] >= config.total_steps and summary["eval_episodes"] == 2
    assert load_config_dict(run_dir / "config.yaml")["algo"] == config.algo
    rows = read_metrics(run_dir)
    assert rows == history and len(rows) >= 3
    assert [row["step"] for row in rows] == sorted({row["step"] for row in rows})
    assert (run_dir / "plots" / "sps.png").exists()
    checkpoints = list_checkpoints(run_dir)
    assert len(checkpoints) >= 2 and all((c / "envs.pkl").exists() for c in checkpoints)
    final_policy = load_policy(run_dir / "final" / "policy.pt")
    env = make_env(config.env_id)
    obs, _ = env.reset(seed=5)
    assert np.all(np.asarray(final_policy.act(obs)) == np.asarray(policy.act(obs)))

    # simulate a kill right after the first checkpoint (later rows already logged), then resume
    first = checkpoints[0]
    first_step = int(first.name.split("-")[1])
    for later in checkpoints[1:]:
        shutil.rmtree(later)
    shutil.rmtree(run_dir / "final")
    (run_dir / "summary.json").unlink()
    resumed_config = make_config(name, quiet, eval_episodes=2, resume=True)
    _, resumed_history = module.train(resumed_config)
    resumed_rows = read_metrics(run_dir)
    assert resumed_rows == resumed_history
    # the same steps, the same numbers: env snapshot + RNG states + optimizer state continue exactly
    assert without_timing(resumed_rows) == without_timing(rows)
    assert any(row["step"] > first_step for row in resumed_rows)
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == summary["steps"]


def test_runs_are_reproducible_and_refuse_to_overwrite(quiet):
    _, history_a = ppo.train(make_config("ppo", quiet, name="a"))
    _, history_b = ppo.train(make_config("ppo", quiet, name="b"))
    assert without_timing(history_a) == without_timing(history_b)
    _, history_c = ppo.train(make_config("ppo", quiet, name="c", seed=1))
    assert without_timing(history_a) != without_timing(history_c)
    with pytest.raises(RunDirError, match="already holds a run .*resume=true.*overwrite=true"):
        ppo.train(make_config("ppo", quiet, name="a"))


def test_resume_without_env_snapshot_continues_at_checkpoint_step(quiet):
    config = make_config("a2c", quiet)
    a2c.train(config)
    for checkpoint in list_checkpoints(config.run_dir)[1:]:
        shutil.rmtree(checkpoint)
    (list_checkpoints(config.run_dir)[0] / "envs.pkl").unlink()  # e.g. an env that cannot be pickled
    shutil.rmtree(config.run_dir / "final")
    _, history = a2c.train(make_config("a2c", quiet, resume=True, total_steps=900))
    steps = [row["step"] for row in history]
    assert steps == sorted(set(steps)) and steps[-1] == 920  # 8 envs x 5 steps = 40 per update
    state = read_trainer_state(list_checkpoints(config.run_dir)[-1])
    assert state["step"] == 920


def test_resume_before_any_checkpoint_starts_over(quiet):
    config = make_config("q_learning", quiet)
    _, history = q_learning.train(config)
    for checkpoint in list_checkpoints(config.run_dir):  # killed before the first checkpoint landed
        shutil.rmtree(checkpoint)
    shutil.rmtree(config.run_dir / "final")
    _, resumed = q_learning.train(make_config("q_learning", quiet, resume=True))
    assert without_timing(resumed) == without_timing(history) == without_timing(read_metrics(config.run_dir))


def test_tensorboard_events_written(quiet):
    config = make_config("q_learning", {**quiet, "tensorboard": True})
    q_learning.train(config)
    assert list(config.run_dir.glob("events.out.tfevents.*"))


# --- configs -------------------------------------------------------------------------------------------


def test_overrides_are_typed():
    config = build_config(ppo.PPOConfig, ["learning_rate=1e-3", "hidden_sizes=32,16", 'env_kwargs={"g": 9.8}',
                                          "anneal_lr=false", "total_steps=1e5", "target_kl=0.02", "seed=7"])
    assert config.learning_rate == 1e-3 and config.hidden_sizes == (32, 16) and config.env_kwargs == {"g": 9.8}
    assert config.anneal_lr is False and config.total_steps == 100_000 and config.target_kl == 0.02 and config.seed == 7
    assert build_config(ppo.PPOConfig, ["target_kl=none"]).target_kl is None


@pytest.mark.parametrize("override, message", [
    ("learnin_rate=1e-3", "command line: unknown config key 'learnin_rate' for PPOConfig. Did you mean: learning_rate?"),
    ("num_envs=four", "command line: num_envs must be int (a whole number, e.g. 100_000 or 1e5), got str 'four'"),
    ("total_steps=1.5", "command line: total_steps must be int (a whole number, e.g. 100_000 or 1e5), got float 1.5"),
    ("anneal_lr=maybe", "command line: anneal_lr must be bool (true or false), got str 'maybe'"),
    ("hidden_sizes=64,x", "command line: hidden_sizes must be tuple of int (comma-separated, e.g. 64,64), got str '64,x'"),
    ("env_kwargs=[1]", "command line: env_kwargs must be dict (a mapping, e.g. {key: 1}), got list [1]"),
    ("target_kl=tiny", "command line: target_kl must be float (a number, e.g. 3e-4) or null, got str 'tiny'"),
    ("clip_coef=0", "ppo.clip_coef must be > 0"),
    ("num_minibatches=3", "ppo.num_minibatches must divide num_envs * num_steps = 512"),
    ("learning_rate", "override 'learning_rate' is not key=value (e.g. learning_rate=1e-4)"),
    ("hidden_sizes=[64,", "override 'hidden_sizes=[64,': the value is not valid YAML"),
])
def test_bad_overrides_say_what_to_change(override, message):
    with pytest.raises(ConfigError) as error:  # a ValueError, as before
        build_config(ppo.PPOConfig, [override])
    assert message in str(error.value)


def test_text_options_are_taken_as_written_and_the_rest_read_as_yaml():
    config = build_config(ppo.PPOConfig, ["name=007", "env_id=CartPole-v1", "progress=0", "total_steps=100_000",
                                          "hidden_sizes=[32, 16]", "env_kwargs={a: 1}", "target_kl=null"])
    assert config.name == "007" and config.progress is False and config.total_steps == 100_000
    assert config.hidden_sizes == (32, 16) and config.env_kwargs == {"a": 1} and config.target_kl is None


def test_config_yaml_roundtrip(tmp_path):
    config = build_config(dqn.DQNConfig, ["hidden_sizes=64,64", "double_dqn=true", 'env_kwargs={"a": 1}'])
    save_config(config, tmp_path / "config.yaml")
    assert build_config(dqn.DQNConfig, base=load_config_dict(tmp_path / "config.yaml")) == config


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_train_then_eval(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["q_learning", "--env", "FrozenLake-v1", "--name", "fl", "--seed", "3", f"runs_dir={runs}",
            "total_steps=500", "progress=false", "tensorboard=false", "eval_episodes=0"]
    assert main(args) == 0
    assert load_config_dict(runs / "fl" / "config.yaml")["seed"] == 3
    capsys.readouterr()
    assert main(["eval", str(runs / "fl"), "--episodes", "20", "--seed", "1000"]) == 0
    out = capsys.readouterr().out
    assert "FrozenLake-v1" in out and "± " in out and "over 20 episodes" in out
    assert main(["eval", str(runs / "fl"), "--episodes", "20", "--seed", "1000", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["eval_episodes"] == 20 and 0.0 <= result["eval_return_mean"] <= 1.0

    assert main(args) == 2  # same name again without --resume
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--resume", "--overwrite"]) == 2
    assert "overwrite cannot go with resume=true" in capsys.readouterr().err
    assert main([*args, "--resume", "total_steps=800"]) == 0
    assert json.loads((runs / "fl" / "summary.json").read_text())["steps"] == 800
    assert main([*args, "--overwrite", "total_steps=300"]) == 0
    assert json.loads((runs / "fl" / "summary.json").read_text())["steps"] == 300


def test_cli_config_file_written_by_hand(tmp_path, capsys):
    runs = tmp_path / "runs"
    options = tmp_path / "fl.yaml"
    options.write_text(f"env_id: FrozenLake-v1\nrunds_dir: {runs}\n")
    assert main(["q_learning", "--config", str(options)]) == 2
    assert f"{options}: unknown config key 'runds_dir' for QLearningConfig. Did you mean: runs_dir?" in capsys.readouterr().err
    options.write_text(f"env_id: FrozenLake-v1\nruns_dir: {runs}\ntotal_steps: 1.5\n")
    assert main(["q_learning", "--config", str(options)]) == 2
    assert f"{options}: total_steps must be int" in capsys.readouterr().err
    options.write_text("env_id: [FrozenLake-v1\n")
    assert main(["q_learning", "--config", str(options)]) == 2
    assert f"{options} is not valid YAML" in capsys.readouterr().err
    assert main(["q_learning", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err

    # no `algo` key needed; flags and key=value override the file
    options.write_text(f"env_id: FrozenLake-v1\nruns_dir: {runs}\ntotal_steps: 400\nprogress: false\n"
                       "tensorboard: false\neval_episodes: 0\n")
    assert main(["q_learning", "--config", str(options), "--name", "fl", "total_steps=300"]) == 0
    saved = load_config_dict(runs / "fl" / "config.yaml")
    assert saved["algo"] == "q_learning" and saved["total_steps"] == 300 and saved["env_id"] == "FrozenLake-v1"
    assert main(["dqn", "--config", str(runs / "fl" / "config.yaml")]) == 2  # a run's config.yaml names its algorithm
    assert "is the config of a 'q_learning' run; load it with `classic q_learning`, not 'dqn'" in capsys.readouterr().err


def test_cli_errors_and_help(capsys):
    assert main(["ppo", "--env", "CartPole-v1", "learnin_rate=1"]) == 2
    assert "unknown config key 'learnin_rate' for PPOConfig. Did you mean: learning_rate?" in capsys.readouterr().err
    assert main(["dqnn"]) == 2
    assert "valid: a2c, dqn, ppo, q_learning, reinforce" in capsys.readouterr().err
    assert main(["q_learning", "--env", "CartPole-v1", "progress=false"]) == 2
    assert "q_learning needs Discrete observation" in capsys.readouterr().err
    assert main(["dqn", "--env", "Pendulum-v1"]) == 2
    assert "dqn needs a Discrete action space" in capsys.readouterr().err
    assert main(["ppo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "clip_coef=0.2" in out and "PPO ratio clipping epsilon" in out


def test_a_namespaced_env_id_names_one_run_folder():
    config = build_config(ppo.PPOConfig, ["env_id=rewardlab/MarketMaking-v0", "seed=2"])
    assert config.run_name == "ppo-rewardlab-MarketMaking-v0-seed2" and "/" not in config.run_name
