"""Mutations for untrusted input and run safety (see tools/mutations.py): each removes one protection of the
code sandbox (rewards/code.py), of checkpoint loading, of the run directory, of settings and reward checks."""

from __future__ import annotations

from mutations import Mutation

SANDBOX_TESTS = ["tests/test_code_sandbox.py"]
CODE = "rewardlab/rewards/code.py"
RUNS = "rewardlab/runs.py"  # the run directory and checkpoints of both the trainers and classic RL
CLASSIC_RUN_SAFETY = "tests/classic/test_classic_run_safety.py"

SANDBOX: list[Mutation] = [
    Mutation(
        "sandbox: candidate keeps the caller's uid",
        CODE,
        '    if payload["drop_to"] is not None and os.getuid() == 0:\n',
        "    if False:\n",
        "run as root, the candidate could read root-only files and signal the host",
        SANDBOX_TESTS,
    ),
    Mutation(
        "sandbox: network namespace dropped",
        CODE,
        '"--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"',
        '"--unshare-ipc", "--unshare-pid", "--unshare-uts"',
        "the candidate could open connections to the host and beyond",
        SANDBOX_TESTS,
    ),
    Mutation(
        "sandbox: host accepts any reported output",
        CODE,
        "output is not None and _same(_literal(output), want) for output, want",
        "output is not None for output, want",
        "a test must pass only when the host finds the expected value, which never enters the sandbox",
        SANDBOX_TESTS,
    ),
    Mutation(
        "sandbox: no address-space limit",
        CODE,
        '("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),',
        '("RLIMIT_AS", -1, -1),',
        "a memory bomb would take the machine's memory",
        SANDBOX_TESTS,
    ),
    Mutation(
        "sandbox: process group not killed",
        CODE,
        "        os.killpg(process.pid, signal.SIGKILL)\n",
        "        pass\n",
        "a background process of the candidate would outlive the call",
        SANDBOX_TESTS,
    ),
    Mutation(
        "checkpoint: trainer state unpickled in full",
        RUNS,
        "            state = torch.load(path, weights_only=True)\n",
        "            state = torch.load(path, weights_only=False)\n",
        "an object planted in trainer_state.pt would run code on --resume",
        ["tests/test_checkpoint_safety.py"],
    ),
    *[Mutation(f"run safety: {name}", file, old, new, why,
               [f"tests/test_run_safety.py::{test}" if test else "tests/classic/test_env_snapshot_safety.py"])
      for name, file, old, new, why, test in [
        ("run directory not locked", RUNS, "        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
         "        pass\n", "two runs on one directory would interleave their metrics and checkpoints",
         "test_a_second_run_on_a_directory_in_use_fails_at_once_naming_the_pid"),
        ("earlier run not refused", RUNS, "    if not found or resume:\n", "    if True:\n",
         "a new run would append to the old metrics and a later resume would load the old checkpoint",
         "test_a_new_run_refuses_a_directory_holding_an_earlier_run"),
        ("SIGINT saves nothing", "rewardlab/trainers/lifecycle.py",
         "        stopping = self.stop.received is not None and done < cfg.max_steps", "        stopping = False",
         "Ctrl-C would lose every step since the last periodic checkpoint",
         "test_sigint_in_the_middle_of_grpo_saves_a_checkpoint_and_resuming_matches"),
        ("failed save leaves its temporary folder", RUNS,
         "        shutil.rmtree(tmp, ignore_errors=True)\n        raise\n", "        raise\n",
         "a disk-full save would leave a .tmp-checkpoint folder behind", "test_a_failed_save_leaves_no_temporary_folder"),
        ("NaN settings accepted", "rewardlab/config.py", "        _check_finite(self)\n", "        pass\n",
         "learning_rate: nan would crash in AdamW after the run directory exists", "test_bad_numeric_settings_fail_at_load"),
        ("rewards not checked in float32", "rewardlab/rewards/base.py", "        if not bool(torch.isfinite(total32).all()):\n",
         "        if False:\n", "a reward of 1e300 would become inf and corrupt the weights",
         "test_a_reward_beyond_float32_is_an_error_before_it_reaches_the_weights"),
        ("huge prompts tokenized whole", "rewardlab/trainers/inputs.py", "        cut = bool(max_length) and len(text) > keep\n",
         "        cut = False\n", "a 10 MB prompt would be tokenized whole every time it is sampled",
         "test_a_huge_prompt_is_cut_before_tokenizing_and_keeps_the_same_last_tokens"),
        ("sample logs unbounded", "rewardlab/monitor/runlog.py", "record = _bounded(_finite_or_none(", "record = (_finite_or_none(",
         "a 10 MB prompt would be written whole into samples.jsonl at every logging step", "test_sample_logs_are_bounded"),
        ("reward timeout ignored in process", "rewardlab/rewards/isolation.py",
         "            signal.setitimer(signal.ITIMER_REAL, self.timeout)\n", "            pass\n",
         "a reward that hangs would hang the run", "test_a_hanging_reward_is_stopped_at_the_timeout_and_named"),
        ("reward worker never timed out", "rewardlab/rewards/isolation.py", "future.result(timeout=self.timeout or None)",
         "future.result(timeout=None)", "a reward that hangs in a worker would hang the run",
         "test_a_hanging_reward_is_stopped_at_the_timeout_and_named"),
        ("exit() in a reward ends the run", "rewardlab/rewards/base.py", "        except SystemExit as exc:  # exit() inside",
         "        except ZeroDivisionError as exc:  # exit() inside", "sys.exit(0) in a reward would end training silently, exit code 0",
         "test_exit_in_a_reward_is_an_error_not_a_silent_exit"),
        ("classic env snapshot unpickled unsigned", "rewardlab/classic/envs.py",
         "    if head != SNAPSHOT_MAGIC or not hmac.compare_digest(digest, expected):\n", "    if False:\n",
         "a planted envs.pkl would run code on resume", None),
        ("SFT rows checked mid-run", "rewardlab/trainers/sft.py", "        if len(prompt) + len(completion) > max_length:\n",
         "        if False:\n", "a row over max_length would fail at whichever step samples it, with no row index",
         "test_an_sft_row_over_max_length_is_named_before_the_run_starts"),
      ]],
    Mutation(
        "run safety: classic run directory not claimed",
        "rewardlab/classic/runs.py",
        "        claim_run_dir(self.dir, config.resume, config.overwrite, WORDING)\n",
        "        self.dir.mkdir(parents=True, exist_ok=True)\n",
        "a classic run would write into a directory in use, or into an earlier run's, mixing their metrics and checkpoints",
        [f"{CLASSIC_RUN_SAFETY}::test_a_second_run_into_a_used_directory_is_refused_unless_resume_or_overwrite"],
    ),
    Mutation(
        "run safety: damaged checkpoint not skipped",
        RUNS,
        "        except CorruptCheckpointError as error:\n",
        "        except ImportError as error:\n",
        "one truncated file would stop a resume (LLM or classic) that an older checkpoint could serve",
        ["tests/test_run_safety.py::test_a_damaged_checkpoint_is_named_and_skipped_for_the_newest_intact_one",
         f"{CLASSIC_RUN_SAFETY}::test_a_damaged_newest_checkpoint_is_named_and_skipped_for_the_older_one"],
    ),
]
