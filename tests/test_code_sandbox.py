"""The code sandbox: scoring, the protocol the candidate cannot forge, and the attacks it must contain.

Each attack test is written so that it fails when the protection it checks is taken away (named in
its docstring). Checks that only bwrap promises are skipped, with the reason, where bwrap is missing.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from rewardlab.rewards import REWARDS, RewardFunctions
from rewardlab.rewards import code as sandbox
from rewardlab.rewards.code import (
    SandboxError,
    SandboxLimits,
    code_reward,
    extract_code,
    run_batch,
    run_code,
)

CODE_PY = Path(sandbox.__file__)
QUICK = SandboxLimits(timeout_s=1.5)


def _available_modes() -> list:
    modes = [pytest.param("rlimits", id="rlimits")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bwrap_works = sandbox.resolve_sandbox("auto") == "bwrap"
    reason = "bwrap is missing or cannot start here (Debian: apt-get install bubblewrap)"
    modes.append(pytest.param("bwrap", id="bwrap", marks=pytest.mark.skipif(not bwrap_works, reason=reason)))
    return modes


MODES = _available_modes()
BWRAP = [m for m in MODES if m.values[0] == "bwrap"]
AS_ROOT = os.getuid() == 0

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = [("add(2, 3)", 5), ("add(-1, 1)", 0), ("add('a', 'b')", "ab")]


# ------------------------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("mode", MODES)
def test_correct_code_scores_one(mode):
    result = run_code(ADD, ADD_TESTS, sandbox=mode)
    assert (result.status, result.reward, result.mode) == ("ok", 1.0, mode)
    assert result.outputs == ["5", "0", "'ab'"]


@pytest.mark.parametrize("mode", MODES)
def test_wrong_code_scores_the_fraction_it_passes(mode):
    code = "def add(a, b):\n    return a * b if b == 1 else a + b\n"
    result = run_code(code, ADD_TESTS + [("add(5, 1)", 6)], sandbox=mode)
    # 2+3 = 5 ok; -1*1 = -1 != 0; 'a'+'b' ok; 5*1 = 5 != 6: 2 of 4
    assert result.status == "ok" and result.reward == 0.5 and result.passed == [True, False, True, False]


def test_a_raising_call_fails_only_its_test():
    result = run_code(ADD, [("add(1, 2)", 3), ("add(1, None)", 1)], sandbox="rlimits")
    assert result.passed == [True, False] and result.errors[1].startswith("TypeError")
    assert result.status == "ok"


def test_syntax_error_is_reported_as_such():
    result = run_code("def add(a, b)\n    return a + b", ADD_TESTS, sandbox="rlimits")
    assert result.status == "syntax_error" and result.reward == 0.0 and "SyntaxError" in result.detail


def test_a_crash_midway_keeps_the_tests_already_reported():
    code = "import os\ndef f(x):\n    if x == 2:\n        os._exit(3)\n    return x\n"
    result = run_code(code, [("f(1)", 1), ("f(2)", 2), ("f(3)", 3)], sandbox="rlimits")
    assert result.status == "crashed" and "code 3" in result.detail
    assert result.passed == [True, False, False] and result.reward == pytest.approx(1 / 3, abs=1e-12)


def test_comparison_forgives_tuples_and_rounding_but_not_bool_for_int():
    same = sandbox._same
    assert same((1, [2, 3]), [1, [2, 3]]) and same(0.1 + 0.2, 0.3) and same(3, 3.0)
    assert not same(True, 1) and not same(1, True) and not same("1", 1) and not same([1, 2], [1, 2, 3])
    assert not same(sandbox._literal("<object at 0x7f>"), "<object at 0x7f>")


def test_malformed_tests_name_the_row_and_test():
    with pytest.raises(ValueError, match=r"run_batch item 1, test 0: .*\('add\(2, 3\)', 5\)"):
        run_batch([ADD, ADD], [ADD_TESTS, [{"call": "add(1, 2)"}]], sandbox="rlimits")
    with pytest.raises(ValueError, match="one per program"):
        run_batch([ADD], [ADD_TESTS, ADD_TESTS], sandbox="rlimits")


def test_run_batch_keeps_input_order():
    codes = [f"def f():\n    return {i}\n" for i in range(6)]
    results = run_batch(codes, [[("f()", 3)]] * 6, sandbox="rlimits", workers=3)
    assert [r.outputs[0] for r in results] == [str(i) for i in range(6)]
    assert [r.reward for r in results] == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------------ protocol
def _search_everything_for(prefix: str) -> str:
    """Candidate code that looks for a string starting with `prefix` wherever it could find one."""
    return f"""
