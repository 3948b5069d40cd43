"""The seams the loop leaves for what comes next: the generation engine behind a protocol (ENGINES), and every
number a multi-process run must gather in one module (trainers/gather.py). Each is used by the driver."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

import rewardlab
from rewardlab.rollout import ENGINES, HFEngine
from rewardlab.trainers import gather

from .test_learning_online import TINY

BASE = {"model_config": TINY, "max_steps": 3, "batch_size": 8, "num_generations": 4, "max_completion_length": 4,
        "eval_n": 4, "learning_rate": 0.01, "tensorboard": False, "torch_threads": 1, "logging_steps": 0,
        "reward_funcs": ["tests.reward_fixtures:digit_share"]}


class RecordingEngine:
    """A new engine: delegates to HFEngine and records what the loop asks of it."""

    def __init__(self, model, tokenizer, cfg):
        self.inner, self.model, self.calls = HFEngine(model, tokenizer), model, []
        RecordingEngine.last = self

    def generate(self, prompts, n, params):
        self.calls.append(("generate", len(prompts), n, params.max_new_tokens))
        return self.inner.generate(prompts, n, params)

    def sync(self, model):
        self.calls.append(("sync", model is self.model))


def test_a_new_engine_is_one_registry_entry_and_is_synced_after_every_step(tmp_path, monkeypatch):
    monkeypatch.setitem(ENGINES._items, "recording", RecordingEngine)
    rewardlab.train("grpo", {**BASE, "engine": "recording", "output_dir": str(tmp_path), "run_name": "rec"})
    calls = RecordingEngine.last.calls
    assert [c for c in calls if c[0] == "generate"] == [("generate", 2, 4, 4)] * 3  # 8 rows = 2 prompts x 4, 3 steps
    assert calls[1::2] == [("sync", True)] * 3  # generate, then sync after the step's update, every step
    rewardlab.train("grpo", {**BASE, "output_dir": str(tmp_path), "run_name": "hf"})
    ours, hf = (load_file(tmp_path / name / "final" / "model.safetensors") for name in ("rec", "hf"))
    assert all(torch.equal(ours[k], hf[k]) for k in hf)  # the same samples, so the same weights


class CountingGather(gather.SingleProcess):
    def __init__(self):
        self.counts = {"rows": 0, "local": 0, "token_count": 0, "mean": 0}

    def rows(self, *tensors):
        self.counts["rows"] += 1
        return super().rows(*tensors)

    def local(self, *tensors):
        self.counts["local"] += 1
        return super().local(*tensors)

    def token_count(self, mask):
        self.counts["token_count"] += 1
        return super().token_count(mask)

    def mean(self, value):
        self.counts["mean"] += 1
        return super().mean(value)


def test_every_gather_point_of_the_loop_goes_through_the_gather_module(tmp_path, monkeypatch):
    """Group statistics, the token_mean share and the KL controller's input are read through gather.current(): a
    multi-process run replaces that one object. Each call site is reached: DAPO (dynamic sampling, token_mean)
    and REINFORCE++ (a per-token estimator with the KL penalty in the reward)."""
    counting = CountingGather()
    monkeypatch.setattr(gather, "_CURRENT", counting)
    rewardlab.train("dapo", {**BASE, "output_dir": str(tmp_path), "run_name": "dapo", "max_steps": 2})
    # per step: the zero-variance fraction, dynamic sampling (>= 1 round), the estimator, the step metrics
    assert counting.counts["rows"] >= 2 * 4 and counting.counts["local"] == 2 and counting.counts["token_count"] >= 2
    assert counting.counts["mean"] == 0
    counting.counts = dict.fromkeys(counting.counts, 0)
    rewardlab.train("reinforce_pp", {**BASE, "output_dir": str(tmp_path), "run_name": "rpp", "max_steps": 2})
    assert counting.counts["mean"] == 2 and counting.counts["local"] == 2
