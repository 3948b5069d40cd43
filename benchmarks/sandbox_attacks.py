"""Attacks on the code sandbox, run in every mode available here, and its cost per execution.

    python benchmarks/sandbox_attacks.py [--timeout 2] [--runs 60]

Each attack is a candidate program with hidden tests, run through rewardlab.rewards.code.run_code. The
host then checks that the attack did not get out: the file it tried to write does not exist, the
listener it tried to reach saw no connection, no process it started is still alive, the host process
survived (attacks on the host process run from a separate, sacrificial host process). "contained" is
that check, not the run's status. One cell is not run: a fork bomb in rlimits mode as root, because
the kernel exempts root from RLIMIT_NPROC, so on a shared machine only the timeout would stop it.

Throughput: --runs executions of a trivial program in each mode, against the same number of bare
`subprocess.run([sys.executable, "-c", ...])` calls (and of the base interpreter with `-I -S`, which is
what the sandbox starts), interleaved in rounds so that load on the machine falls on all alike; plus
run_batch with 2 workers in the best mode.

Writes benchmarks/results/sandbox_attacks.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from rewardlab.rewards import code as sandbox  # noqa: E402  (after the path set-up above)

RESULTS = ROOT / "benchmarks" / "results" / "sandbox_attacks.md"
MARKER = "rewardlab-attack-" + secrets.token_hex(6)  # in the argv of every process an attack leaves behind
ROOT_ONLY_DIR = "/usr/share/polkit-1/rules.d"  # mode 0700 on Debian, and visible inside the sandbox


def leftovers_after(marker: str, grace_s: float = 1.0) -> int:
    """How many processes carrying `marker` are alive `grace_s` after the call; kills them."""
    deadline = time.monotonic() + grace_s
    while sandbox.processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = sandbox.processes_with(marker)
    for pid in alive:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return len(alive)


def tasks_of(uid: int) -> int:
    return sandbox._tasks_of(uid)


# ------------------------------------------------------------------------------------------ attacks
# Each returns (code, tests, check); check(result) -> (contained, evidence) runs on the host afterwards.


def infinite_loop(limits):
    def check(result):
        return result.status == "timeout" and result.wall_s < limits.timeout_s + 1.0, f"stopped after {result.wall_s:.2f} s"

    return "def f():\n    while True:\n        pass\n", [("f()", 1)], check


def fork_bomb(limits):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    # the check reads the peak the sampler (see run_attack) saw, so it is filled in there
    return code, [("f()", 1)], None


def memory_bomb(limits):
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(2**28))  # 256 MiB more each round\n"

    def check(result):
        hit = "MemoryError" in result.detail
        return hit, f"MemoryError at the {limits.memory_bytes // 2**20} MiB address-space limit" if hit else result.detail

    return code, [("f()", 1)], check


def output_flood(limits):
    code = "import sys\nfor _ in range(4096):\n    sys.stdout.write('x' * 2**20)\n"  # 4 GiB

    def check(result):
        capped = result.status == "output_limit"
        return capped, f"cut at {limits.output_bytes} bytes of 4 GiB" if capped else result.status

    return code, [("f()", 1)], check


def write_outside(limits):
    targets = [Path(f"/work/{MARKER}-escaped"), Path(f"/tmp/{MARKER}-escaped")]
    code = "def write(path):\n    with open(path, 'w') as f:\n        f.write('escaped')\n    return 'wrote'\n"

    def check(result):
        written = [str(t) for t in targets if t.exists()]
        for target in targets:
            target.unlink(missing_ok=True)
        if written:
            return False, "wrote " + ", ".join(written)
        inside = " (the /tmp write succeeded in the sandbox's own tmpfs)" if any(result.passed) else ""
        return True, "no file appeared on the host" + inside

    return code, [(f"write({str(t)!r})", "wrote") for t in targets], check


def read_root_only(limits):
    tests = []
    if os.access("/etc/shadow", os.R_OK):
        tests.append(("read('/etc/shadow')", Path("/etc/shadow").read_text()))
    if os.path.isdir(ROOT_ONLY_DIR) and os.access(ROOT_ONLY_DIR, os.R_OK):
        tests.append((f"read({ROOT_ONLY_DIR!r})", sorted(os.listdir(ROOT_ONLY_DIR))))
    code = "import os\ndef read(path):\n    return sorted(os.listdir(path)) if os.path.isdir(path) else open(path).read()\n"

    def check(result):
        # the expected values are the real contents: a pass means the candidate read them
        leaked = sum(result.passed)
        return leaked == 0, f"read {leaked} of {len(tests)} root-only paths" if tests else "the host cannot read them either"

    return code, tests or [("read('/etc/shadow')", None)], check


def connect_localhost(limits):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = (
        "import socket\ndef f():\n"
        f"    with socket.create_connection(('127.0.0.1', {port}), timeout=1) as s:\n"
        "        s.sendall(b'hello')\n"
        "    return 'connected'\n"
    )

    def check(result):
        try:
            listener.accept()[0].close()
            connected = True
        except BlockingIOError:
            connected = False
        listener.close()
        return not connected, "the host listener accepted a connection" if connected else "no connection reached it"

    return code, [("f()", "connected")], check


def kill_parent(limits):
    return "import os\nos.kill(os.getppid(), 9)\ndef f():\n    return 1\n", [("f()", 1)], "sacrificial"


def kill_grandparent(limits):
    code = (
        "import os\n"
        "with open('/proc/%d/status' % os.getppid()) as f:\n"
        "    grandparent = int([l.split()[1] for l in f if l.startswith('PPid:')][0])\n"
        "os.kill(grandparent, 9)\n"
        "def f():\n    return 1\n"
    )
    return code, [("f()", 1)], "sacrificial"


def segfault(limits):
    def check(result):
        return result.status == "crashed" and "SIGSEGV" in result.detail, result.detail

    return "import ctypes\nctypes.string_at(0)\n", [("f()", 1)], check


def sleep_past_timeout(limits):
    def check(result):
        return result.status == "timeout" and result.wall_s < limits.timeout_s + 1.0, f"stopped after {result.wall_s:.2f} s"

    return "import time\ntime.sleep(600)\ndef f():\n    return 1\n", [("f()", 1)], check


def background_daemon(limits):
    code = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(120)', {MARKER!r}])\n"
        "    os._exit(0)\n"
        "import time\ntime.sleep(0.3)\n"
        "def f():\n    return 1\n"
    )

    def check(result):
        left = leftovers_after(MARKER)
        return left == 0, f"{left} process(es) outlived the call (killed by the benchmark)" if left else "none outlived the call"

    return code, [("f()", 1)], check


ATTACKS = [
    ("infinite loop", infinite_loop),
    ("fork bomb", fork_bomb),
    ("memory bomb", memory_bomb),
    ("4 GiB of output", output_flood),
    ("write outside its folder (/work, /tmp)", write_outside),
    ("read root-only files (/etc/shadow, a 0700 dir)", read_root_only),
    ("socket to a 127.0.0.1 listener", connect_localhost),
    ("kill its parent", kill_parent),
    ("kill the host (parent's parent)", kill_grandparent),
    ("ctypes segfault", segfault),
    ("sleep past the timeout", sleep_past_timeout),
    ("double-forked background process", background_daemon),
]


def in_sacrificial_host(mode: str, code: str, tests, limits) -> tuple[bool, dict]:
    """run_code from a separate host process (code.py loaded by path), so an escape kills it, not us."""
    host = (
        "import dataclasses, importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('sandbox', {sandbox.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        f"limits = module.SandboxLimits(**{vars(limits)!r})\n"
        f"result = module.run_code({code!r}, {tests!r}, sandbox={mode!r}, limits=limits)\n"
        "print(json.dumps(dataclasses.asdict(result)))\n"
    )
    with tempfile.TemporaryDirectory() as scratch:  # a killed host cannot remove its run's folder; we do
        env = {**os.environ, "TMPDIR": scratch}
        done = subprocess.run([sys.executable, "-c", host], capture_output=True, text=True, timeout=120, env=env)
    if done.returncode != 0:
        return False, {"status": "host died", "detail": f"the host process ended with {done.returncode}",
                       "reward": 0.0, "wall_s": None}
    return True, json.loads(done.stdout.strip().splitlines()[-1])


def run_attack(name, build, mode, limits) -> dict:
    code, tests, check = build(limits)
    row = {"attack": name, "mode": mode}
    if name == "fork bomb" and mode == "rlimits" and os.getuid() == 0:
        return {**row, "contained": None, "status": "not run", "reward": None, "wall_s": None,
                "evidence": "not run: root is exempt from RLIMIT_NPROC, so only the timeout would stop it"}
    if check == "sacrificial":
        survived, result = in_sacrificial_host(mode, code, tests, limits)
        evidence = "the host process survived" if survived else result["detail"]
        return {**row, "contained": survived, "status": result["status"], "reward": result["reward"],
                "wall_s": result["wall_s"], "evidence": evidence, "detail": result["detail"]}
    if name == "fork bomb":
        uid = sandbox.UNPRIVILEGED_UID if mode == "bwrap" and os.getuid() == 0 else os.getuid()
        before, peak, done = tasks_of(uid), [0], [False]

        def sample():
            while not done[0]:
                peak[0] = max(peak[0], tasks_of(uid) - before)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        result = sandbox.run_code(code, tests, sandbox=mode, limits=limits)
        done[0] = True
        sampler.join()
        after = tasks_of(uid) - before
        contained = result.status == "timeout" and peak[0] <= limits.max_processes + 2 and after <= 0
        evidence = f"at most {peak[0]} processes (limit {limits.max_processes}), {max(after, 0)} left after"
    else:
        result = sandbox.run_code(code, tests, sandbox=mode, limits=limits)
        contained, evidence = check(result)
    return {**row, "contained": contained, "status": result.status, "reward": result.reward,
            "wall_s": result.wall_s, "evidence": evidence, "detail": result.detail}


# ---------------------------------------------------------------------------------------- throughput
def throughput(modes: list[str], runs: int, rounds: int = 5) -> dict:
    trivial = ("def f():\n    return 1\n", [("f()", 1)])
    bare = {
        "bare": [sys.executable, "-c", "print(1)"],
        # what the sandbox itself starts: the base interpreter without site-packages
        "bare -I -S": [sandbox._default_python(), "-I", "-S", "-c", "print(1)"],
    }
    seconds = {**{name: 0.0 for name in bare}, **{mode: 0.0 for mode in modes}}
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        for name, command in bare.items():
            start = time.perf_counter()
            for _ in range(per_round):
                subprocess.run(command, capture_output=True, check=True)
            seconds[name] += time.perf_counter() - start
        for mode in modes:
            start = time.perf_counter()
            for _ in range(per_round):
                assert sandbox.run_code(*trivial, sandbox=mode).reward == 1.0
            seconds[mode] += time.perf_counter() - start
    n = per_round * rounds
    rates = {name: n / total for name, total in seconds.items()}
    start = time.perf_counter()
    batch = sandbox.run_batch([trivial[0]] * n, [trivial[1]] * n, sandbox=modes[-1], workers=2)
    assert all(r.reward == 1.0 for r in batch)
    rates[f"{modes[-1]}, run_batch 2 workers"] = n / (time.perf_counter() - start)
    return {"executions": n, "per_s": rates, "ratio_to_bare": {k: v / rates["bare"] for k, v in rates.items()}}


# ------------------------------------------------------------------------------------------- report
def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def write_results(rows, speed, limits, modes, command, host, elapsed):
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(
        {"command": command, "machine": host, "limits": vars(limits), "modes": modes, "attacks": rows,
         "throughput": speed, "elapsed_s": elapsed}, indent=2) + "\n")
    lines = [
        "# Attacks on the code sandbox",
        "",
        f"Generated by `{command}` on {host}, as uid {os.getuid()}, in {elapsed:.0f} s. Modes run: "
        f"{', '.join(modes)}. Limits: timeout_s {limits.timeout_s}, memory_bytes {limits.memory_bytes}, "
        f"max_processes {limits.max_processes}, output_bytes {limits.output_bytes}, open_files {limits.open_files}, "
        f"tmp_bytes {limits.tmp_bytes}.",
        "",
        "\"contained\" is checked on the host after the call (file absent, no connection, no process left, "
        "host process alive), not read from the status. Reward is the fraction of the hidden tests passed.",
        "",
        "| attack | mode | contained | status | reward | wall s | evidence |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        contained = {True: "yes", False: "**no**", None: "not run"}[row["contained"]]
        lines.append(f"| {row['attack']} | {row['mode']} | {contained} | {row['status']} | {fmt(row['reward'])} "
                     f"| {fmt(row['wall_s'])} | {row['evidence']} |")
    lines += [
        "",
        f"## Executions per second (trivial program, {speed['executions']} each, sequential unless noted)",
        "",
        "| how | executions/s | ratio to bare subprocess |",
        "|---|---|---|",
    ]
    for name, rate in speed["per_s"].items():
        labels = {"bare": "bare `subprocess.run([sys.executable, '-c', ...])`",
                  "bare -I -S": "bare, base interpreter with `-I -S` (what the sandbox starts)"}
        label = labels.get(name, f"run_code, {name}")
        lines.append(f"| {label} | {rate:.1f} | {speed['ratio_to_bare'][name]:.2f} |")
    RESULTS.write_text("\n".join(lines) + "\n")


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{platform.machine()} ({os.cpu_count()} cores, Linux {platform.release()}, load average {load:.1f} at the start)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0, help="wall-clock limit per run, seconds")
    parser.add_argument("--runs", type=int, default=60, help="executions per way in the throughput table")
    args = parser.parse_args()
    command = "python benchmarks/sandbox_attacks.py" + (f" --timeout {args.timeout:g}" if args.timeout != 2.0 else "") \
        + (f" --runs {args.runs}" if args.runs != 60 else "")
    started, host = time.perf_counter(), machine()
    limits = sandbox.SandboxLimits(timeout_s=args.timeout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        modes = ["rlimits"] + (["bwrap"] if sandbox.resolve_sandbox("auto") == "bwrap" else [])
    rows = []
    for name, build in ATTACKS:
        for mode in modes:
            row = run_attack(name, build, mode, limits)
            print(f"{name:48s} {mode:8s} contained={row['contained']} {row['status']:13s} {row['evidence']}", flush=True)
            rows.append(row)
    speed = throughput(modes, args.runs)
    print(json.dumps(speed, indent=2))
    write_results(rows, speed, limits, modes, command, host, time.perf_counter() - started)
    print(f"wrote {RESULTS} and {RESULTS.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
