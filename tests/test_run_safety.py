"""Nothing lost, nothing mixed: the run directory's guard and lock, a clean stop on SIGINT, damaged
checkpoints skipped for the newest intact one, and settings checked before anything is written."""

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rewardlab
from rewardlab.cli import main
from rewardlab.config import ConfigError, load_config
from rewardlab.data import DataError
from rewardlab.rewards import RewardError, RewardFunctions
from rewardlab.trainers.checkpoint import CheckpointError, list_checkpoints
from rewardlab.trainers.rundir import RunDirError

from .test_resume import train_cmd
from .test_trainers import small

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def sft(tmp_path, **overrides):
    return rewardlab.train("sft", small(tmp_path, run_name="run", batch_size=8, **overrides))


def steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in open(run / "metrics.jsonl")]


# --- finding 2: a run directory holds one run -------------------------------------------------------

def test_a_new_run_refuses_a_directory_holding_an_earlier_run(tmp_path):
    sft(tmp_path, save_steps=2)
    run = tmp_path / "run"
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match=r"already holds a run .*--resume.*--overwrite"):
        sft(tmp_path, save_steps=2)
    assert (run / "metrics.jsonl").read_text() == before  # nothing appended, nothing deleted
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"]


def test_overwrite_replaces_the_earlier_run_and_its_checkpoints(tmp_path):
    sft(tmp_path, save_steps=2, max_steps=5)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-2", "checkpoint-4"]
    sft(tmp_path, overwrite=True, max_steps=3)
    run = tmp_path / "run"
    assert list_checkpoints(run) == []  # a later --resume cannot pick up the old run's checkpoint
    assert steps(run) == [1, 2, 3, 3]  # only the new run's rows: three steps and its final evaluation


def test_a_second_run_on_a_directory_in_use_fails_at_once_naming_the_pid(tmp_path):
    run = tmp_path / "busy"
    run.mkdir()
    # another process holding the lock the way claim_run_dir does (flock on .lock, its pid inside)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, time; fd = os.open('.lock', os.O_RDWR | os.O_CREAT);"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('held', flush=True); time.sleep(60)"],
        cwd=run, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by another run \(pid {holder.pid}\)"):
            rewardlab.train("sft", small(tmp_path, run_name="busy", batch_size=8))
        assert not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    rewardlab.train("sft", small(tmp_path, run_name="busy", batch_size=8))  # the lock died with its process


def test_resume_without_a_checkpoint_starts_over_without_duplicate_rows(tmp_path):
    sft(tmp_path)
    first = steps(tmp_path / "run")
    sft(tmp_path, resume=True)
    assert steps(tmp_path / "run") == first


# --- finding 6: damaged checkpoints ----------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated_state", "empty_weights", "truncated_weights"])
def test_a_damaged_checkpoint_is_named_and_skipped_for_the_newest_intact_one(tmp_path, damage, caplog):
    caplog.set_level(logging.INFO)
    sft(tmp_path, save_steps=2, max_steps=5, save_total_limit=3)
    newest = tmp_path / "run" / "checkpoint-4"
    target = newest / ("trainer_state.pt" if damage == "truncated_state" else "model.safetensors")
    data = target.read_bytes()
    target.write_bytes(b"" if damage == "empty_weights" else data[: len(data) // 2])
    before = steps(tmp_path / "run")
    sft(tmp_path, save_steps=2, max_steps=5, save_total_limit=3, resume=True)
    assert f"skipping {newest}" in caplog.text and str(target) in caplog.text
    assert "resumed from" in caplog.text and "checkpoint-2 (step 2)" in caplog.text
    assert steps(tmp_path / "run") == before  # rows past step 2 dropped, then logged again once each


def test_no_intact_checkpoint_is_an_error_naming_them(tmp_path):
    sft(tmp_path, save_steps=2, max_steps=3)
    (tmp_path / "run" / "checkpoint-2" / "trainer_state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*checkpoint-2"):
        sft(tmp_path, save_steps=2, max_steps=3, resume=True)


def test_a_failed_save_leaves_no_temporary_folder(tmp_path, monkeypatch):
    from rewardlab.trainers import checkpoint

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sft(tmp_path, save_steps=2)
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".tmp")] == []


def test_a_killed_runs_temporary_folder_is_removed_on_the_next_start(tmp_path):
    run = tmp_path / "run"
    (run / ".tmp-checkpoint-4-12345").mkdir(parents=True)
    sft(tmp_path)
    assert not (run / ".tmp-checkpoint-4-12345").exists()


# --- finding 3: SIGINT saves, and the resumed run ends where an uninterrupted one does ------------------

