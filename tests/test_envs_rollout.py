"""The multi-turn episode runner: token records, the loss mask, rewards and groups, and the trainers on envs."""

import json

import pytest
import torch

from rewardlab.envs import TextEnv
from rewardlab.models import token_logprobs
from rewardlab.rollout import HFEngine, SamplingParams
from rewardlab.rollout.episodes import PolicyAgent, episodes_to_rollout, run_episodes


class CountingEnv(TextEnv):
    """Accepts any text; three turns; observation "o<t>"; reward t on turn t."""

    def __init__(self, context: str = "full"):
        super().__init__(context=context)

    def parse_action(self, text):
        return 0

    def legal_actions(self):
        return [0]

    def _reset(self):
        self.t = 0
        return "o0", {"instructions": "count"}

    def _step(self, action):
        self.t += 1
        return f"o{self.t}", float(self.t), self.t == 3, False, {}


def play(tiny_model, tokenizer, context, seeds):
    agent = PolicyAgent(HFEngine(tiny_model, tokenizer), tokenizer, SamplingParams(max_new_tokens=5), max_length=256)
    return run_episodes(lambda: CountingEnv(context), seeds, agent)


def test_only_policy_tokens_are_in_the_loss_mask_over_a_multi_turn_episode(tiny_model, tokenizer):
    episodes = play(tiny_model, tokenizer, "full", [0, 0, 1])
    rollout, rewards, source = episodes_to_rollout(episodes, [0, 0, 1], tokenizer.pad_token_id)
    assert rewards.tolist() == [6.0, 6.0, 6.0] and rollout.group_index.tolist() == [0, 0, 1] and source == [0, 1, 2]
    eos = tokenizer.eos_token_id
    for row, ep in enumerate(episodes):
        assert len(ep.turns) == 3
        ids, mask = rollout.completion_ids[row], rollout.completion_mask[row]
        attended = rollout.completion_attention_mask[row].bool()
        # the policy's tokens, and nothing else, carry loss
        assert ids[mask.bool()].tolist() == sum((t.completion_ids for t in ep.turns), [])
        # prompt + completion is exactly what the model saw at its last turn plus what it wrote then
        prompt = rollout.prompt_ids[row][rollout.prompt_mask[row].bool()].tolist()
        assert prompt == tokenizer("<|system|>count</s><|user|>o0</s><|assistant|>", add_special_tokens=False)["input_ids"]
        assert prompt + ids[attended].tolist() == ep.turns[-1].prompt_ids + ep.turns[-1].completion_ids
        # between the policy's turns: the environment's reply (closing EOS when the turn hit the length limit)
        environment = ids[attended & ~mask.bool()].tolist()
        expected = ""
        for k, turn in enumerate(ep.turns[:-1]):
            closed = turn.completion_ids[-1] == eos
            expected += ("" if closed else "</s>") + f"<|user|>o{k + 1}</s><|assistant|>"
        assert tokenizer.decode(environment) == expected
    # log-probs recomputed through the loss path (environment tokens attended, positions counted over
    # real tokens) equal the sampling log-probs on every policy token
    input_ids, attention = rollout.sequence_inputs()
    with torch.no_grad():
        logp, _ = token_logprobs(tiny_model.eval(), input_ids, attention, rollout.completion_ids.shape[1])
    policy = rollout.completion_mask.bool()
    torch.testing.assert_close(logp[policy], rollout.sampled_logprobs[policy], atol=1e-5, rtol=0)


def test_per_turn_rows_with_returns_to_go_group_the_same_turn(tiny_model, tokenizer):
    episodes = play(tiny_model, tokenizer, "last", [5, 5, 9, 9])
    rollout, rewards, source = episodes_to_rollout(episodes, [5, 5, 9, 9], tokenizer.pad_token_id, "return_to_go")
    # turn rewards 1, 2, 3 -> returns to go 6, 5, 3; groups = (seed, turn), two episodes each
    assert rewards.tolist() == [6, 6, 5, 5, 3, 3] * 2
    assert rollout.group_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert source == [0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3]
    assert rollout.prompts_text == ["o0", "o0", "o1", "o1", "o2", "o2"] * 2
    assert rollout.completion_attention_mask.equal(rollout.completion_mask)
    # each turn's prompt is the instructions and the current observation only
    first = rollout.prompt_ids[2][rollout.prompt_mask[2].bool()].tolist()
    assert tokenizer.decode(first) == "<|system|>count</s><|user|>o1</s><|assistant|>"
    rollout, rewards, _ = episodes_to_rollout(episodes, [5, 5, 9, 9], tokenizer.pad_token_id, "return",
                                              turns_per_episode=2, generator=torch.Generator().manual_seed(0))
    assert len(rollout) == 8 and rewards.tolist() == [6.0] * 8
    with pytest.raises(ValueError, match="needs context='last'"):
        episodes_to_rollout(play(tiny_model, tokenizer, "full", [0]), [0], tokenizer.pad_token_id, "return_to_go")


