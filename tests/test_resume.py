"""A run killed with SIGKILL and resumed matches an uninterrupted run step for step (same seed)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "model_config={hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}",
    "max_steps=12", "batch_size=16", "num_generations=4", "max_completion_length=5", "save_steps=2",
    "save_total_limit=3", "eval_n=8", "learning_rate=0.01", "beta=0.05", "tensorboard=false", "torch_threads=1",
    "reward_funcs=[tests.reward_fixtures:digit_share]",
]
COMPARED = ["reward", "loss", "kl", "entropy", "grad_norm", "clip_fraction", "completion_length", "lr"]


def train_cmd(method: str, out: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rewardlab.cli", "train", method, *ARGS, f"output_dir={out}", f"run_name={name}", *extra]


def metrics(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, open(run / "metrics.jsonl")) if "reward" in r}


# PPO also carries a critic (weights + its own optimizer) and an adaptive KL coefficient through the checkpoint
@pytest.mark.parametrize(
    "method,extra,compared",
    [
        ("grpo", [], COMPARED),
        ("ppo", ["kl_target=0.5", "num_iterations=2"], COMPARED + ["value_loss", "explained_variance", "kl_penalty/beta"]),
    ],
)
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, method, extra, compared):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(train_cmd(method, tmp_path, "full", *extra), check=True, env=env, cwd=ROOT, capture_output=True)

    proc = subprocess.Popen(train_cmd(method, tmp_path, "killed", *extra), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "killed"
    deadline = time.time() + 120
    while not (run / "checkpoint-4").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not still_running:
        pytest.fail("the run finished before it could be killed; make it longer")
    assert not (run / "final").exists()
    assert not list(run.glob(".tmp-*")) or all(not p.name.startswith("checkpoint") for p in run.iterdir() if p.name.startswith(".tmp"))

    subprocess.run(train_cmd(method, tmp_path, "killed", *extra, "resume=true"), check=True, env=env, cwd=ROOT, capture_output=True)
    full, resumed = metrics(tmp_path / "full"), metrics(run)
    assert sorted(resumed) == list(range(1, 13))  # no step lost, none duplicated
    for step in range(1, 13):
        for key in compared:
            assert resumed[step][key] == pytest.approx(full[step][key], abs=1e-4), (step, key)