import gc, os, re, sys
PREFIX = {prefix!r}

SEEN = set()
PATTERN = re.compile(PREFIX + '[0-9a-f]{{16}}')

def look(obj, depth=0):
    if id(obj) in SEEN or depth > 6 or obj is SEEN:
        return None
    SEEN.add(id(obj))
    if isinstance(obj, (str, bytes)):
        text = obj.decode('latin-1') if isinstance(obj, bytes) else obj
        match = PATTERN.search(text) if PREFIX in text else None
        return match.group(0) if match else None
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple, set)) else ()
    for item in items:
        found = look(item, depth + 1)
        if found:
            return found
    return None

def leak():
    frame = sys._getframe()
    while frame is not None:
        for space in (frame.f_locals, frame.f_globals):
            found = look(space)
            if found:
                return found
        frame = frame.f_back
    for obj in gc.get_objects():
        found = look(obj)
        if found:
            return found
    places = ["/proc/self/cmdline", "/proc/self/environ", "/proc/%d/cmdline" % os.getppid()]
    places += ["/proc/self/fd/" + fd for fd in os.listdir("/proc/self/fd")]
    for place in filter(os.path.isfile, places):  # a pipe would block the read
        try:
            with open(place, "rb") as f:
                found = look(f.read(1 << 20))
        except OSError:
            continue
        if found:
            return found
    return "not found"
"""


@pytest.mark.parametrize("mode", MODES)
def test_expected_values_never_enter_the_sandbox(mode):
    """Fails if the expected values travel in the payload: the launcher's frames would then hold them."""
    secret = "SECRET-" + secrets.token_hex(8)
    result = run_code(_search_everything_for("SECRET-"), [("leak()", secret)], sandbox=mode)
    assert result.status == "ok" and result.outputs == ["'not found'"] and result.reward == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_fake_result_lines_on_stdout_do_not_count(mode):
    """Fails if results were read from the candidate's stdout."""
    code = (
        "import json\n"
        "for i in range(3):\n"
        "    print(json.dumps(['value', i, '5']))\n"
        "    print('0' * 32 + ' ' + json.dumps(['value', i, '5']))\n"
        "def add(a, b):\n    return None\n"
    )
    result = run_code(code, [("add(2, 3)", 5)] * 3, sandbox=mode)
    assert result.status == "ok" and result.reward == 0.0 and "value" in result.stdout


@pytest.mark.parametrize("mode", MODES)
def test_a_test_reported_twice_fails(mode):
    """Fails if the host accepted any of several records for one test (spraying guesses would win)."""
    code = (
        "import json, os, stat\n"
        "for fd in map(int, os.listdir('/proc/self/fd')):\n"
        "    try:\n"
        "        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
        "            for guess in range(10):\n"
        "                os.write(fd, (json.dumps(['value', 0, repr(guess)]) + '\\n').encode())\n"
        "    except OSError:\n"
        "        pass\n"
        "def f():\n    return -1\n"
    )
    result = run_code(code, [("f()", 7)], sandbox=mode)
    assert result.reward == 0.0 and result.errors == ["reported 11 times"]