class RegretEnv(CountingEnv):
    """CountingEnv whose turns report an expected regret: 0.5, 0.25, 0 (the bandits' step info does)."""

    def _step(self, action):
        obs, reward, terminated, truncated, _ = super()._step(action)
        return obs, reward, terminated, truncated, {"regret": [0.5, 0.25, 0.0][self.t - 1]}


def test_regret_rewards_use_the_expected_regret_not_the_reward_draws(tiny_model, tokenizer):
    agent = PolicyAgent(HFEngine(tiny_model, tokenizer), tokenizer, SamplingParams(max_new_tokens=5), max_length=256)
    episodes = run_episodes(lambda: RegretEnv("last"), [3, 3], agent)
    rollout, rewards, _ = episodes_to_rollout(episodes, [3, 3], tokenizer.pad_token_id, "regret_to_go")
    # regrets 0.5, 0.25, 0 -> minus the regret to go: -0.75, -0.25, 0 (the rewards 1, 2, 3 play no part)
    assert rewards.tolist() == [-0.75, -0.75, -0.25, -0.25, 0.0, 0.0]
    assert rollout.group_index.tolist() == [0, 0, 1, 1, 2, 2]
    _, rewards, _ = episodes_to_rollout(episodes, [3, 3], tokenizer.pad_token_id, "regret")
    assert rewards.tolist() == [-0.5, -0.5, -0.25, -0.25, 0.0, 0.0]  # each turn's own regret only
    with pytest.raises(ValueError, match="reports 'regret'"):
        episodes_to_rollout(play(tiny_model, tokenizer, "last", [0]), [0], tokenizer.pad_token_id, "regret_to_go")


def test_conversation_longer_than_the_model_is_a_clear_error(tiny_model, tokenizer):
    agent = PolicyAgent(HFEngine(tiny_model, tokenizer), tokenizer, SamplingParams(max_new_tokens=5), max_length=30)
    with pytest.raises(ValueError, match="needs 3[0-9] positions but the model has 30"):
        run_episodes(lambda: CountingEnv("full"), [0], agent)


def test_sft_cold_start_then_grpo_on_tictactoe(tmp_path):
    import rewardlab

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 2}
    common = {"env": "tictactoe", "output_dir": str(tmp_path), "torch_threads": 1, "tensorboard": False, "eval_n": 8}
    sft = rewardlab.train("sft", {**common, "run_name": "sft", "model_config": small, "max_steps": 3, "batch_size": 8,
                                  "warmup_steps": 0, "max_new_tokens": 16})
    assert 0.0 <= sft["eval_accuracy"] <= 1.0  # share of legal moves on held-out demonstrator turns
    summary = rewardlab.train("grpo", {**common, "run_name": "grpo", "model": str(tmp_path / "sft" / "final"),
                                       "max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 16})
    assert set(summary["env_eval"]) >= {"win", "draw", "loss", "invalid_rate", "return"}
    assert summary["env_eval"]["win"] + summary["env_eval"]["draw"] + summary["env_eval"]["loss"] == pytest.approx(1.0)
    rows = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "loss" in r]
    assert len(trained) == 2 and all("rewards/env/win/mean" in r for r in trained)
    # every evaluation logs the environment's own metrics next to the score, from step 0 on
    initial = next(r for r in rows if r["step"] == 0)
    assert initial["eval/env/score"] == initial["eval/accuracy"]
    assert initial["eval/env/win"] + initial["eval/env/draw"] + initial["eval/env/loss"] == pytest.approx(1.0)
    final = [r for r in rows if r["step"] == 2 and "eval/accuracy" in r][-1]  # the evaluation at the end, too
    assert final["eval/env/win"] == summary["env_eval"]["win"] and final["eval/accuracy"] == summary["eval_accuracy"]
