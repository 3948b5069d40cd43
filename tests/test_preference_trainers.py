"""Reward-model and DPO-family trainers: losses through the real batching path checked against a slow
obvious computation, ln 2 at initialisation, precomputed = on-the-fly reference, saved reward models
loadable by transformers, data errors that name the row and field."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

import rewardlab
from rewardlab.config import load_config
from rewardlab.data import DataError
from rewardlab.data.collate import left_pad, right_pad
from rewardlab.models import build_char_tokenizer, build_tiny_model, load_reward_model, reward_scores
from rewardlab.trainers.preference import FrozenReference, step_loss
from rewardlab.trainers.preference_inputs import encode_records

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}
PAIRS = [
    {"prompt": "qdk:", "chosen": "dkq", "rejected": "kq"},
    {"prompt": "ab:", "chosen": "ab", "rejected": "bazzy"},
    {"prompt": "xyzw:", "chosen": "wxyz", "rejected": "w"},
]


def small(tmp_path, **overrides):
    base = {"model_config": TINY, "output_dir": str(tmp_path), "eval_n": 8, "max_steps": 2, "batch_size": 4,
            "tensorboard": False, "torch_threads": 1, "logging_steps": 0}
    return {**base, **overrides}


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# ---------------------------------------------------------------- the slow, obvious computation


def naive_logp(model, tokenizer, prompt: str, completion: str) -> torch.Tensor:
    """Sum of log p(completion + EOS | prompt) from one unpadded full forward and a full log_softmax."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    logits = model(torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits[:-1].float(), -1).gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1)
    return logp[len(prompt_ids) - 1 :].sum()


@pytest.fixture()
def policy_and_reference(tmp_path):
    tokenizer = build_char_tokenizer()
    policy = build_tiny_model(tokenizer, seed=0, **TINY)
    reference = build_tiny_model(tokenizer, seed=1, **TINY)  # differs from the policy, so h != 0
    reference.save_pretrained(tmp_path / "ref")
    tokenizer.save_pretrained(tmp_path / "ref")
    return policy, reference, tokenizer, str(tmp_path / "ref")


