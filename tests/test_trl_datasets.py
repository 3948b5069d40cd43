"""Data as a TRL user passes it: datasets.Dataset, DatasetDict, IterableDataset and lists of dicts reach every
trainer through rewardlab.train; config.yaml records where the data came from (rows, columns, fingerprint)
and a resumed run checks the fingerprint; SFT takes TRL's conversational ({"messages"}) and language-modelling
({"text"}) formats next to prompt/completion. Two steps per run on a one-layer tiny model."""

from __future__ import annotations

import json
import logging

import datasets
import pytest
import torch
import yaml

import rewardlab
from rewardlab.config import SFTConfig, read_saved_config
from rewardlab.data import DataError, InMemoryData, as_source, load_records
from rewardlab.models import build_char_tokenizer, build_tiny_model

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}
PROMPTS = [{"prompt": f"{i}+{j}=", "completion": str(i + j), "answer": str(i + j)} for i in range(4) for j in range(3)]
PAIRS = [{"prompt": f"{i}+1=", "chosen": str(i + 1), "rejected": str(i)} for i in range(8)]
UNPAIRED = [{"prompt": f"{i}+1=", "completion": str(i + 1 - (i % 2)), "label": i % 2 == 0} for i in range(8)]
CHATS = [{"messages": [{"role": "user", "content": f"{i}+1="}, {"role": "assistant", "content": str(i + 1)}]}
         for i in range(6)]


def small(tmp_path, name: str, **overrides) -> dict:
    return {"model_config": TINY, "output_dir": str(tmp_path), "run_name": name, "eval_n": 4, "max_steps": 2,
            "batch_size": 4, "tensorboard": False, "torch_threads": 1, **overrides}


def saved_data(tmp_path, name: str) -> tuple[str, str]:
    saved = read_saved_config(tmp_path / name / "config.yaml")
    return saved["dataset"], saved["eval_dataset"]


def logged_steps(tmp_path, name: str) -> list[int]:
    rows = [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")]
    return [r["step"] for r in rows if "loss" in r]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- every trainer takes Dataset objects


def test_sft_takes_a_dataset_and_config_yaml_records_rows_columns_and_fingerprint(tmp_path):
    ds = datasets.Dataset.from_list(PROMPTS)
    rewardlab.train("sft", small(tmp_path, "sft"), dataset=ds, eval_dataset=ds.select(range(4)))
    assert logged_steps(tmp_path, "sft") == [1, 2]
    dataset, eval_dataset = saved_data(tmp_path, "sft")
    fingerprint = as_source(PROMPTS).fingerprint  # the same rows as a list: the same fingerprint
    assert dataset == f"<datasets.Dataset: 12 rows, columns prompt, completion, answer; fingerprint {fingerprint}>"
    assert eval_dataset.startswith("<datasets.Dataset: 4 rows, columns prompt, completion, answer; fingerprint ")
    assert yaml.safe_load((tmp_path / "sft" / "config.yaml").read_text())["data"]["dataset"] == dataset


def test_a_dataset_inside_a_config_object_or_a_dict_section_is_recorded_not_serialised(tmp_path):
    from rewardlab.trainers import TRAINERS

    ds = datasets.Dataset.from_list(PROMPTS)
    cfg = SFTConfig(**{k: v for k, v in small(tmp_path, "object").items()}, dataset=ds)
    rewardlab.train("sft", cfg)
    assert saved_data(tmp_path, "object")[0].startswith("<datasets.Dataset: 12 rows")
    rewardlab.train("sft", {**small(tmp_path, "section"), "data": {"dataset": ds}})
    assert saved_data(tmp_path, "section")[0] == saved_data(tmp_path, "object")[0]
    direct = SFTConfig(**small(tmp_path, "direct"), dataset=PROMPTS)  # a trainer called without train()
    TRAINERS["sft"](direct)
    assert saved_data(tmp_path, "direct")[0].startswith("<list: 12 rows, columns prompt, completion, answer;")


def test_reward_model_takes_a_dataset_dict_train_split_and_its_test_split_for_eval(tmp_path):
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(PAIRS),
                                   "test": datasets.Dataset.from_list(PAIRS[:3])})
    summary = rewardlab.train("rm", small(tmp_path, "rm"), dataset=splits, eval_dataset=splits)
    assert summary["eval_n"] == 3  # the test split, not the task's pairs
    dataset, eval_dataset = saved_data(tmp_path, "rm")
    assert dataset.startswith("<datasets.DatasetDict['train']: 8 rows, columns prompt, chosen, rejected;")
    assert eval_dataset.startswith("<datasets.DatasetDict['test']: 3 rows,")
    validation = datasets.DatasetDict({"validation": datasets.Dataset.from_list(PAIRS[:2])})
    assert as_source(validation, "eval_dataset").startswith("<datasets.DatasetDict['validation']: 2 rows")
    with pytest.raises(DataError, match=r"splits 'validation' but no 'train'.*dataset=dd\['validation'\]"):
        as_source(validation, "dataset")


