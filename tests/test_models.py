import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewardlab.models import disable_dropout, load_policy, token_logprobs
from rewardlab.models.logprobs import position_ids_from_mask


def test_char_tokenizer_round_trip_has_no_spaces(tokenizer):
    text = "43+7=50\nx y"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert tokenizer.decode(ids) == text  # a WordLevel default decoder would give "4 3 + 7 ..."


def test_chat_template_renders_generation_prompt(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "1+1="}], tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>1+1=</s><|assistant|>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|user|>") and len(ids) == 1 + 4 + 1 + 1


def test_tiny_model_save_and_reload_with_auto_classes(tmp_path, tiny_model, tokenizer):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = torch.tensor([tok("12+3=", add_special_tokens=False)["input_ids"]])
    assert torch.allclose(model(ids).logits, tiny_model(ids).logits, atol=1e-6)
    assert tok.decode(ids[0]) == "12+3="


def test_load_policy_rejects_unknown_model_with_a_clear_message():
    with pytest.raises(ValueError, match="neither 'tiny', a local Hugging Face directory"):
        load_policy("no/such/model")


def test_disable_dropout_zeroes_every_dropout():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.3))
    disable_dropout(model)
    assert model[1].p == 0.0


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_token_logprobs_match_plain_forward(tiny_model, chunk_size, temperature):
    """The chunked path against the slow obvious reference: full logits, log_softmax, gather."""
    B, P, C = 3, 4, 6
    input_ids = torch.randint(7, 100, (B, P + C))
    attention = torch.ones_like(input_ids)
    attention[0, :2] = 0  # left padding on one row
    attention[1, -2:] = 0  # right padding after an early EOS
    logp, entropy = token_logprobs(tiny_model, input_ids, attention, C, temperature, chunk_size=chunk_size)

    logits = tiny_model(input_ids, attention_mask=attention, position_ids=position_ids_from_mask(attention)).logits
    full = torch.log_softmax(logits[:, P - 1 : -1].float() / temperature, -1)
    expected = full.gather(-1, input_ids[:, P:, None]).squeeze(-1)
    expected_entropy = -(full.exp() * full).sum(-1)
    assert torch.allclose(logp, expected, atol=1e-5)
    assert torch.allclose(entropy, expected_entropy, atol=1e-5)


def test_chunked_token_logprobs_gradient_matches_reference(tiny_model, monkeypatch):
    import rewardlab.models.logprobs as lp

    monkeypatch.setattr(lp, "CHECKPOINT_VOCAB", 1)  # force the recompute-in-backward path
    input_ids = torch.randint(7, 100, (2, 9))
    attention = torch.ones_like(input_ids)
    token_logprobs(tiny_model, input_ids, attention, 4, chunk_size=3)[0].sum().backward()
    chunked = [p.grad.clone() for p in tiny_model.parameters()]
    tiny_model.zero_grad()
    logits = tiny_model(input_ids, attention_mask=attention).logits
    torch.log_softmax(logits[:, 4:-1], -1).gather(-1, input_ids[:, 5:, None]).sum().backward()
    for got, want in zip(chunked, [p.grad for p in tiny_model.parameters()]):
        assert torch.allclose(got, want, atol=1e-5)
