import json

import pytest

from rewardlab.data import (
    DataError,
    columns,
    load_records,
    render_completion,
    render_prompt,
    validate_preference_records,
    validate_prompt_records,
    validate_unpaired_records,
)

ROWS = [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+3=", "answer": "5"}]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


@pytest.fixture
def tokenizer():
    """A one-word vocabulary is enough: only the Jinja chat template is exercised."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tok.chat_template = CHAT_TEMPLATE
    return tok


# ------------------------------------------------------------------------------------------ load_records


def test_load_jsonl_json_parquet_list_and_dataset(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n")
    as_json = tmp_path / "data.json"
    as_json.write_text(json.dumps(ROWS))
    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet)

    assert load_records(jsonl) == ROWS
    assert load_records(str(as_json)) == ROWS
    assert load_records(parquet) == ROWS
    assert load_records(datasets.Dataset.from_list(ROWS)) == ROWS
    copied = load_records(ROWS)
    assert copied == ROWS and copied[0] is not ROWS[0]


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=f"data file {missing} does not exist"):
        load_records(missing)


def test_bad_json_line_names_file_line_and_parser_message(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b",}\n')
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON \(Expecting property name") as info:
        load_records(path)
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


def test_non_object_lines_and_items(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "a"}\n["prompt", "b"]\n')
    with pytest.raises(DataError, match=rf"{path}:2: the line is a JSON array, not an object"):
        load_records(path)
    as_json = tmp_path / "data.json"
    as_json.write_text('[{"prompt": "a"}, "b"]')
    with pytest.raises(DataError, match="item 1 of .* is a JSON string, not an object"):
        load_records(as_json)
    as_json.write_text('{"prompt": "a"}')
    with pytest.raises(DataError, match="must hold a list of records"):
        load_records(as_json)
    with pytest.raises(DataError, match="item 1 of the record list is a str"):
        load_records([{"prompt": "a"}, "b"])


def test_unsupported_source(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("prompt\na\n")
    with pytest.raises(DataError, match=r"unsupported suffix '\.csv'; use one of \.jsonl, \.json, \.parquet"):
        load_records(path)
    with pytest.raises(DataError, match="cannot load records from a int"):
        load_records(3)


def test_dataset_dict_asks_for_a_split():
    import datasets

    with pytest.raises(DataError, match=r"splits train.*dataset\['train'\]"):
        load_records(datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}))


# ------------------------------------------------------------------------------------- prompt records


def test_valid_prompt_records_pass():
    validate_prompt_records(ROWS, required=("prompt", "answer"), source="data.jsonl")
    validate_prompt_records([{"prompt": [{"role": "system", "content": "be brief"}, user("hi")]}])


def test_missing_field_names_row_field_reason_and_fix():
    rows = [dict(r) for r in ROWS] + [{"prompt": "3+4="}]
    with pytest.raises(DataError) as info:
        validate_prompt_records(
            rows, required=("prompt", "answer"), source="data.jsonl",
            reasons={"answer": "the reward function math"},
        )
    message = str(info.value)
    assert message.startswith("row 2 of data.jsonl has no 'answer' field; the reward function math needs it.")
    assert "Fields present: 'prompt'" in message and "Give every row a 'answer' value" in message


def test_null_field_is_reported_as_null():
    with pytest.raises(DataError, match="row 0 of d has 'answer' = null"):
        validate_prompt_records([{"prompt": "x", "answer": None}], required=("answer",), source="d")


@pytest.mark.parametrize(
    "prompt, match",
    [
        ("   ", r"row 1 of d: 'prompt' is an empty string"),
        ([], r"row 1 of d: 'prompt' is an empty list"),
        (42, r"row 1 of d: 'prompt' is a int; it must be a string or a list of chat messages"),
        (["hi"], r"row 1 of d: prompt\[0\] is a str; each message must be a dict"),
        ([user("a"), {"role": "bot", "content": "b"}], r"row 1 of d: prompt\[1\] has role 'bot'; use one of system, user, assistant, tool"),
        ([{"role": "user", "content": None}], r"row 1 of d: prompt\[0\] has NoneType content; message content must be a string"),
    ],
)
def test_bad_prompts_name_row_and_field(prompt, match):
    with pytest.raises(DataError, match=match):
        validate_prompt_records([{"prompt": "ok"}, {"prompt": prompt}], source="d")


def test_empty_and_non_dict_records():
    with pytest.raises(DataError, match="d has no records"):
        validate_prompt_records([], source="d")
    with pytest.raises(DataError, match="row 1 of d is a list, not a dict"):
        validate_prompt_records([{"prompt": "a"}, ["b"]], source="d")


# --------------------------------------------------------------------------------- preference records


def test_valid_preference_records_pass():
    validate_preference_records([{"prompt": "q", "chosen": "good", "rejected": "bad"}], source="p")
    validate_preference_records(
        [{"prompt": [user("q")], "chosen": [assistant("good")], "rejected": [assistant("bad")]}], source="p"
    )
    # implicit prompt: the conversation lives in chosen/rejected
    validate_preference_records(
        [{"chosen": [user("q"), assistant("good")], "rejected": [user("q"), assistant("bad")]}], source="p"
    )


@pytest.mark.parametrize(
    "record, match",
    [
        ({"prompt": "q", "chosen": "good"}, r"row 0 of p has no 'rejected' field"),
        ({"chosen": "good", "rejected": "bad"}, r"row 0 of p has no 'prompt' field; text-form"),
        ({"prompt": "q", "chosen": "good", "rejected": [assistant("bad")]}, r"'chosen' is text but 'rejected' is chat"),
        ({"prompt": [user("q")], "chosen": "a", "rejected": "b"}, r"'prompt' is a chat but 'chosen'/'rejected' are strings"),
        ({"prompt": "q", "chosen": [assistant("a")], "rejected": [assistant("b")]}, r"'prompt' is a string but"),
        ({"prompt": [user("q")], "chosen": [assistant("a"), user("?")], "rejected": [assistant("b")]},
         r"the last message of 'chosen' has role 'user'"),
        ({"chosen": [assistant("a")], "rejected": [assistant("b")]}, r"has no 'prompt' and 'chosen' holds only assistant"),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, r"'chosen' is an empty string"),
    ],
)
def test_bad_preference_records(record, match):
    with pytest.raises(DataError, match=match):
        validate_preference_records([record], source="p")


# ----------------------------------------------------------------------------------- unpaired records


def test_unpaired_records():
    validate_unpaired_records([{"prompt": "q", "completion": "a", "label": True}], source="u")
    validate_unpaired_records([{"prompt": [user("q")], "completion": [assistant("a")], "label": False}], source="u")
    with pytest.raises(DataError, match=r"row 0 of u: 'label' is 1 \(int\); it must be true"):
        validate_unpaired_records([{"prompt": "q", "completion": "a", "label": 1}], source="u")
    with pytest.raises(DataError, match=r"row 0 of u: 'label' is None"):
        validate_unpaired_records([{"prompt": "q", "completion": "a", "label": None}], source="u")
    with pytest.raises(DataError, match=r"row 0 of u has no 'completion' field"):
        validate_unpaired_records([{"prompt": "q", "label": True}], source="u")
    with pytest.raises(DataError, match=r"'prompt' is text but 'completion' is chat"):
        validate_unpaired_records([{"prompt": "q", "completion": [assistant("a")], "label": True}], source="u")


# ---------------------------------------------------------------------------------------------- columns


def test_columns_excludes_prompt_and_fills_missing_with_none():
    rows = [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2", "level": 3}]
    assert columns(rows) == {"answer": ["1", "2"], "level": [None, 3]}
    assert columns(rows, exclude=("prompt", "level")) == {"answer": ["1", "2"]}
    assert columns([]) == {}


# ------------------------------------------------------------------------------------------------- chat


def test_render_prompt(tokenizer):
    assert render_prompt("plain text", tokenizer) == "plain text"
    assert render_prompt([user("hi")], tokenizer) == "<|user|>hi<|end|><|assistant|>"


def test_render_prompt_without_template_says_so(tokenizer):
    tokenizer.chat_template = None
    assert render_prompt("still fine", tokenizer) == "still fine"
    with pytest.raises(DataError, match="has no chat_template, so a chat-format prompt cannot be rendered"):
        render_prompt([user("hi")], tokenizer)
    with pytest.raises(DataError, match="has no chat_template"):
        render_prompt([user("hi")], object())


def test_render_completion(tokenizer):
    assert render_completion("as is", tokenizer) == "as is"
    assert render_completion([assistant("4")], tokenizer, prompt=[user("2+2?")]) == "4<|end|>"
    # implicit prompt: split before the trailing assistant messages
    assert render_completion([user("2+2?"), assistant("4")], tokenizer) == "4<|end|>"
    # prompt rendering + completion rendering == rendering of the whole conversation
    prompt, completion = [user("2+2?")], [assistant("4")]
    whole = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    assert render_prompt(prompt, tokenizer) + render_completion(completion, tokenizer, prompt=prompt) == whole


def test_render_completion_prefix_mismatch(tokenizer):
    # A template whose generation prompt is not how it renders a past assistant turn.
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[model]{% endif %}"
    )
    # "[user]q[" is shared; character 8 is "m" (model) vs "a" (assistant)
    with pytest.raises(DataError, match=r"does not render the prompt as a prefix.*differ at character 8: "
                       r"prompt renders 'model\]', conversation renders 'assistant\]4'"):
        render_completion([assistant("4")], tokenizer, prompt=[user("q")])


def test_render_completion_needs_a_prompt(tokenizer):
    with pytest.raises(DataError, match="pass prompt= explicitly"):
        render_completion([assistant("4")], tokenizer)
    with pytest.raises(DataError, match="string prompt with a chat completion"):
        render_completion([assistant("4")], tokenizer, prompt="q")