@pytest.mark.parametrize("mode", MODES)
def test_records_without_the_nonce_are_ignored(mode):
    """Fails if the host accepted report lines without this run's nonce. In rlimits mode (as root) the
    candidate can append to the report through /proc/<parent>/fd; under bwrap the parent is not
    dumpable, so that open fails too."""
    code = (
        "import json, os\n"
        "parent = os.getppid()\n"
        "for fd in os.listdir('/proc/%d/fd' % parent) if os.access('/proc/%d/fd' % parent, os.R_OK) else []:\n"
        "    path = '/proc/%d/fd/%s' % (parent, fd)\n"
        "    if not os.path.isfile(path):\n"
        "        continue  # the pipe from the child is the candidate's own channel, not a forgery\n"
        "    try:\n"
        "        with open(path, 'a') as f:\n"
        "            for nonce in ('', '0' * 32 + ' ', 'start '):\n"
        "                f.write(nonce + 'c ' + json.dumps(['value', 0, '5']) + '\\n')\n"
        "                f.write(nonce + 'p ' + json.dumps(['exit', 0]) + '\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    )
    result = run_code(code, [("add(2, 3)", 5)], sandbox=mode)
    assert result.reward == 0.0 and result.outputs == [None]


@pytest.mark.parametrize("mode", MODES)
def test_the_candidate_cannot_report_how_it_ended(mode):
    """Fails if the host took an exit record the candidate wrote into its pipe: it would read "ok"."""
    code = (
        "import json, os, signal, stat\n"
        "for fd in map(int, os.listdir('/proc/self/fd')):\n"
        "    try:\n"
        "        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
        "            os.write(fd, b'[\"value\", 0, \"1\"]\\n[\"exit\", 0]\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    result = run_code(code, [("f()", 1)], sandbox=mode)
    assert result.status == "crashed" and "SIGSEGV" in result.detail and result.reward == 1.0


@pytest.mark.parametrize("mode", BWRAP)
def test_the_reporting_parent_is_out_of_the_candidates_reach(mode):
    """Fails if the launcher's parent were dumpable: the candidate could then open its descriptors and
    read its memory (the nonce). As root the switch to uid 65534 already clears the flag, so there this
    checks the switch; as an ordinary user it checks the launcher's prctl(PR_SET_DUMPABLE, 0)."""
    code = "import os\ndef f():\n    return os.access('/proc/%d/fd' % os.getppid(), os.R_OK)\n"
    assert run_code(code, [("f()", False)], sandbox=mode).reward == 1.0


# ------------------------------------------------------------------------------------------- attacks
@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_times_out(mode):
    """Fails without the wall-clock timeout (and the CPU limit): the call would never return."""
    start = time.perf_counter()
    result = run_code("def f():\n    while True:\n        pass\n", [("f()", 1)], sandbox=mode, limits=QUICK)
    assert result.status == "timeout" and result.reward == 0.0 and time.perf_counter() - start < 4.0


@pytest.mark.parametrize("mode", MODES)
def test_sleeping_past_the_timeout_is_cut_off(mode):
    """Fails without the wall-clock timeout: sleeping uses no CPU, so RLIMIT_CPU never fires."""
    start = time.perf_counter()
    result = run_code("import time\ndef f():\n    time.sleep(30)\n", [("f()", None)], sandbox=mode, limits=QUICK)
    assert result.status == "timeout" and time.perf_counter() - start < 4.0


@pytest.mark.parametrize("mode", MODES)
def test_memory_bomb_hits_the_address_space_limit(mode):
    """Fails without RLIMIT_AS: the 1 GiB string would be allocated."""
    limits = SandboxLimits(memory_bytes=256 * 2**20)
    result = run_code("def f():\n    return len('x' * 2**30)\n", [("f()", 2**30)], sandbox=mode, limits=limits)
    assert result.reward == 0.0 and result.errors[0].startswith("MemoryError")


@pytest.mark.parametrize("mode", MODES)
def test_output_flood_is_cut_at_the_limit(mode):
    """Fails without RLIMIT_FSIZE: all 64 MiB would reach the host's disk."""
    limits = SandboxLimits(output_bytes=256 * 1024)
    code = (
        "import os\n"
        "def flood():\n"
        "    written = 0\n"
        "    for _ in range(1024):\n"
        "        try:\n"
        "            written += os.write(1, b'x' * 65536)\n"
        "        except OSError:\n"
        "            break\n"
        "    return written\n"
    )
    result = run_code(code, [("flood()", 0)], sandbox=mode, limits=limits)
    assert result.status == "output_limit" and int(result.outputs[0]) == 256 * 1024
    assert len(result.stdout) <= sandbox._DIAGNOSTIC_BYTES


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_capped(mode):
    """Fails without RLIMIT_NPROC: the loop would start processes until the timeout."""
    if mode == "rlimits" and AS_ROOT:
        pytest.skip("root is exempt from RLIMIT_NPROC, so rlimits mode cannot cap forks as root")
    code = (
        "import os, time\n"
        "def f():\n"
        "    started = 0\n"
        "    while started < 500:\n"
        "        try:\n"
        "            pid = os.fork()\n"
        "        except OSError:\n"
        "            return started\n"
        "        if pid == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        started += 1\n"
        "    return started\n"
    )
    result = run_code(code, [("f()", 0)], sandbox=mode, limits=SandboxLimits(timeout_s=3, max_processes=8))
    assert result.outputs[0] is not None and int(result.outputs[0]) <= 8


def _run_in_a_sacrificial_process(mode: str, code: str, scratch: Path) -> subprocess.CompletedProcess:
    """run_code in a separate host process (code.py loaded by path), so an escape kills it, not pytest."""
    host = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('sandbox_under_test', {str(CODE_PY)!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        f"result = module.run_code({code!r}, [('f()', 1)], sandbox={mode!r})\n"
        "print(result.status, result.detail)\n"
    )
    env = {**os.environ, "TMPDIR": str(scratch)}  # a killed host leaves its run's folder there, not in /tmp
    return subprocess.run([sys.executable, "-c", host], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("mode", MODES)
def test_killing_its_parent_does_not_reach_the_host(mode, tmp_path):
    """Fails if the candidate ran as the host's direct child: the host process would be killed."""
    code = "import os\nos.kill(os.getppid(), 9)\ndef f():\n    return 1\n"
    done = _run_in_a_sacrificial_process(mode, code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("killed")


@pytest.mark.parametrize("mode", MODES)
def test_a_segfault_is_a_crash_of_the_candidate_only(mode):
    """Fails if the candidate's death were not told apart from the launcher's (no fork, no exit record)."""
    result = run_code("import ctypes\nctypes.string_at(0)\n", [("f()", 1)], sandbox=mode)
    assert result.status == "crashed" and "SIGSEGV" in result.detail


def _background_sleeper(marker: str, setsid: bool) -> str:
    detach = "    os.setsid()\n" if setsid else ""
    return (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        f"{detach}"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(30)', {marker!r}])\n"
        "    os._exit(0)\n"
        "def f():\n    return 1\n"
    )


def _gone_within(marker: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while sandbox.processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = sandbox.processes_with(marker)
    for pid in leftovers:  # do not leave the sleeper behind if the test fails
        os.kill(pid, 9)
    return not leftovers


@pytest.mark.parametrize("mode", MODES)
def test_a_background_child_is_killed_with_the_run(mode):
    """Fails without the final kill of the process group (rlimits) or of the pid namespace (bwrap)."""
    marker = "rewardlab-sleeper-" + secrets.token_hex(6)
    code = "import time\n" + _background_sleeper(marker, setsid=False) + "time.sleep(0.3)\n"
    assert run_code(code, [("f()", 1)], sandbox=mode).reward == 1.0
    assert _gone_within(marker, 1.0)


@pytest.mark.parametrize("mode", BWRAP)
def test_a_double_forked_daemon_does_not_outlive_the_call(mode):
    """Fails without the pid namespace: setsid() leaves the process group, so only the namespace's end
    takes the daemon with it. (rlimits mode does not contain this; docs/sandbox.md says so.)"""
    marker = "rewardlab-daemon-" + secrets.token_hex(6)
    code = "import time\n" + _background_sleeper(marker, setsid=True) + "time.sleep(0.3)\n"
    assert run_code(code, [("f()", 1)], sandbox=mode).reward == 1.0
    assert _gone_within(marker, 1.0)


@pytest.mark.parametrize("mode", BWRAP)
def test_files_outside_the_sandbox_cannot_be_written(mode, tmp_path):
    """Fails if the host filesystem were mounted writable (or at all) inside the sandbox."""
    targets = [tmp_path / "escaped", Path("/work/escaped-" + secrets.token_hex(4)), Path("/usr/escaped")]
    calls = [(f"write({str(t)!r})", "wrote") for t in targets] + [("write('/tmp/inside')", "wrote")]
    code = "def write(path):\n    with open(path, 'w') as f:\n        f.write('x')\n    return 'wrote'\n"
    result = run_code(code, calls, sandbox=mode)
    escaped = [t for t in targets if t.exists()]
    for target in escaped:
        target.unlink()
    assert result.passed == [False, False, False, True] and not escaped


@pytest.mark.parametrize("mode", BWRAP)
def test_root_only_files_stay_closed(mode):
    """Fails if the candidate kept root's uid (directly, or mapped back to root by a user namespace)."""
    if not AS_ROOT:
        pytest.skip("the uid switch to 65534 happens when the host runs as root; it does not here")
    code = "import os\ndef ids():\n    return (os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n"
    code += "def read(path):\n    return os.listdir(path) if os.path.isdir(path) else open(path).read()\n"
    root_only = "/usr/share/polkit-1/rules.d"  # visible in the sandbox, mode 0700 on Debian
    tests = [("ids()", [65534, 65534, 65534, []]), ("read('/etc/shadow')", None)]
    result = run_code(code, tests + [(f"read({root_only!r})", None)], sandbox=mode)
    assert result.passed[0] and result.outputs[1:] == [None, None]
    if os.path.isdir(root_only) and not os.stat(root_only).st_mode & 0o005:
        assert result.errors[2].startswith("PermissionError")


@pytest.mark.parametrize("mode", BWRAP)
def test_no_network_even_to_localhost(mode):
    """Fails without the network namespace: the host listener below would accept the connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    return 1\n"
        result = run_code(code, [("f()", 1)], sandbox=mode)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.reward == 0.0 and result.errors[0] is not None


# --------------------------------------------------------------------------------------- modes, API
def test_rlimits_fallback_warns_once_and_forced_bwrap_explains(monkeypatch):
    monkeypatch.setattr(sandbox, "_bwrap_probe", {sandbox._default_python(): "the `bwrap` binary is not on PATH."})
    monkeypatch.setattr(sandbox, "_warned_rlimits", False)
    with pytest.warns(RuntimeWarning, match="NOT a sandbox"):
        assert sandbox.resolve_sandbox("auto") == "rlimits"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sandbox.resolve_sandbox("auto") == "rlimits"  # warned once only
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        sandbox.resolve_sandbox("bwrap")
    with pytest.raises(ValueError, match="'auto', 'bwrap' or 'rlimits'"):
        sandbox.resolve_sandbox("docker")


def test_extract_code_takes_the_last_python_block():
    text = "```python\nx = 1\n```\nthen\n```bash\nls\n```\n```py\ndef f():\n    return 2\n```"
    assert extract_code(text) == "def f():\n    return 2\n"


def test_code_reward_follows_trls_convention_and_registry():
    completions = [
        "```python\ndef sq(x):\n    return x * x\n```",
        [{"role": "assistant", "content": "def sq(x):\n    return x + x"}],
        "The answer is 4.",
    ]
    tests = [[("sq(3)", 9), ("sq(2)", 4)], '[["sq(3)", 9], ["sq(2)", 4]]', None]
    assert code_reward(completions, tests=tests, prompts=["p"] * 3) == [1.0, 0.5, None]
    assert REWARDS["code"] is code_reward
    total, per_function = RewardFunctions("code")(["p"] * 3, completions, [[1]] * 3, {"tests": tests})
    assert total.tolist() == [1.0, 0.5, 0.0] and per_function["code"][2].isnan()