def test_sigint_in_the_middle_of_grpo_saves_a_checkpoint_and_resuming_matches(tmp_path):
    # the default save_steps=0: without the stop handler nothing would be saved; the uninterrupted run in process
    assert main(train_cmd("grpo", tmp_path, "full", "save_steps=0")[3:]) == 0
    proc = subprocess.Popen(train_cmd("grpo", tmp_path, "stopped", "save_steps=0"), env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "stopped"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").exists() and max(steps(run), default=0) >= 3:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be interrupted; make it longer")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    saved = list_checkpoints(run)
    assert len(saved) == 1 and 3 <= int(saved[0].name.split("-")[1]) < 12, err
    assert f"checkpoint saved to {saved[0]}" in err and "--resume" in err and "Traceback" not in err
    assert not (run / "final").exists()

    subprocess.run(train_cmd("grpo", tmp_path, "stopped", "save_steps=0", "resume=true"), check=True, env=ENV, cwd=ROOT, capture_output=True)
    trained = [json.loads(line)["step"] for line in open(run / "metrics.jsonl") if '"reward"' in line]
    assert sorted(trained) == list(range(1, 13))  # no training step lost, none twice
    full, resumed = load_file(tmp_path / "full" / "final" / "model.safetensors"), load_file(run / "final" / "model.safetensors")
    assert full.keys() == resumed.keys()
    worst = max(float((full[k] - resumed[k]).abs().max()) for k in full)
    assert worst <= 1e-4, worst


# --- finding 4: settings checked at load, before anything exists; rewards checked in float32 -----------

@pytest.mark.parametrize("override", [
    "epsilon=-1", "learning_rate=nan", "temperature=-1", "top_p=5", "max_completion_length=0", "beta=inf",
    "epsilon_high=0.1", "overlong_buffer=17", "top_k=-1", "rlsd_eps=0",
])
def test_bad_numeric_settings_fail_at_load(override):
    method = "rlsd" if override.startswith("rlsd") else "grpo"  # an objective's own settings are checked when it runs
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(method, None, [override])


def test_cli_bad_setting_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["train", "grpo", "learning_rate=nan", f"output_dir={tmp_path}"]) == 2
    assert capsys.readouterr().err.splitlines() == ["rewardlab: error: learning_rate must be a finite number, got nan"]
    assert list(tmp_path.iterdir()) == []


def test_a_reward_beyond_float32_is_an_error_before_it_reaches_the_weights():
    rewards = RewardFunctions([lambda completions, **kw: [1e300, 0.0]])
    with pytest.raises(RewardError, match=r"sample 0 is 1e\+300, beyond float32"):
        rewards(["p", "p"], ["a", "b"], [[1], [2]])
    total, _ = RewardFunctions([lambda completions, **kw: [1e30, 0.0]])(["p", "p"], ["a", "b"], [[1], [2]])
    assert torch.isfinite(total).all()


def test_classic_zero_width_network_is_refused():
    from rewardlab.classic.config import build_config
    from rewardlab.classic.dqn import DQNConfig

    with pytest.raises(ValueError, match="hidden_sizes"):
        build_config(DQNConfig, ["hidden_sizes=0"])
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        build_config(DQNConfig, ["learning_rate=nan"])


# --- finding 5: unbounded rows ----------------------------------------------------------------------

def test_a_huge_prompt_is_cut_before_tokenizing_and_keeps_the_same_last_tokens(tokenizer):
    from rewardlab.trainers.inputs import encode_prompt

    seen = []

    def spy(text, **kwargs):
        seen.append(len(text))
        return tokenizer(text, **kwargs)

    prompt = "12+34=" * 2_000_000  # 12 MB
    ids, truncated = encode_prompt(prompt, spy, 256)
    assert truncated and ids == tokenizer(prompt[-10_000:], add_special_tokens=False)["input_ids"][-256:]
    assert max(seen) < 20_000, f"{max(seen)} characters tokenized for a 256-token budget"
    assert encode_prompt("1+2=", tokenizer, 256) == (tokenizer("1+2=", add_special_tokens=False)["input_ids"], False)


def test_sample_logs_are_bounded(tmp_path):
    from rewardlab.monitor import RunLogger
    from rewardlab.monitor.runlog import SAMPLE_TEXT_LIMIT

    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.log_samples(1, [{"prompt": "x" * 10_000_000, "completion": [{"role": "user", "content": "y" * 50_000}]}])
    size = (tmp_path / "samples.jsonl").stat().st_size
    assert size < 3 * SAMPLE_TEXT_LIMIT
    row = json.loads((tmp_path / "samples.jsonl").read_text())
    assert "9996000 characters not logged" in row["prompt"] and row["prompt"].startswith("x")


def test_an_sft_row_over_max_length_is_named_before_the_run_starts(tmp_path):
    rows = [{"prompt": "1+1=", "completion": "2"}] * 5 + [{"prompt": "1+1=" * 40, "completion": "2"}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"rows.jsonl, row 5: prompt \+ completion is 162 tokens, over max_length=100"):
        sft(tmp_path, dataset=str(data), max_length=100, eval_dataset=str(data))
    assert not (tmp_path / "run").exists()