@pytest.mark.parametrize("method, rows", [("dpo", PAIRS), ("ipo", PAIRS), ("simpo", PAIRS), ("kto", UNPAIRED)])
def test_the_dpo_family_takes_lists_and_datasets(tmp_path, method, rows):
    data = rows if method in ("dpo", "kto") else datasets.Dataset.from_list(rows)
    summary = rewardlab.train(method, small(tmp_path, method), dataset=data, eval_dataset=PAIRS[:4])
    assert logged_steps(tmp_path, method)[-2:] == [1, 2] and summary["eval_accuracy"] is not None
    kind = "list" if method in ("dpo", "kto") else "datasets.Dataset"
    assert saved_data(tmp_path, method)[0].startswith(f"<{kind}: 8 rows, columns prompt, ")


def test_online_rl_takes_an_iterable_dataset_and_a_dataset(tmp_path):
    stream = datasets.Dataset.from_list(PROMPTS).to_iterable_dataset()
    online = {"batch_size": 8, "num_generations": 4, "max_completion_length": 4, "max_prompt_length": 16}
    rewardlab.train("grpo", small(tmp_path, "grpo", **online), dataset=stream)
    assert saved_data(tmp_path, "grpo")[0].startswith("<datasets.IterableDataset: 12 rows, columns prompt, ")
    rewardlab.train("rloo", small(tmp_path, "rloo", **online), dataset=datasets.Dataset.from_list(PROMPTS))
    for name in ("grpo", "rloo"):
        rows = [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")]
        assert [r["step"] for r in rows if "reward" in r] == [1, 2]


def test_distill_takes_a_dataset(tmp_path):
    tokenizer = build_char_tokenizer()
    teacher = tmp_path / "teacher"
    build_tiny_model(tokenizer, seed=1, **TINY).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    rewardlab.train("distill", small(tmp_path, "distill", teacher=str(teacher), loss_type="sft",
                                     off_policy_source="dataset", max_completion_length=4),
                    dataset=datasets.Dataset.from_list(PROMPTS))
    assert logged_steps(tmp_path, "distill") == [1, 2]
    assert saved_data(tmp_path, "distill")[0].startswith("<datasets.Dataset: 12 rows")


# ----------------------------------------------------------------------------- provenance and resume


def test_fingerprints_follow_the_rows_and_a_description_alone_cannot_be_loaded():
    same = as_source(datasets.Dataset.from_list(PROMPTS))
    assert isinstance(same, InMemoryData) and same.fingerprint == as_source(list(PROMPTS)).fingerprint
    changed = [dict(PROMPTS[0], completion="9")] + PROMPTS[1:]
    assert as_source(changed).fingerprint != same.fingerprint
    assert as_source(PROMPTS[::-1]).fingerprint != same.fingerprint  # the order is part of the data
    assert load_records(same) == PROMPTS
    with pytest.raises(DataError, match=r"description a run's config.yaml records.*Pass the same data again"):
        load_records(str(same))  # e.g. `rewardlab train sft --config runs/x/config.yaml --resume`
    with pytest.raises(DataError, match=r"dataset is a builtins.int; pass a path"):
        as_source(3)


def test_resume_checks_the_fingerprint_and_says_when_it_cannot(tmp_path, caplog):
    ds = datasets.Dataset.from_list(PROMPTS)
    run = small(tmp_path, "resume", save_steps=1)
    rewardlab.train("sft", run, dataset=ds)
    changed = ds.map(lambda row: {"completion": row["completion"] + "0"})
    with pytest.raises(DataError, match=r"resume: dataset is not the data this run started with: its config.yaml "
                                        r"records <datasets.Dataset: 12 rows.*this call passed <datasets.Dataset"):
        rewardlab.train("sft", {**run, "resume": True}, dataset=changed)
    rewardlab.train("sft", {**run, "resume": True}, dataset=datasets.Dataset.from_list(PROMPTS))  # same rows
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    with caplog.at_level(logging.WARNING):
        rewardlab.train("sft", {**run, "resume": True}, dataset=str(path))
    assert "resume: cannot check that dataset is the data this run started with" in caplog.text


def test_rows_of_a_dataset_are_checked_naming_the_row_and_column(tmp_path):
    broken = datasets.Dataset.from_list([{"prompt": "1+1=", "completion": "2"}, {"prompt": "", "completion": "3"}])
    with pytest.raises(DataError, match=r"row 1 of <datasets.Dataset: 2 rows, columns prompt, completion; "
                                        r"fingerprint [0-9a-f]{16}>: 'prompt' is an empty string"):
        rewardlab.train("sft", small(tmp_path, "broken"), dataset=broken)
    pairs = [dict(PAIRS[0]), {"prompt": "2+1=", "chosen": "3"}]
    with pytest.raises(DataError, match=r"row 1 of <list: 2 rows, .*> has no 'rejected' field"):
        rewardlab.train("dpo", small(tmp_path, "broken-pairs"), dataset=pairs)
    chats = [CHATS[0], {"messages": [{"role": "robot", "content": "hi"}]}]
    with pytest.raises(DataError, match=r"row 1 of <list: 2 rows, columns messages; .*>: messages\[0\] has role 'robot'"):
        rewardlab.train("sft", small(tmp_path, "broken-chat"), dataset=chats)
    assert not (tmp_path / "broken").exists()  # refused before the run directory is made


# ----------------------------------------------------------------------------- SFT formats


def test_sft_conversations_train_on_every_token_by_default_and_on_assistant_turns_with_assistant_only_loss():
    from rewardlab.trainers.sft import encode_row

    tokenizer = build_char_tokenizer()
    messages = [{"role": "system", "content": "be"}, {"role": "user", "content": "1+1="},
                {"role": "assistant", "content": "2"}, {"role": "user", "content": "x"},
                {"role": "assistant", "content": "yz"}]
    prompt, completion, mask = encode_row({"messages": messages}, tokenizer, "messages")
    rendered = "<|system|>be</s><|user|>1+1=</s><|assistant|>2</s><|user|>x</s><|assistant|>yz</s>"
    assert prompt + completion == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert len(prompt) == 1 and mask is None  # TRL's default (assistant_only_loss=False): every token after the first
    prompt, completion, mask = encode_row({"messages": messages}, tokenizer, "messages", assistant_only_loss=True)
    kept = [token for token, keep in zip(tokenizer.convert_ids_to_tokens(completion), mask) if keep]
    assert kept == ["2", "</s>", "y", "z", "</s>"]  # each reply and its end of turn, not the role headers
    prompt, completion, mask = encode_row({"body": "ab"}, tokenizer, "text", text_field="body")
    assert (prompt, completion, mask) == (tokenizer("a")["input_ids"], tokenizer("b")["input_ids"] + [2], None)


def test_sft_assistant_only_loss_is_the_mean_nll_of_the_assistant_tokens():
    from rewardlab.trainers.sft import batch_loss, encode_row

    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, seed=0, **TINY)
    rows = [encode_row(r, tokenizer, "messages", assistant_only_loss=True) for r in CHATS[:3]]
    loss, count = batch_loss(model, rows, tokenizer.pad_token_id, "cpu")
    total, tokens = 0.0, 0
    with torch.no_grad():
        for prompt, completion, mask in rows:  # unpadded, one row at a time
            ids = torch.tensor([prompt + completion])
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None])[:, 0]
            total -= float((logp[len(prompt) - 1:] * torch.tensor(mask)).sum())
            tokens += sum(mask)
    assert int(count) == tokens == 3 * 2  # the replies "1", "2", "3", each one digit plus </s>
    assert float(loss) == pytest.approx(total / tokens, abs=1e-5)


