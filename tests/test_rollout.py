import torch

from rewardlab.models import token_logprobs
from rewardlab.rollout import HFEngine, SamplingParams, concat_rollouts, sample_tokens, select_rows


def _prompts(tokenizer):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ["12+34=", "7+5=", "100+200="]]


def test_kv_cache_engine_logprobs_match_full_sequence_forward(tiny_model, tokenizer):
    """Sampled log-probs from the cached, group-shared decode equal a plain forward over the whole sequence."""
    engine = HFEngine(tiny_model, tokenizer)
    params = SamplingParams(max_new_tokens=12, temperature=0.8)
    rollout = engine.generate(_prompts(tokenizer), n=4, params=params)
    input_ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
    attention = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)
    logp, _ = token_logprobs(tiny_model, input_ids, attention, rollout.completion_ids.shape[1], temperature=0.8)
    assert torch.allclose(logp * rollout.completion_mask, rollout.sampled_logprobs, atol=1e-4)


def test_greedy_engine_equals_uncached_greedy_loop(tiny_model, tokenizer):
    """Reference: no cache, recompute the whole sequence each step, take the argmax."""
    prompts = _prompts(tokenizer)
    rollout = HFEngine(tiny_model, tokenizer).generate(prompts, 1, SamplingParams(max_new_tokens=8, temperature=0))
    for row, prompt in enumerate(prompts):
        seq = list(prompt)
        for _ in range(8):
            logits = tiny_model(torch.tensor([seq])).logits[0, -1]
            seq.append(int(logits.argmax()))
            if seq[-1] == tokenizer.eos_token_id:
                break
        got = rollout.completion_ids[row][rollout.completion_mask[row].bool()].tolist()
        assert got == seq[len(prompt) :]


def test_rollout_shapes_groups_and_masks(tiny_model, tokenizer):
    rollout = HFEngine(tiny_model, tokenizer).generate(_prompts(tokenizer), 4, SamplingParams(max_new_tokens=5))
    assert rollout.prompt_ids.shape[0] == rollout.completion_ids.shape[0] == 12
    assert rollout.group_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert rollout.completion_ids.shape[1] <= 5
    assert (rollout.prompt_ids[:4] == rollout.prompt_ids[0]).all()
    # left padding: the shortest prompt has pads on the left
    assert rollout.prompt_mask[4, 0] == 0 and rollout.prompt_mask[4, -1] == 1
    for row, reason in enumerate(rollout.finish_reason):
        ids, mask = rollout.completion_ids[row], rollout.completion_mask[row]
        if reason == "eos":
            last = int(mask.sum()) - 1
            assert ids[last] == tokenizer.eos_token_id
            assert (ids[last + 1 :] == tokenizer.pad_token_id).all()
        else:
            assert reason == "length" and mask.sum() == rollout.completion_ids.shape[1]


def test_eos_ends_a_completion_and_the_rest_is_masked(tokenizer):
    class EosAfterTwo(torch.nn.Module):
        """A mock model: emits 'a', 'b', then EOS, whatever the input."""

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))
            self.script = [tokenizer.convert_tokens_to_ids("a"), tokenizer.convert_tokens_to_ids("b"), tokenizer.eos_token_id]

        def forward(self, input_ids, attention_mask, position_ids, past_key_values=None, use_cache=True, logits_to_keep=0):
            from types import SimpleNamespace

            from transformers import DynamicCache

            cache = past_key_values if past_key_values is not None else DynamicCache()
            step = 0 if past_key_values is None else int(position_ids[0, 0] - position_ids.new_tensor(0)) - self.prompt_len + 1
            logits = torch.full((input_ids.shape[0], 1, len(tokenizer)), -1e9)
            logits[:, :, self.script[min(step, 2)]] = 0.0
            return SimpleNamespace(logits=logits, past_key_values=cache)

    model = EosAfterTwo()
    prompt = tokenizer("1+1=", add_special_tokens=False)["input_ids"]
    model.prompt_len = len(prompt)
    rollout = HFEngine(model, tokenizer).generate([prompt], 2, SamplingParams(max_new_tokens=6))
    assert rollout.completions_text == ["ab", "ab"]
    assert rollout.finish_reason == ["eos", "eos"]
    assert rollout.completion_mask.tolist() == [[1, 1, 1], [1, 1, 1]]  # stopped early: 3 steps, not 6


def test_stop_strings_end_completion_after_the_stop(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer)
    rollout = engine.generate(_prompts(tokenizer), 3, SamplingParams(max_new_tokens=20, stop=("1",)))
    for text, reason in zip(rollout.completions_text, rollout.finish_reason):
        if reason == "stop":
            assert text.endswith("1") and text.count("1") == 1
        else:
            assert "1" not in text


def test_top_k_one_is_greedy_and_top_p_keeps_the_nucleus():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9]])
    tokens, _ = sample_tokens(logits.repeat(50, 1), SamplingParams(top_k=1))
    assert (tokens == 1).all()
    # probs ~ [0.03, 0.50, 0.07, 0.41]: top_p 0.6 keeps tokens 1 and 3 only
    tokens, logprobs = sample_tokens(logits.repeat(400, 1), SamplingParams(top_p=0.6))
    assert set(tokens.tolist()) == {1, 3}
    # reported log-probs are under the filtered distribution they were drawn from (renormalised over 1 and 3)
    kept = torch.log_softmax(torch.tensor([3.0, 2.9]), -1)
    assert torch.allclose(logprobs, torch.where(tokens == 1, kept[0], kept[1]), atol=1e-6)


def test_engine_rejects_empty_prompt(tiny_model, tokenizer):
    import pytest

    with pytest.raises(ValueError, match="prompt 1 is empty"):
        HFEngine(tiny_model, tokenizer).generate([[5, 6], []], 2, SamplingParams(max_new_tokens=2))


def test_batched_generation_matches_one_call(tiny_model, tokenizer):
    prompts = _prompts(tokenizer)
    params = SamplingParams(max_new_tokens=6, temperature=0)
    whole = HFEngine(tiny_model, tokenizer).generate(prompts, 2, params)
    split = HFEngine(tiny_model, tokenizer, max_batch_rows=2).generate(prompts, 2, params)
    assert whole.completions_text == split.completions_text
    assert whole.group_index.tolist() == split.group_index.tolist()


def test_select_and_concat_rollouts_renumber_groups(tiny_model, tokenizer):
    rollout = HFEngine(tiny_model, tokenizer).generate(_prompts(tokenizer), 2, SamplingParams(max_new_tokens=3))
    picked = select_rows(rollout, torch.tensor([2, 3, 4, 5]))
    assert picked.group_index.tolist() == [0, 0, 1, 1]
    both = concat_rollouts([picked, select_rows(rollout, torch.tensor([0, 1]))], tokenizer.pad_token_id)
    assert both.group_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert both.completions_text == picked.completions_text + rollout.completions_text[:2]
