"""The worked examples of docs/architecture.md#adding-to-the-loop run as written: each python block is
executed, and the loop trains two steps with what it registers, without any change to the driver."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import rewardlab
from rewardlab.algos import ADVANTAGES
from rewardlab.rollout import ENGINES
from rewardlab.trainers.objectives import OBJECTIVES

from .test_learning_online import TINY

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
BASE = {"model_config": TINY, "max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 4,
        "eval_n": 4, "learning_rate": 0.01, "tensorboard": False, "torch_threads": 1, "logging_steps": 0,
        "reward_funcs": ["tests.reward_fixtures:digit_share"]}


@pytest.fixture
def examples(tmp_path, monkeypatch):
    """The doc's python blocks as one importable module; the registries are restored afterwards."""
    section = DOC.read_text().split("## Adding to the loop", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 4, "one block each: estimator, objective, environment, engine"
    (tmp_path / "arch_examples.py").write_text("\n\n".join(blocks))
    monkeypatch.syspath_prepend(str(tmp_path))
    for registry in (ADVANTAGES, OBJECTIVES, ENGINES):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    sys.modules.pop("arch_examples", None)
    import arch_examples

    yield arch_examples
    sys.modules.pop("arch_examples", None)


def test_the_documented_estimator_objective_environment_and_engine_train(examples, tmp_path):
    rows = {}
    for name, overrides in {"estimator": {"advantage": "sign"}, "objective": {"objective": "entropy_bonus"},
                            "engine": {"engine": "counting"},
                            "environment": {"env": "arch_examples:PickSeven", "reward_funcs": [], "eval_n": 2}}.items():
        rewardlab.train("grpo", {**BASE, **overrides, "output_dir": str(tmp_path), "run_name": name})
        rows[name] = [__import__("json").loads(line) for line in open(tmp_path / name / "metrics.jsonl")]
    assert all(r["entropy_bonus"] == 0.01 for r in rows["objective"] if "loss" in r)
    assert any(r.get("grad_norm", 0) > 0 for r in rows["estimator"])
    assert len([r for r in rows["environment"] if "reward" in r]) == 2
