"""Run untrusted Python (model-written code) in a separate, limited process and score it on hidden tests.

A test is a call and the value it should return, ``("add(2, 3)", 5)`` or
``{"call": "add(2, 3)", "expected": 5}``. Only the calls enter the sandbox: it runs the candidate code,
evaluates each call and reports ``repr`` of the result; the host parses those and compares them with
the expected values, which never leave the host. The reward is the fraction of tests passed; a test
that is not reported (timeout, crash, output cut off) fails, and ``status`` says why.

Two modes (docs/sandbox.md has the details and what each one does not stop):

* ``"bwrap"``: bubblewrap gives the run its own mount, pid, network, ipc and uts namespaces, a read-only
  view of /usr and the interpreter, a small tmpfs /tmp as the only writable place, and no network. The
  candidate runs as uid 65534 (nobody), never as the caller.
* ``"rlimits"``: when bwrap is missing, the same process tree with resource limits, a wall-clock timeout
  and a killed process group, as the calling user. It contains accidents (infinite loops, memory and
  output blow-ups) but is not a sandbox: the code can read, write and connect like the caller.

Inside either, a launcher sets the limits, forks, and runs the candidate in the child; the parent
relays the child's results to the host, tagging each record with a per-run random nonce it reads only
after the fork, so the candidate's own memory never holds it.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

SANDBOX_MODES = ("bwrap", "rlimits")
STATUSES = ("ok", "syntax_error", "crashed", "timeout", "killed", "output_limit", "sandbox_error")
UNPRIVILEGED_UID = 65534  # "nobody": owns nothing on the host, so root-only files stay closed
_DIAGNOSTIC_BYTES = 4096  # how much of stdout/stderr a result keeps for debugging


class SandboxError(RuntimeError):
    """The requested sandbox cannot run here. The message says what is missing and what to do."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one execution may use. Every limit applies to the candidate's process (and its children)."""

    timeout_s: float = 5.0
    """Wall-clock limit for the whole run, interpreter start included; the process group is then killed.
    The CPU-time limit is the same number of seconds, rounded up."""
    memory_bytes: int = 512 * 2**20
    """Address space per process (RLIMIT_AS); exceeding it raises MemoryError in the candidate."""
    max_processes: int = 16
    """Processes and threads the run may add (RLIMIT_NPROC, counted per user; root is exempt)."""
    output_bytes: int = 2**20
    """Largest file the run may write (RLIMIT_FSIZE): stdout, stderr, its report and any file it makes."""
    open_files: int = 64
    """Open file descriptors per process (RLIMIT_NOFILE)."""
    tmp_bytes: int = 64 * 2**20
    """Size of the tmpfs /tmp that is the run's working directory (bwrap mode only)."""

    def __post_init__(self):
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"SandboxLimits.timeout_s is {self.timeout_s}; use a positive number of seconds.")
        for name in ("memory_bytes", "max_processes", "output_bytes", "open_files", "tmp_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SandboxLimits.{name} is {value!r}; use a positive integer.")
        if self.open_files < 8:
            raise ValueError(f"SandboxLimits.open_files is {self.open_files}; the interpreter needs at least 8.")