@pytest.mark.parametrize("loss_type", ["sigmoid", "cdpo", "ipo", "simpo"])
def test_paired_losses_through_the_batching_path_match_the_formulas(policy_and_reference, loss_type):
    policy, reference, tok, ref_dir = policy_and_reference
    options = {"loss_type": loss_type, "beta": 2.5 if loss_type == "simpo" else 0.1, "model_config": TINY}
    options |= {"label_smoothing": 0.1} if loss_type == "cdpo" else {}
    options |= {"ref_model": ref_dir} if loss_type != "simpo" else {}
    cfg = load_config("dpo", overrides=options)
    encoded = encode_records(PAIRS, tok, max_length=64)
    ref = FrozenReference(policy, cfg) if loss_type != "simpo" else None
    loss, got = step_loss(cfg, policy, encoded, [0, 1, 2], tok.pad_token_id, ref)

    beta, eps = cfg.beta, 0.1
    expected = []
    for pair in PAIRS:
        pw, pl = (naive_logp(policy, tok, pair["prompt"], pair[k]) for k in ("chosen", "rejected"))
        rw, rl = (naive_logp(reference, tok, pair["prompt"], pair[k]) for k in ("chosen", "rejected"))
        h = (pw - rw) - (pl - rl)
        if loss_type == "sigmoid":
            expected.append(-F.logsigmoid(beta * h))
        elif loss_type == "cdpo":
            expected.append(-(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h))
        elif loss_type == "ipo":
            expected.append((h - 1 / (2 * beta)) ** 2)
        else:  # SimPO: completion lengths count the EOS token
            nw, nl = len(pair["chosen"]) + 1, len(pair["rejected"]) + 1
            expected.append(-F.logsigmoid(beta * pw / nw - beta * pl / nl - cfg.simpo_gamma))
    torch.testing.assert_close(loss, torch.stack(expected).mean(), atol=1e-5, rtol=0)
    assert got["logps/chosen"] == pytest.approx(
        float(sum(naive_logp(policy, tok, p["prompt"], p["chosen"]).detach() for p in PAIRS) / 3), abs=1e-5
    )
    assert set(got) >= {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/rejected"}


def test_kto_loss_through_the_batching_path_matches_the_formula(policy_and_reference):
    policy, reference, tok, ref_dir = policy_and_reference
    rows = [{"prompt": "qdk:", "completion": "dkq", "label": True}, {"prompt": "ab:", "completion": "bazzy", "label": False},
            {"prompt": "xyzw:", "completion": "w", "label": True}]
    cfg = load_config("kto", overrides={"ref_model": ref_dir, "desirable_weight": 1.0, "undesirable_weight": 1.5})
    encoded = encode_records(rows, tok, max_length=64)
    loss, got = step_loss(cfg, policy, encoded, [0, 1, 2], tok.pad_token_id, FrozenReference(policy, cfg))

    def log_ratio(prompt, completion):
        return naive_logp(policy, tok, prompt, completion) - naive_logp(reference, tok, prompt, completion)

    # z0 = max(0, mean log-ratio of mismatched pairs): row i's prompt with row (i + 1)'s completion
    mismatched = [log_ratio(rows[i]["prompt"], rows[(i + 1) % 3]["completion"]) for i in range(3)]
    z0 = torch.clamp(torch.stack(mismatched).mean(), min=0)
    expected = []
    for row in rows:
        r = log_ratio(row["prompt"], row["completion"])
        expected.append(1 - torch.sigmoid(0.1 * (r - z0)) if row["label"] else 1.5 * (1 - torch.sigmoid(0.1 * (z0 - r))))
    torch.testing.assert_close(loss, torch.stack(expected).mean(), atol=1e-5, rtol=0)
    assert got["kl"] == pytest.approx(float(z0), abs=1e-5)


# ---------------------------------------------------------------- whole runs


def test_dpo_starts_at_ln2_and_writes_trl_metrics(tmp_path):
    rewardlab.train("dpo", small(tmp_path, run_name="dpo", max_steps=1))
    first = metrics(tmp_path / "dpo")[1]  # row 0 is the evaluation before training
    # policy = reference at step 1: h = 0 for every pair, loss = -logsigmoid(0) = ln 2 = 0.6931472
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    summary = json.loads((tmp_path / "dpo" / "summary.json").read_text())
    assert {"eval_accuracy", "eval_gold_mean", "eval_win_rate", "eval_reference_gold_mean"} <= set(summary)
    assert (tmp_path / "dpo" / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("loss_type", ["sigmoid", "kto"])
def test_precomputed_reference_equals_on_the_fly(tmp_path, loss_type):
    losses = {}
    for precompute in (False, True):
        name = f"{loss_type}-{precompute}"
        rewardlab.train("dpo", small(tmp_path, run_name=name, loss_type=loss_type, max_steps=3, learning_rate=0.01,
                                     precompute_ref_log_probs=precompute))
        losses[precompute] = [r["loss"] for r in metrics(tmp_path / name) if "loss" in r]
    assert len(losses[True]) == 3
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)
    assert losses[True][0] != losses[True][-1]  # the policy moved, so later steps test the reference too


def test_lora_reference_is_the_base_without_a_copy(tmp_path):
    from rewardlab.models import apply_lora, load_policy

    rewardlab.train("dpo", small(tmp_path, run_name="lora", lora_r=4, max_steps=2, learning_rate=0.05))
    rows = [r for r in metrics(tmp_path / "lora") if "loss" in r]
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # adapter starts at zero
    assert (tmp_path / "lora" / "final" / "adapter" / "adapter_config.json").is_file()
    policy = apply_lora(load_policy("tiny", model_config=TINY)[0], r=4, alpha=16)
    cfg = load_config("dpo", overrides={"model_config": TINY, "lora_r": 4})
    assert FrozenReference(policy, cfg).copy is None


def test_simpo_ipo_and_kto_on_paired_and_unpaired_files(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS * 3)
    unpaired = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": p["prompt"], "completion": p["chosen"], "label": i % 2 == 0}
                                                     for i, p in enumerate(PAIRS * 3)])
    for method, data in [("simpo", pairs), ("ipo", pairs), ("kto", unpaired), ("kto", pairs)]:
        summary = rewardlab.train(method, small(tmp_path, run_name=f"{method}-{len(data)}", dataset=data, eval_dataset=pairs))
        assert summary["loss_type"] == method and 0.0 <= summary["eval_accuracy"] <= 1.0
        assert "eval_win_rate" not in summary  # a user's dataset has no gold scorer


def test_chat_format_pairs_with_and_without_a_prompt_field(tmp_path):
    def chat(role, text):
        return [{"role": role, "content": text}]

    rows = [
        {"prompt": chat("user", "qdk:"), "chosen": chat("assistant", "dkq"), "rejected": chat("assistant", "kq")},
        {"chosen": chat("user", "ab:") + chat("assistant", "ab"), "rejected": chat("user", "ab:") + chat("assistant", "b")},
    ]
    data = write_jsonl(tmp_path / "chat.jsonl", rows * 2)
    rewardlab.train("dpo", small(tmp_path, run_name="chat", dataset=data, eval_dataset=data, max_steps=1))
    assert metrics(tmp_path / "chat")[1]["loss"] == pytest.approx(math.log(2), abs=1e-6)


# ---------------------------------------------------------------- reward model


