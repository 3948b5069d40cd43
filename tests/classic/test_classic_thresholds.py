"""Solved thresholds with the default hyperparameters: train seeds 0, 1, 2 through the CLI, then
`classic eval` on fresh seeds (1000+). Slow: about 20 minutes single-threaded in all (docs/classic.md
lists the measured numbers and wall times)."""

from __future__ import annotations

import json

import pytest
import torch

from rewardlab.classic.cli import main

# (algo, env, evaluation episodes, threshold on the mean return)
THRESHOLDS = [
    ("q_learning", "FrozenLake-v1", 1000, 0.70),  # success rate; the ceiling within the 100-step limit is 0.744 (benchmarks/frozenlake_optimum.py)
    ("q_learning", "Taxi-v4", 100, 7.0),  # Taxi-v3's dynamics; Gymnasium 1.4 refuses -v3
    ("dqn", "CartPole-v1", 100, 475.0),
    ("reinforce", "CartPole-v1", 100, 400.0),
    ("a2c", "CartPole-v1", 100, 475.0),
    ("ppo", "CartPole-v1", 100, 475.0),
    ("ppo", "Acrobot-v1", 100, -100.0),
]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("algo, env_id, episodes, threshold", THRESHOLDS)
def test_solves_with_defaults(tmp_path, capsys, algo, env_id, episodes, threshold, seed):
    torch.set_num_threads(1)
    assert main([algo, "--env", env_id, "--seed", str(seed), "--name", "run", f"runs_dir={tmp_path}", "progress=false"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--episodes", str(episodes), "--seed", "1000", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["eval_return_mean"] >= threshold, result