@dataclass
class ExecutionResult:
    """What one execution earned and why.

    ``status`` is one of STATUSES (docs/sandbox.md says what each means). ``outputs[i]`` is the ``repr`` the run reported for test i (None when it reported nothing, or the
    call raised: then ``errors[i]`` holds the exception). ``detail`` explains a status other than "ok".
    """

    status: str
    reward: float
    passed: list[bool]
    outputs: list[str | None]
    errors: list[str | None]
    detail: str = ""
    mode: str = ""
    wall_s: float = 0.0
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- the launcher
# Runs inside the sandbox as `python -I -S -c _LAUNCHER payload_fd nonce_fd report_fd`, standard library
# only. The parent drops root, forks, reads the nonce (after the fork, so the child never has it) and
# relays the child's JSON lines to the report file as "<nonce> c <record>"; its own records (the child's
# exit status, an overflow) are "<nonce> p <record>", so the candidate cannot speak for the parent. The
# child closes the nonce and report descriptors, applies the limits, runs the candidate and writes one
# line per test to a pipe.
_LAUNCHER = r"""
import json, os, resource, select, sys

def send(fd, *record):
    data = (json.dumps(record) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]

def describe(exc):
    try:
        return (type(exc).__name__ + ": " + str(exc))[:1000]
    except BaseException:
        return type(exc).__name__

def candidate(payload, out_fd):
    for name, soft, hard in payload["rlimits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    try:
        compiled = compile(payload["code"], "<solution>", "exec")
    except (SyntaxError, ValueError) as exc:
        send(out_fd, "syntax_error", describe(exc))
        os._exit(0)
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(compiled, namespace)
    except BaseException as exc:
        send(out_fd, "load_error", describe(exc))
        os._exit(1)
    for index, call in enumerate(payload["calls"]):
        try:
            text = repr(eval(call, namespace))
        except BaseException as exc:
            send(out_fd, "error", index, describe(exc))
            continue
        send(out_fd, "value", index, text)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(0)

def relay(read_fd, pid, nonce, report, cap):
    os.set_blocking(read_fd, False)
    pending, written, status = b"", 0, None
    while True:
        ready = select.select([read_fd], [], [], 0.05)[0]
        if ready:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            lines = [nonce + " c " + line.decode("utf-8", "replace") + "\n" for line in lines]
            written += sum(len(line) for line in lines)
            if written > cap or len(pending) > cap:
                report.write(nonce + ' p ["overflow"]\n')
                break
            report.writelines(lines)
        elif status is not None:
            break  # the child is gone and something it left behind holds the pipe open
        if status is None:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
    report.flush()
    if status is None:
        status = os.waitpid(pid, 0)[1]
    return os.waitstatus_to_exitcode(status)

def not_dumpable():
    # other processes of uid 65534 (the candidate) may then neither ptrace nor read /proc/<pid>/mem here
    try:
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass

def main(payload_fd, nonce_fd, report_fd):
    with os.fdopen(payload_fd, "rb") as f:
        payload = json.loads(f.read())
    report = os.fdopen(report_fd, "w")
    if payload["drop_to"] is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(payload["drop_to"])
        os.setuid(payload["drop_to"])
    not_dumpable()
    report.write("start\n")
    report.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.close(nonce_fd)
        os.close(report_fd)
        candidate(payload, write_fd)
    os.close(write_fd)
    with os.fdopen(nonce_fd, "rb") as f:
        nonce = f.read().decode()
    code = relay(read_fd, pid, nonce, report, payload["report_bytes"])
    report.write(nonce + " p " + json.dumps(["exit", code]) + "\n")
    report.flush()
    os._exit(0)

main(*map(int, sys.argv[1:4]))
"""


# ------------------------------------------------------------------------------------------- the modes
_mode_lock = threading.Lock()
_bwrap_probe: dict[str, str | None] = {}  # interpreter -> None when bwrap works with it, else bwrap's error
_warned_rlimits = False


