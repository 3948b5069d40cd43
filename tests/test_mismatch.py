"""The rollout-trainer mismatch (docs/algorithms.md#rollout-trainer-mismatch): the importance weights and the
mismatch metrics by hand, and an engine with a known, injected log-prob error corrected in the loop."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import rewardlab
from rewardlab.algos import mismatch_metrics, mismatch_weights
from rewardlab.config import ConfigError, load_config
from rewardlab.rollout import ENGINES, HFEngine

from .test_seams import BASE

TRAINER = torch.tensor([[-1.0, -2.0, -0.5]])
ENGINE = torch.tensor([[-1.5, -1.0, -0.5]])
MASK = torch.tensor([[1, 1, 0]])  # the third token is padding


def test_weights_by_hand():
    # log ratios trainer - engine: +0.5 and -1.0 -> token ratios 1.6487 and 0.3679; the sequence's: exp(-0.5) = 0.6065
    weight, metrics = mismatch_weights(TRAINER, ENGINE, MASK, "token_truncate", 0.0, 3.0)
    assert weight[0].tolist() == pytest.approx([math.exp(0.5), math.exp(-1.0), 0.0], abs=1e-6)
    assert metrics["sampling/importance_sampling_ratio/max"] == pytest.approx(math.exp(0.5), abs=1e-6)
    weight, _ = mismatch_weights(TRAINER, ENGINE, MASK, "token_truncate", 0.5, 1.5)
    assert weight[0].tolist() == pytest.approx([1.5, 0.5, 0.0])
    weight, metrics = mismatch_weights(TRAINER, ENGINE, MASK, "token_mask", 0.5, 1.5)
    assert weight[0].tolist() == [0.0, 0.0, 0.0] and metrics["sampling/masked_tokens"] == 1.0
    weight, _ = mismatch_weights(TRAINER, ENGINE, MASK, "token_mask", 0.3, 1.7)
    assert weight[0].tolist() == pytest.approx([math.exp(0.5), math.exp(-1.0), 0.0], abs=1e-6)
    weight, _ = mismatch_weights(TRAINER, ENGINE, MASK, "sequence_truncate", 0.0, 3.0)
    assert weight[0].tolist() == pytest.approx([math.exp(-0.5), math.exp(-0.5), 0.0], abs=1e-6)
    weight, _ = mismatch_weights(TRAINER, ENGINE, MASK, "sequence_mask", 0.7, 3.0)
    assert weight[0].tolist() == [0.0, 0.0, 0.0]  # 0.6065 < 0.7: the whole sequence leaves the loss
    metrics = mismatch_metrics(TRAINER, ENGINE, MASK)
    assert metrics["sampling/logprob_abs_diff"] == pytest.approx(0.75)
    # k3 per token: (e^d - 1) - d = 0.1487 (d = 0.5) and 0.3679 (d = -1)
    assert metrics["sampling/mismatch_kl"] == pytest.approx(((math.exp(0.5) - 1.5) + math.exp(-1.0)) / 2, abs=1e-6)
    assert mismatch_metrics(TRAINER, TRAINER, MASK) == {"sampling/logprob_abs_diff": 0.0, "sampling/mismatch_kl": 0.0}


class ShiftedEngine:
    """The hf engine, reporting every sampled token's log-prob `SHIFT` higher than it is (a known mismatch), as an
    engine with its own weights would."""

    SHIFT = 1.0

    def __init__(self, model, tokenizer, cfg):
        self.inner = HFEngine(model, tokenizer)

    def generate(self, prompts, n, params):
        rollout = self.inner.generate(prompts, n, params)
        shifted = rollout.sampled_logprobs + self.SHIFT * rollout.completion_mask
        return dataclasses.replace(rollout, sampled_logprobs=shifted, logprobs_source="engine")

    def sync(self, model):
        pass


def run(tmp_path, name, **extra):
    rewardlab.train("grpo", {**BASE, "engine": "shifted", "max_steps": 1, "output_dir": str(tmp_path), "run_name": name,
                             "max_grad_norm": 0.0, **extra})
    return [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl") if '"grad_norm"' in line][0]


def test_an_injected_mismatch_is_measured_and_corrected(tmp_path, monkeypatch):
    monkeypatch.setitem(ENGINES._items, "shifted", ShiftedEngine)
    off = run(tmp_path, "off", vllm_importance_sampling_correction=False)
    # the trainer's log-probs are the engine's minus 1 on every token: |diff| 1, KL k3 = e^-1 - 1 + 1 = e^-1
    assert off["sampling/logprob_abs_diff"] == pytest.approx(1.0, abs=1e-3)
    assert off["sampling/mismatch_kl"] == pytest.approx(math.exp(-1.0), abs=1e-3)
    token = run(tmp_path, "token", vllm_importance_sampling_mode="token_truncate")
    # every token weighted exp(-1): the same samples, so the gradient is e^-1 of the uncorrected one
    assert token["grad_norm"] == pytest.approx(math.exp(-1.0) * off["grad_norm"], rel=1e-3)
    assert token["sampling/importance_sampling_ratio/mean"] == pytest.approx(math.exp(-1.0), abs=1e-3)
    masked = run(tmp_path, "masked", vllm_importance_sampling_mode="token_mask", vllm_importance_sampling_clip_min=0.5)
    assert masked["sampling/masked_tokens"] == 1.0 and masked["grad_norm"] == 0.0  # every token below 0.5: none trained


def test_the_hf_engine_needs_no_correction(tmp_path):
    rewardlab.train("grpo", {**BASE, "max_steps": 1, "output_dir": str(tmp_path), "run_name": "hf"})
    row = [json.loads(line) for line in open(tmp_path / "hf" / "metrics.jsonl") if '"grad_norm"' in line][0]
    assert not any(key.startswith("sampling/") for key in row)


def test_correction_settings_are_checked():
    with pytest.raises(ConfigError, match="vllm_importance_sampling_mode"):
        load_config("grpo", None, {"vllm_importance_sampling_mode": "token"})
    with pytest.raises(ConfigError, match="clip_min < vllm_importance_sampling_clip_max"):
        load_config("grpo", None, {"vllm_importance_sampling_clip_min": 3.0})