def test_a_prompt_budget_beyond_the_models_positions_is_lowered_with_a_warning(tmp_path, caplog):
    rewardlab.train("grpo", small(tmp_path, run_name="g", batch_size=8, num_generations=4, max_steps=1,
                                  max_completion_length=4, reward_funcs=["tests.reward_fixtures:digit_share"]))
    assert "max_prompt_length=512 + max_completion_length=4 exceeds the model's 256 positions; prompts are cut to their last 252 tokens" in caplog.text


# --- finding 7: ordinary mistakes are one line, exit 2, and write nothing ------------------------------

@pytest.mark.parametrize("args,message", [
    (["--config", "{bad}"], "is not valid YAML: while parsing a flow node"),
    (["task_options={max_digits: -1}"], "task_options for task 'arithmetic': arithmetic: need 1 <= min_digits"),
    (["task_options={bogus: 1}"], "bad option for task 'arithmetic'"),
    (["model=/no/such/model"], "model '/no/such/model' is neither 'tiny'"),
    (["--env", "nosuchenv"], "unknown environment 'nosuchenv'"),
    (["--env", "tictactoe", "env_options={bogus: 1}"], "bad option for environment 'tictactoe'"),
    (["reward_funcs=[no_such_module:f]"], "cannot import reward function 'no_such_module:f'"),
    (["beta=[1,"], "override 'beta=[1,': the value is not valid YAML"),
])
def test_ordinary_mistakes_are_one_line_exit_2_and_write_nothing(tmp_path, args, message, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1,\n")
    args = ["train", "grpo", *[str(bad_yaml) if a == "{bad}" else a for a in args], f"output_dir={tmp_path / 'runs'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rewardlab: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(Exception, match=re.escape(message)):  # --debug: the exception itself, with its traceback
        main(["--debug", *args])


def test_classic_bad_env_kwargs_and_play_on_eof_are_one_line(capsys, monkeypatch):
    assert main(["classic", "dqn", "--env", "CartPole-v1", 'env_kwargs={"bogus": 1}', "total_steps=10"]) == 2
    assert capsys.readouterr().err.startswith("rewardlab: error: env_kwargs {'bogus': 1} do not fit 'CartPole-v1'")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["play", "tictactoe"]) == 1
    assert "game abandoned" in capsys.readouterr().err


def test_a_reward_module_in_the_working_directory_is_importable_from_the_script(tmp_path):
    (tmp_path / "my_rewards.py").write_text("def ones(completions, **kwargs):\n    return [1.0] * len(completions)\n")
    script = Path(sys.executable).parent / "rewardlab"
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(script), "train", "grpo", "reward_funcs=[my_rewards:ones]", "max_steps=1", "batch_size=8",
                          "num_generations=4", "max_completion_length=2", "eval_n=2", "tensorboard=false", "output_dir=runs",
                          "model_config={hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "runs" / "grpo" / "metrics.jsonl").read_text().splitlines()[1])["rewards/ones/mean"] == 1.0


# --- finding 8: reward code that hangs, exits or crashes is contained and named --------------------------

def hangs(completions, **kwargs):
    """Busy for 20 s (bounded, so that a timeout that does not work fails the test instead of hanging it)."""
    until = time.monotonic() + 20
    while time.monotonic() < until:
        pass
    return [0.0] * len(completions)


def exits(completions, **kwargs):
    sys.exit(0)


def segfaults(completions, **kwargs):
    import ctypes

    ctypes.string_at(0)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_hanging_reward_is_stopped_at_the_timeout_and_named(workers):
    rewards = RewardFunctions([hangs], timeout=0.5, workers=workers)
    started = time.perf_counter()
    with pytest.raises(RewardError, match=r"reward function hangs did not return within reward_timeout=0.5s"):
        rewards(["p"], ["c"], [[1]])
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("workers", [0, 1])
def test_exit_in_a_reward_is_an_error_not_a_silent_exit(workers):
    with pytest.raises(RewardError, match=r"reward function exits .*exit\(0\)"):
        RewardFunctions([exits], workers=workers)(["p"], ["c"], [[1]])


def test_a_segfaulting_reward_in_a_worker_is_reported_and_the_next_call_works():
    rewards = RewardFunctions([segfaults], workers=1)
    with pytest.raises(RewardError, match="reward function segfaults crashed its worker process"):
        rewards(["p"], ["c"], [[1]])
    fine = RewardFunctions([lambda completions, **kw: [float(len(c)) for c in completions]], workers=2)
    assert fine(["p", "p"], ["ab", "abc"], [[1], [2]])[0].tolist() == [2.0, 3.0]


def test_grpo_with_a_hanging_reward_fails_at_the_timeout_naming_it(tmp_path):
    with pytest.raises(RewardError, match="reward function hangs did not return within reward_timeout=1s"):
        rewardlab.train("grpo", small(tmp_path, reward_funcs=[hangs], reward_timeout=1, reward_workers=1, batch_size=8,
                                      num_generations=4, max_steps=2))
