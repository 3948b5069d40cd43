"""Classic runs share the language-model trainers' run directory (rewardlab/runs.py): one run per directory,
locked while it trains, checkpoints written atomically, a damaged newest checkpoint skipped on resume."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from rewardlab.classic import q_learning
from rewardlab.runs import CheckpointError, RunDirError, list_checkpoints

# checkpoints at steps 300 and 600, all kept
FIELDS = {"env_id": "FrozenLake-v1", "total_steps": 600, "log_every": 100, "checkpoint_every": 300, "keep_checkpoints": 0}
TIMING = ("time", "sps")


def config(quiet, **overrides):
    return q_learning.QLearningConfig(**{**FIELDS, **quiet, "name": "fl", **overrides})


def steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_a_second_run_into_a_used_directory_is_refused_unless_resume_or_overwrite(quiet):
    q_learning.train(config(quiet))
    run_dir = config(quiet).run_dir
    before = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match=r"already holds a run \(checkpoint-300, .*\)\. Continue it with resume=true, "
                                          r"replace it with overwrite=true .*another directory \(name=\.\.\.\)"):
        q_learning.train(config(quiet))
    assert (run_dir / "metrics.jsonl").read_text() == before  # nothing appended, nothing deleted

    q_learning.train(config(quiet, overwrite=True, total_steps=200))
    assert [p.name for p in list_checkpoints(run_dir)] == ["checkpoint-200"]  # a later resume cannot load the old run
    assert steps(run_dir) == [100, 200]


def test_a_damaged_newest_checkpoint_is_named_and_skipped_for_the_older_one(quiet, caplog):
    caplog.set_level(logging.WARNING)
    _, history = q_learning.train(config(quiet))
    run_dir = config(quiet).run_dir
    newest = run_dir / "checkpoint-600" / "trainer_state.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    _, resumed = q_learning.train(config(quiet, resume=True))
    assert f"skipping {newest.parent}" in caplog.text and str(newest) in caplog.text
    assert without_timing(resumed) == without_timing(history)  # continued from step 300, the same numbers

    for checkpoint in list_checkpoints(run_dir):
        (checkpoint / "trainer_state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*checkpoint-300, checkpoint-600.*overwrite=true"):
        q_learning.train(config(quiet, resume=True))


def test_a_concurrent_run_on_the_same_directory_fails_at_once_naming_the_pid(quiet):
    run_dir = config(quiet).run_dir
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, time; fd = os.open('.lock', os.O_RDWR | os.O_CREAT);"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('held', flush=True); time.sleep(60)"],
        cwd=run_dir, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by another run \(pid {holder.pid}\).*\(name=\.\.\. or runs_dir=\.\.\.\)"):
            q_learning.train(config(quiet))
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    q_learning.train(config(quiet))  # the lock died with its process


def test_a_failed_save_leaves_no_temporary_folder_and_a_killed_ones_is_removed(quiet, monkeypatch):
    from rewardlab.classic import runs

    run_dir = config(quiet).run_dir
    (run_dir / ".tmp-checkpoint-300-12345").mkdir(parents=True)  # left by a run killed mid-save

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(runs.torch, "save", disk_full)
        with pytest.raises(OSError, match="No space left"):
            q_learning.train(config(quiet))
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".tmp")] == []