def _default_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def resolve_sandbox(sandbox: str = "auto", python: str | None = None) -> str:
    """The mode a run will use: "bwrap" when bubblewrap works here, else "rlimits" (with a warning).

    ``sandbox="bwrap"`` raises SandboxError when bwrap is missing or cannot start here;
    ``sandbox="rlimits"`` skips bwrap even when it is present.
    """
    global _warned_rlimits
    if sandbox not in ("auto", *SANDBOX_MODES):
        raise ValueError(f"sandbox={sandbox!r}; use 'auto', 'bwrap' or 'rlimits'.")
    if sandbox == "rlimits":
        return "rlimits"
    python = python or _default_python()
    with _mode_lock:
        if python not in _bwrap_probe:
            _bwrap_probe[python] = _probe_bwrap(python)
        problem = _bwrap_probe[python]
        if problem is None:
            return "bwrap"
        if sandbox == "bwrap":
            raise SandboxError(
                f"sandbox='bwrap' was requested but {problem} Install bubblewrap (Debian/Ubuntu: "
                "`apt-get install bubblewrap`; `make install` does it when run as root), or pass "
                "sandbox='rlimits' to accept the weaker mode."
            )
        if not _warned_rlimits:
            warnings.warn(
                f"code sandbox: {problem} Falling back to mode 'rlimits', which limits CPU, memory, "
                "processes and output but is NOT a sandbox: the code runs as this user and can read and "
                "write its files and use the network. Install bubblewrap for isolation. (Warned once.)",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned_rlimits = True
        return "rlimits"


def _probe_bwrap(python: str) -> str | None:
    """None when a trivial program runs under bwrap with this interpreter, else why not (a sentence)."""
    if shutil.which("bwrap") is None:
        return "the `bwrap` binary is not on PATH."
    result = _execute("pass", [], "bwrap", SandboxLimits(timeout_s=30.0), python)
    if result.status != "ok":
        return f"bwrap cannot run code here ({result.status}: {result.detail or result.stderr[-300:]})."
    return None


def _bwrap_arguments(python: str, limits: SandboxLimits) -> list[str]:
    if os.getuid() == 0:
        # As root, a user namespace would map the sandbox's uid back onto root, so root-owned files stay
        # readable. Instead bwrap runs privileged without one, keeps only the capabilities the launcher
        # needs to switch to uid 65534, and the launcher drops them with root before any candidate code.
        isolation = [
            "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
        ]
    else:
        isolation = ["--unshare-all", "--uid", str(UNPRIVILEGED_UID), "--gid", str(UNPRIVILEGED_UID)]
    arguments = [*isolation, "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):  # merged-/usr systems: /lib -> usr/lib
            arguments += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            arguments += ["--ro-bind", top, top]
    prefix = os.path.dirname(os.path.dirname(python))  # <prefix>/bin/python3 -> <prefix>
    if prefix != "/usr" and not prefix.startswith("/usr/"):
        # bwrap copies each parent's mode from the host: a 0700 /root would hide the interpreter from uid
        # 65534, so the parents are made traversable first (inside the sandbox only)
        parent = os.path.dirname(prefix)
        parents = []
        while parent != "/":
            parents.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(parents):
            arguments += ["--perms", "0755", "--dir", directory]
        arguments += ["--ro-bind", prefix, prefix]
    arguments += [
        "--proc", "/proc", "--dev", "/dev", "--hostname", "sandbox",
        "--size", str(limits.tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp", "--chdir", "/tmp",
    ]
    return arguments


def _tasks_of(uid: int) -> int:
    """How many processes and threads `uid` runs now: RLIMIT_NPROC counts them all, not just ours."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{name}/task"))
            except OSError:  # exited meanwhile
                continue
    return count


# --------------------------------------------------------------------------------------------- running
def _parse_tests(tests: Any, where: str) -> tuple[list[str], list[Any]]:
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{where}: the tests are a string but not JSON ({exc}); pass a list of tests.") from None
    if not isinstance(tests, (list, tuple)):
        raise ValueError(f"{where}: tests must be a list of (call, expected) pairs, got {type(tests).__name__}.")
    calls, expected = [], []
    for index, test in enumerate(tests):
        if isinstance(test, dict) and set(test) == {"call", "expected"}:
            call, value = test["call"], test["expected"]
        elif isinstance(test, (list, tuple)) and len(test) == 2:
            call, value = test
        else:
            raise ValueError(
                f"{where}, test {index}: {str(test)[:80]!r} is neither a (call, expected) pair nor a dict "
                "with exactly the keys 'call' and 'expected'; write it as e.g. ('add(2, 3)', 5)."
            )
        if not isinstance(call, str) or not call.strip():
            raise ValueError(f"{where}, test {index}: the call must be a Python expression string, got {call!r}.")
        calls.append(call)
        expected.append(value)
    return calls, expected


def run_code(
    code: str,
    tests: Sequence[Any],
    *,
    sandbox: str = "auto",
    limits: SandboxLimits | None = None,
    python: str | None = None,
) -> ExecutionResult:
    """Run `code` once in a fresh sandbox, evaluate each test's call there, and score it on the host.

    ``python`` is the interpreter to run (default: the one running this, without site-packages).

    >>> run_code("def add(a, b):\\n    return a + b", [("add(2, 3)", 5), ("add(1, 1)", 3)]).reward
    0.5
    """
    if not isinstance(code, str):
        raise TypeError(f"run_code: code must be a string of Python source, got {type(code).__name__}.")
    calls, expected = _parse_tests(tests, "run_code")
    python = python or _default_python()
    mode = resolve_sandbox(sandbox, python)
    return _score(_execute(code, calls, mode, limits or SandboxLimits(), python), expected)


def run_batch(
    codes: Sequence[str],
    tests: Sequence[Sequence[Any]],
    *,
    sandbox: str = "auto",
    limits: SandboxLimits | None = None,
    workers: int | None = None,
    python: str | None = None,
) -> list[ExecutionResult]:
    """`run_code` for many programs at once, ``workers`` sandboxes in parallel; results in input order.

    ``tests[i]`` are the tests of ``codes[i]``. ``workers`` defaults to the number of CPUs.
    """
    if len(codes) != len(tests):
        raise ValueError(f"run_batch got {len(codes)} programs but {len(tests)} test lists; pass one per program.")
    parsed = [_parse_tests(item, f"run_batch item {i}") for i, item in enumerate(tests)]
    for i, code in enumerate(codes):
        if not isinstance(code, str):
            raise TypeError(f"run_batch item {i}: code must be a string, got {type(code).__name__}.")
    python = python or _default_python()
    mode = resolve_sandbox(sandbox, python)
    limits = limits or SandboxLimits()

    def one(i: int) -> ExecutionResult:
        calls, expected = parsed[i]
        return _score(_execute(codes[i], calls, mode, limits, python), expected)

    if not codes:
        return []
    with ThreadPoolExecutor(max_workers=min(len(codes), workers or os.cpu_count() or 1)) as pool:
        return list(pool.map(one, range(len(codes))))


def _execute(code: str, calls: list[str], mode: str, limits: SandboxLimits, python: str) -> ExecutionResult:
    """Run the launcher once and read back what it reported; scoring happens in `_score`."""
    started = time.perf_counter()
    nonce = secrets.token_hex(16)
    as_root_in_bwrap = mode == "bwrap" and os.getuid() == 0
    sandbox_uid = UNPRIVILEGED_UID if as_root_in_bwrap else os.getuid()
    cpu_s = math.ceil(limits.timeout_s)
    nproc = _tasks_of(sandbox_uid) + limits.max_processes
    payload = {
        "code": code,
        "calls": calls,
        "drop_to": UNPRIVILEGED_UID if as_root_in_bwrap else None,
        "report_bytes": limits.output_bytes,
        "rlimits": [
            ("RLIMIT_CPU", cpu_s, cpu_s + 1),
            ("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),
            ("RLIMIT_NPROC", nproc, nproc),
            ("RLIMIT_FSIZE", limits.output_bytes, limits.output_bytes),
            ("RLIMIT_NOFILE", limits.open_files, limits.open_files),
            ("RLIMIT_CORE", 0, 0),
        ],
    }
    with tempfile.TemporaryDirectory(prefix="rewardlab-code-", ignore_cleanup_errors=True) as host_dir:
        workdir = os.path.join(host_dir, "work")  # the cwd in rlimits mode; bwrap gives a tmpfs instead
        os.mkdir(workdir)
        paths = {name: os.path.join(host_dir, name) for name in ("payload", "nonce", "report", "stdout", "stderr")}
        with open(paths["payload"], "w") as f:
            json.dump(payload, f)
        with open(paths["nonce"], "w") as f:
            f.write(nonce)
        with (
            open(paths["payload"], "rb") as payload_file,
            open(paths["nonce"], "rb") as nonce_file,
            open(paths["report"], "ab") as report_file,
            open(paths["stdout"], "wb") as stdout_file,
            open(paths["stderr"], "wb") as stderr_file,
        ):
            fds = [payload_file.fileno(), nonce_file.fileno(), report_file.fileno()]
            command = [python, "-I", "-S", "-c", _LAUNCHER, *map(str, fds)]
            if mode == "bwrap":
                command = [shutil.which("bwrap") or "bwrap", *_bwrap_arguments(python, limits), *command]
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp" if mode == "bwrap" else workdir}
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=stdout_file, stderr=stderr_file,
                    pass_fds=fds, cwd=workdir, env=env, start_new_session=True,
                )
            except OSError as exc:
                return ExecutionResult(
                    "sandbox_error", 0.0, [], [], [], detail=f"could not start {command[0]}: {exc}", mode=mode
                )
            try:
                timed_out = not _exits_within(process, limits.timeout_s)
            finally:
                _stop(process)
        wall_s = time.perf_counter() - started
        report = _read_head(paths["report"], limits.output_bytes + 4096)
        stdout, stdout_size = _read_head(paths["stdout"], _DIAGNOSTIC_BYTES), os.path.getsize(paths["stdout"])
        stderr, stderr_size = _read_head(paths["stderr"], _DIAGNOSTIC_BYTES), os.path.getsize(paths["stderr"])
    result = _interpret(report, nonce, len(calls), timed_out, process.returncode, limits)
    if result.status in ("ok", "crashed") and max(stdout_size, stderr_size) >= limits.output_bytes:
        result.status, result.detail = "output_limit", f"stdout/stderr reached {limits.output_bytes} bytes"
    result.mode, result.wall_s = mode, wall_s
    result.stdout, result.stderr = stdout, stderr
    if result.status == "sandbox_error" and not result.detail:
        result.detail = stderr.strip()[-500:] or f"the launcher exited with {process.returncode}"
    return result


def _exits_within(process: subprocess.Popen, seconds: float) -> bool:
    """Wait for the process to exit, at most `seconds`. A pidfd wakes us the moment it exits; Popen.wait
    with a timeout polls with sleeps of up to 50 ms, which would dominate a 40 ms run."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # Linux < 5.3, or not Linux
        try:
            process.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([pidfd], [], [], seconds)[0])
    finally:
        os.close(pidfd)


def _stop(process: subprocess.Popen) -> None:
    """Kill whatever is left of a run and wait until it is gone.

    Under bwrap the direct child is the pid namespace's init: killing it first makes the kernel kill
    every process in the namespace before bwrap itself exits, so nothing outlives the call. Then the
    whole process group goes, which in rlimits mode is everything that did not call setsid().
    """
    if process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/task/{process.pid}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            children = []
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if children:
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _read_head(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", "replace")


# Which side may send which event: the candidate says whether its code compiled and loaded; only the
# launcher's parent says how the candidate ended or that it reported too much.
_EVENTS = {("c", "syntax_error"), ("c", "load_error"), ("p", "exit"), ("p", "overflow")}


def _interpret(
    report: str, nonce: str, n_tests: int, timed_out: bool, returncode: int | None, limits: SandboxLimits
) -> ExecutionResult:
    """Turn the launcher's report into outputs and a status. Scoring is left to `_score`."""
    lines = report.splitlines()
    outputs: list[str | None] = [None] * n_tests
    errors: list[str | None] = [None] * n_tests
    times_reported = [0] * n_tests
    notes: list[str] = []
    events: dict[str, Any] = {}
    malformed = 0
    for line in lines[1:]:
        source, record = None, None
        if line.startswith(nonce + " ") and line[len(nonce) + 1: len(nonce) + 3] in ("c ", "p "):
            source = line[len(nonce) + 1]
            try:
                record = json.loads(line[len(nonce) + 3:])
            except (ValueError, RecursionError):  # not JSON, a number too long, or nested past the parser's stack
                pass
        if not isinstance(record, list) or not record or not isinstance(record[0], str):
            malformed += 1
            continue
        kind = record[0]
        if source == "c" and kind in ("value", "error") and len(record) == 3 and type(record[1]) is int \
                and 0 <= record[1] < n_tests and isinstance(record[2], str):
            times_reported[record[1]] += 1
            (outputs if kind == "value" else errors)[record[1]] = record[2]
        elif (source, kind) in _EVENTS and kind not in events:
            events[kind] = record[1] if len(record) > 1 else True
        else:
            malformed += 1
    for index, times in enumerate(times_reported):
        if times > 1:  # a forged record beside the real one: the test cannot be trusted, so it fails
            outputs[index], errors[index] = None, f"reported {times} times"
    if malformed:
        notes.append(f"{malformed} malformed report line(s) ignored")

    status, detail = "ok", ""
    exit_code = events.get("exit")
    if not lines or lines[0] != "start":
        status = "timeout" if timed_out else "sandbox_error"
        detail = f"timed out after {limits.timeout_s:g} s before the launcher started" if timed_out else ""
    elif timed_out:
        status, detail = "timeout", f"timed out after {limits.timeout_s:g} s (wall clock)"
    elif "overflow" in events:
        status, detail = "output_limit", f"reported more than {limits.output_bytes} bytes of results"
    elif "syntax_error" in events:
        status, detail = "syntax_error", str(events["syntax_error"])
    elif type(exit_code) is not int:
        status, detail = "killed", f"the launcher ended by {_exit_name(returncode)} before reporting"
    elif exit_code == -signal.SIGXCPU:
        status, detail = "timeout", f"CPU time limit of {math.ceil(limits.timeout_s)} s (SIGXCPU)"
    elif exit_code in (-signal.SIGKILL, -signal.SIGTERM):
        status, detail = "killed", f"the candidate was killed by {_exit_name(exit_code)}"
    elif exit_code < 0:
        status, detail = "crashed", f"the candidate died of {_exit_name(exit_code)}"
    elif "load_error" in events:
        status, detail = "crashed", f"the code raised while loading: {events['load_error']}"
    elif exit_code != 0:
        status, detail = "crashed", f"the candidate exited with code {exit_code} before reporting every test"
    elif sum(times_reported) < n_tests:
        status, detail = "crashed", f"reported {sum(times_reported)} of {n_tests} tests"
    result = ExecutionResult(status, 0.0, [False] * n_tests, outputs, errors, detail=detail, notes=notes)
    result.returncode = exit_code if type(exit_code) is int else returncode
    return result


def _exit_name(code: int | None) -> str:
    if code is None:
        return "an unknown cause"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    if code > 128:  # bwrap passes on a child's death by signal N as exit code 128 + N
        try:
            return f"exit code {code} (128 + {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exit code {code}"


def _score(result: ExecutionResult, expected: list[Any]) -> ExecutionResult:
    """Compare each reported output with its expected value, here on the host; reward = fraction passed."""
    result.passed = [
        output is not None and _same(_literal(output), want) for output, want in zip(result.outputs, expected)
    ]
    result.reward = sum(result.passed) / len(expected) if expected else 0.0
    return result


_UNPARSABLE = object()


class _FloatNames(ast.NodeTransformer):
    """repr() writes infinities and NaN as the names inf and nan, which literal_eval alone refuses."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Constant(float(node.id)), node) if node.id in ("inf", "nan") else node


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(_FloatNames().visit(ast.parse(text.strip(), mode="eval")))
    except Exception:  # not a literal (an object's default repr), or nested too deep to parse
        return _UNPARSABLE


def _same(got: Any, want: Any) -> bool:
    """Equality that forgives tuple-vs-list (JSON has no tuples) and float rounding, but not bool-vs-int."""
    if got is _UNPARSABLE:
        return False
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, int) and isinstance(want, int):
        return got == want  # exact: 10**17 + 1 is not 10**17
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        if isinstance(got, float) and isinstance(want, float) and math.isnan(got) and math.isnan(want):
            return True
        try:
            return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
        except OverflowError:  # an integer beyond any float, against a float
            return False
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in got)
    return type(got) is type(want) and got == want


# ---------------------------------------------------------------------------------------- the reward fn
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.S)


def processes_with(marker: str) -> list[int]:
    """Pids of the processes (other than this one) whose command line holds `marker`: what a run left behind,
    when its code puts a unique marker in the argv of what it starts."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def extract_code(text: str) -> str:
    """The program in a completion: the last ```python (or unlabelled) fenced block, else the whole text.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    >>> extract_code("def g(): return 2")
    'def g(): return 2'
    """
    blocks = [body for language, body in _FENCE.findall(text) if language.lower() in ("", "python", "py", "python3")]
    return blocks[-1] if blocks else text


def _no_tests(row: Any) -> bool:
    """Whether a row's tests cell holds no tests: None, empty, or a JSON string of null or []."""
    if isinstance(row, str):
        try:
            row = json.loads(row) if row.strip() else None
        except (ValueError, RecursionError):
            return False  # not JSON: _parse_tests says so, naming the row
    return row is None or (hasattr(row, "__len__") and len(row) == 0)


def make_code_reward(
    sandbox: str = "auto",
    limits: SandboxLimits | None = None,
    workers: int | None = None,
    name: str = "code",
) -> Callable[..., list[float | None]]:
    """A reward function (TRL's convention) that runs each completion's code against its row's tests.

    The dataset needs a ``tests`` column: per row a list of (call, expected) pairs, or that list as a
    JSON string (handy when expected values have mixed types). The reward is the fraction of tests
    passed; rows whose ``tests`` is None or empty (also as JSON: "null", "[]") get None ("does not apply").
    A row whose tests cannot be read raises ValueError naming the row, before any code runs.
    """

    def reward(completions: list, tests: list, **kwargs: Any) -> list[float | None]:
        # imported here so that this module needs only the standard library (a host can load it alone)
        from rewardlab.rewards.math import completion_text

        if len(tests) != len(completions):
            raise ValueError(
                f"{name} got {len(completions)} completions but {len(tests)} rows of tests; the 'tests' "
                "column needs one value per completion."
            )
        rows = [i for i, row in enumerate(tests) if not _no_tests(row)]
        for i in rows:  # unusable tests are refused, naming their row, before anything runs
            _parse_tests(tests[i], f"{name}: row {i}")
        codes = [extract_code(completion_text(completions[i])) for i in rows]
        results = run_batch(codes, [tests[i] for i in rows], sandbox=sandbox, limits=limits, workers=workers)
        rewards: list[float | None] = [None] * len(completions)
        for i, result in zip(rows, results):
            rewards[i] = result.reward
        return rewards

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = f"Fraction of the row's `tests` each completion's code passes (sandbox={sandbox!r})."
    return reward


code_reward = make_code_reward()
code_reward.__doc__ = """Fraction of the row's hidden tests the completion's code passes, run in the sandbox.

    >>> code_reward(["```python\\ndef sq(x):\\n    return x * x\\n```"], tests=[[("sq(3)", 9), ("sq(-2)", 4)]])
    [1.0]
    """