def test_reward_model_saves_a_sequence_classifier_with_the_same_scores(tmp_path):
    summary = rewardlab.train("rm", small(tmp_path, run_name="rm", max_steps=3, center_rewards_coefficient=0.01))
    assert {"eval_accuracy", "eval_gold_accuracy", "eval_label_gold_agreement", "eval_expected_label_accuracy"} <= set(summary)
    final = tmp_path / "rm" / "final"
    hf = AutoModelForSequenceClassification.from_pretrained(final).eval()
    ours, tok = load_reward_model(str(final))
    ours.eval()
    texts = ["qdk:dkq</s>", "ab:b</s>", "xyzw:wxyzzz</s>"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    with torch.no_grad():
        right, right_mask = right_pad(ids, tok.pad_token_id)
        left, left_mask = left_pad(ids, tok.pad_token_id)
        hf_right = hf(input_ids=right, attention_mask=right_mask).logits.squeeze(-1)
        hf_left = hf(input_ids=left, attention_mask=left_mask).logits.squeeze(-1)
        torch.testing.assert_close(hf_left, hf_right, atol=1e-5, rtol=0)
        torch.testing.assert_close(reward_scores(ours, right, right_mask), hf_right, atol=1e-5, rtol=0)
        torch.testing.assert_close(reward_scores(ours, left, left_mask), hf_right, atol=1e-5, rtol=0)
    assert hf.config.pad_token_id == tok.pad_token_id and hf.config.num_labels == 1


def test_reward_model_step_one_loss_with_per_pair_margins_by_hand(tmp_path):
    rows = [dict(p, margin=m) for p, m in zip(PAIRS + [{"prompt": "mn:", "chosen": "mn", "rejected": "nm"}], [1.0, 0.0, 2.0, 0.5])]
    data = write_jsonl(tmp_path / "margins.jsonl", rows)
    rewardlab.train("rm", small(tmp_path, run_name="rm", dataset=data, eval_dataset=data, max_steps=1, batch_size=4))
    model, tok = load_reward_model("tiny", seed=0, model_config=TINY)  # the trainer's starting model
    encoded = encode_records(rows, tok, max_length=64)
    with torch.no_grad():
        ids = [p + c for p, c in zip(encoded.prompts, encoded.completions[0])] + [p + c for p, c in zip(encoded.prompts, encoded.completions[1])]
        scores = reward_scores(model, *right_pad(ids, tok.pad_token_id))
    chosen, rejected, margin = scores[:4], scores[4:], torch.tensor([1.0, 0.0, 2.0, 0.5])
    expected = -F.logsigmoid(chosen - rejected - margin).mean()  # the batch mean of -logsigmoid(r_c - r_r - m)
    assert metrics(tmp_path / "rm")[1]["loss"] == pytest.approx(float(expected), abs=1e-5)


def test_reward_model_with_lora_loads_merged(tmp_path):
    rewardlab.train("rm", small(tmp_path, run_name="rm-lora", lora_r=4, max_steps=2, learning_rate=0.05))
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm-lora" / "final")
    assert model.config.num_labels == 1


# ---------------------------------------------------------------- errors and the command line


def test_malformed_rows_name_the_row_and_field(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [PAIRS[0], {"prompt": "ab:", "chosen": "ab"}])
    with pytest.raises(DataError, match=r"row 1 of .*bad.jsonl has no 'rejected' field"):
        rewardlab.train("dpo", small(tmp_path, run_name="bad", dataset=bad))
    assert not (tmp_path / "bad").exists()  # checked before the run directory is written
    label = write_jsonl(tmp_path / "label.jsonl", [{"prompt": "a:", "completion": "a", "label": "yes"}])
    with pytest.raises(DataError, match=r"row 0 .*'label' is 'yes'"):
        rewardlab.train("kto", small(tmp_path, run_name="bad", dataset=label))
    with pytest.raises(DataError, match="only loss_type kto"):
        rewardlab.train("dpo", small(tmp_path, run_name="bad", dataset=write_jsonl(tmp_path / "u.jsonl", [{"prompt": "a:", "completion": "a", "label": True}])))


def test_config_errors_say_what_to_change():
    from rewardlab.config import ConfigError

    with pytest.raises(ConfigError, match="loss_type='exo_pair' is not valid; choose one of: sigmoid, ipo, cdpo, simpo, kto"):
        load_config("dpo", overrides={"loss_type": "exo_pair"})
    with pytest.raises(ConfigError, match="cdpo needs label_smoothing"):
        load_config("dpo", overrides={"loss_type": "cdpo"})
    with pytest.raises(ConfigError, match="simpo uses no reference"):
        load_config("simpo", overrides={"precompute_ref_log_probs": True})


def test_cli_train_and_gold_eval_against_itself(tmp_path, capsys):
    from rewardlab.cli import main

    settings = small(tmp_path, run_name="cli", max_steps=1)
    config = tmp_path / "dpo.yaml"
    config.write_text(json.dumps({"model_config": settings.pop("model_config"), "beta": 0.5}))  # JSON is YAML
    # key=value overrides may follow --config
    assert main(["train", "dpo", "--config", str(config), *[f"{k}={json.dumps(v)}" for k, v in settings.items()]]) == 0
    assert "beta: 0.5" in (tmp_path / "cli" / "config.yaml").read_text()
    final = str(tmp_path / "cli" / "final")
    assert main(["eval", "--model", final, "--reference", final, "--task", "preference", "--n", "16", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "cli" / "final" / "eval-preference-seed3.summary.json").read_text())
    # the same model with the same sampling seed writes the same completions: every pair ties, win rate 1/2
    assert summary["win_rate"] == 0.5 and summary["ties"] == 1.0
    assert summary["gold_mean"] == summary["reference_gold_mean"]
    assert "win rate" in out
