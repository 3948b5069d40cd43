"""The generation engines the online loop can use (`engine` in the config), behind the Engine protocol
(rollout/types.py): `generate(prompts, n, params) -> Rollout` and `sync(model)` after each optimizer step.

    ENGINES[name](model, tokenizer, cfg) -> Engine

hf is rewardlab's engine over the in-process transformers model (rollout/hf_engine.py): it shares the
trainer's model object, so sync has nothing to do. vllm (rollout/vllm_engine.py, the optional extra
rewardlab[vllm]) holds its own copy of the weights, which sync overwrites after every optimizer step. Adding an engine (vLLM, a remote server) is one entry here
and one test; the driver calls only the protocol. docs/architecture.md#adding-to-the-loop has a worked example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry
from .hf_engine import HFEngine
from .types import Engine

ENGINES: Registry[Callable[[Any, Any, Any], Engine]] = Registry("generation engine")
ENGINES.add("hf", lambda model, tokenizer, cfg: HFEngine(model, tokenizer))


def _vllm(model, tokenizer, cfg) -> Engine:
    from .vllm_engine import VLLMEngine  # vLLM is an optional extra: imported only when asked for

    return VLLMEngine(model, tokenizer, cfg)


ENGINES.add("vllm", _vllm)