def test_sft_trains_on_messages_and_text_datasets_and_scores_held_out_conversations_by_loss(tmp_path):
    summary = rewardlab.train("sft", small(tmp_path, "chat", eval_steps=1, assistant_only_loss=True),
                              dataset=datasets.Dataset.from_list(CHATS), eval_dataset=CHATS[:2])
    assert summary["eval_accuracy"] is None and summary["eval_loss"] > 0
    rows = [json.loads(line) for line in open(tmp_path / "chat" / "metrics.jsonl")]
    assert "eval/loss" in rows[0] and rows[-1]["eval/loss"] == summary["eval_loss"]
    text = datasets.Dataset.from_list([{"text": f"{i} plus one is {i + 1}"} for i in range(6)])
    summary = rewardlab.train("sft", small(tmp_path, "text"), dataset=text)
    assert logged_steps(tmp_path, "text") == [1, 2]
    assert summary["eval_accuracy"] is None and summary["eval_data"].startswith("none:")  # no eval_dataset: no held-out
    with pytest.raises(DataError, match="assistant_only_loss applies to conversations"):
        rewardlab.train("sft", small(tmp_path, "text-assistant", assistant_only_loss=True), dataset=text)
    with pytest.raises(DataError, match=r"row 0 of <list: 1 rows, columns body; .*> is in none of the SFT formats"):
        rewardlab.train("sft", small(tmp_path, "none"), dataset=[{"body": "x"}])
