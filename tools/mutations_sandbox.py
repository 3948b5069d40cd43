"""Mutations for untrusted input (see tools/mutations.py): each removes one protection of the code sandbox
(rewards/code.py) or of checkpoint loading."""

from __future__ import annotations

from mutations import Mutation

SANDBOX_TESTS = ["tests/test_code_sandbox.py"]
CODE = "rewardlab/rewards/code.py"

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
        "rewardlab/trainers/checkpoint.py",
        "            return torch.load(path, weights_only=True)\n",
        "            return torch.load(path, weights_only=False)\n",
        "an object planted in trainer_state.pt would run code on --resume",
        ["tests/test_checkpoint_safety.py"],
    ),
]
