"""TRL's config names in rewardlab: what `load_config` does with a TRL GRPO, DPO, SFT or KTO config file or
`--flag` (docs/from_trl.md has the side-by-side table and the default differences).

    translate(cls, items, source, pending) -> the same settings in rewardlab's names   (each source, before key checks)
    finish(cls, values, pending, given)     -> the settings that need every source first (batch, epochs, warm-up)

Every TRL name is one of:

1. rewardlab's own field, same name and meaning (learning_rate, beta, num_generations, ...). A few take TRL's
   extra forms too (VALUE_FORMS): scale_rewards true/false, epsilon_high null, warmup_steps below 1 (a ratio of
   the steps), max_steps -1 (train for num_train_epochs).
2. an alias (ALIASES): a function from the value to rewardlab settings, e.g. model_name_or_path -> model,
   bf16 -> dtype, importance_sampling_level: sequence -> policy_loss: gspo. Batch sizes, epochs and warm-up
   ratios are settled in `finish`, once every source is read.
3. not supported (UNSUPPORTED): the value rewardlab already behaves as (TRL's default, mostly) is accepted and
   dropped; any other value is a ConfigError that says what to use instead. ANY marks knobs that change speed or
   memory only (dataset_num_proc, padding_free, ...): any value is accepted and has no effect.

Names in none of these (typos, another library's) reach the key check, which names the closest fields.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

from .config_loading import ConfigError, convert

log = logging.getLogger(__name__)

ANY = object()  # UNSUPPORTED: every value is accepted (a speed or memory knob; no effect on what is learned)

# TRL's defaults where they enter a translation (TrainingArguments' per_device_train_batch_size and
# gradient_accumulation_steps; num_train_epochs when max_steps is -1)
TRL_BATCH, TRL_ACCUMULATION, TRL_EPOCHS = 8, 1, 3.0

DEFERRED = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "warmup_ratio")
# aliases whose settings win over the same key given beside them (TRL: eval_strategy "no" ignores eval_steps)
FORCING = ("eval_strategy", "save_strategy")


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _bool(key: str, value: Any) -> bool:
    return convert(value, bool, key, "TRL setting")


# ------------------------------------------------------------------------------------------ aliases
def _lr_scheduler(value: Any, cls: type, items: dict) -> dict:
    kind = convert(value, str, "lr_scheduler_type", "TRL setting")
    mapped = {"linear": "linear", "cosine": "cosine", "constant": "constant", "constant_with_warmup": "constant"}
    if kind not in mapped:
        raise ConfigError(f"lr_scheduler_type={kind!r} has no rewardlab equivalent; lr_scheduler is constant, linear or "
                          "cosine (warmup_steps adds a linear warm-up to each)")
    return {"lr_scheduler": mapped[kind]}


def _report_to(value: Any, cls: type, items: dict) -> dict:
    targets = [value] if isinstance(value, str) or value is None else list(value)
    targets = [str(t).lower() for t in targets if t is not None]
    unknown = [t for t in targets if t not in ("tensorboard", "none", "all")]
    if unknown:
        raise ConfigError(f"report_to={value!r}: rewardlab writes metrics.jsonl and, with tensorboard: true, TensorBoard "
                          "events in the run directory; use report_to: tensorboard (or none)")
    return {"tensorboard": any(t in ("tensorboard", "all") for t in targets)}


def _precision(name: str, dtype: str) -> Callable[[Any, type, dict], dict]:
    def alias(value: Any, cls: type, items: dict) -> dict:
        if _bool(name, value):
            return {"dtype": dtype}
        return {"dtype": "float32"} if name == "bf16" else {}  # bf16: false is TRL's full precision

    return alias


def _gradient_checkpointing(value: Any, cls: type, items: dict) -> dict:
    if _bool("gradient_checkpointing", value):
        raise ConfigError("gradient_checkpointing is not supported; to use less memory lower mini_batch_size (the online "
                          "loop's forward/backward chunk, TRL's per_device_train_batch_size) or batch_size, or set lora_r")
    return {}


def _use_vllm(value: Any, cls: type, items: dict) -> dict:
    """use_vllm: true is engine: vllm (colocated in the training process, TRL's vllm_mode colocate)."""
    return {"engine": "vllm"} if _bool("use_vllm", value) else {}


def _importance_sampling_level(value: Any, cls: type, items: dict) -> dict:
    level = convert(value, str, "importance_sampling_level", "TRL setting")
    own_ratio = items.get("loss_type") in ("cispo", "sapo")  # token-level losses of their own (loss_type picks them)
    if level == "token":
        return {} if own_ratio else {"policy_loss": "ppo_clip"}
    if level == "sequence":
        if own_ratio:
            raise ConfigError(f"importance_sampling_level=sequence with loss_type={items['loss_type']} is not supported: "
                              "rewardlab's cispo and sapo use token ratios")
        return {"policy_loss": "gspo"}
    raise ConfigError(f"importance_sampling_level={level!r}: use token (policy_loss: ppo_clip) or sequence (policy_loss: gspo)")


def _eval_strategy(value: Any, cls: type, items: dict) -> dict:
    strategy = str(value).lower()
    if strategy == "steps":
        return {}  # eval_steps says how often
    if strategy == "no":
        return {"eval_steps": 0}  # held-out evaluation runs at the start and the end only
    raise ConfigError(f"eval_strategy={value!r}: rewardlab evaluates every eval_steps steps (and at the start and the "
                      "end); use eval_strategy: steps with eval_steps, or no")


def _save_strategy(value: Any, cls: type, items: dict) -> dict:
    strategy = str(value).lower()
    if strategy == "steps":
        return {}
    if strategy == "no":
        return {"save_steps": 0}  # only the final model
    raise ConfigError(f"save_strategy={value!r}: rewardlab checkpoints every save_steps steps; use steps or no")


def _log_completions(value: Any, cls: type, items: dict) -> dict:
    return {} if _bool("log_completions", value) else {"num_samples_logged": 0}


def _num_completions_to_print(value: Any, cls: type, items: dict) -> dict:
    return {} if value is None else {"num_samples_logged": value}


def _resume_from_checkpoint(value: Any, cls: type, items: dict) -> dict:
    if value is None or value is False:
        return {}
    if value is True or str(value).lower() == "true":
        return {"resume": True}
    raise ConfigError(f"resume_from_checkpoint={value!r}: rewardlab resumes from the newest intact checkpoint in the run "
                      "directory (output_dir/run_name); set resume: true")


def _optim(value: Any, cls: type, items: dict) -> dict:
    if str(value) in ("adamw_torch", "adamw_torch_fused", "adamw_hf"):
        return {}
    raise ConfigError(f"optim={value!r}: rewardlab trains with torch's AdamW (weight_decay, learning_rate); use adamw_torch")


def _sft_loss_type(value: Any, cls: type, items: dict) -> dict:
    if value == "nll":
        return {}
    raise ConfigError(f"loss_type={value!r}: rewardlab's SFT trains with the negative log-likelihood (TRL's nll); "
                      "Dynamic Fine-Tuning (dft) is not supported")


ALIASES: dict[str, Callable[[Any, type, dict], dict]] = {
    "model_name_or_path": lambda value, cls, items: {"model": value},  # TRL's ModelConfig (trl scripts, YAML)
    "torch_dtype": lambda value, cls, items: {"dtype": value},  # ModelConfig's older name of dtype
    "dataset_name": lambda value, cls, items: {"dataset": value},  # TRL's ScriptArguments
    "overwrite_output_dir": lambda value, cls, items: {"overwrite": value},
    "lr_scheduler_type": _lr_scheduler,
    "report_to": _report_to,
    "bf16": _precision("bf16", "bfloat16"),
    "fp16": _precision("fp16", "float16"),
    "gradient_checkpointing": _gradient_checkpointing,
    "use_vllm": _use_vllm,
    "importance_sampling_level": _importance_sampling_level,
    "eval_strategy": _eval_strategy,
    "save_strategy": _save_strategy,
    "log_completions": _log_completions,
    "num_completions_to_print": _num_completions_to_print,
    "resume_from_checkpoint": _resume_from_checkpoint,
    "optim": _optim,
    "loss_type": _sft_loss_type,  # only where the config has no loss_type of its own (SFT)
    "vllm_importance_sampling_cap": lambda value, cls, items: {"vllm_importance_sampling_clip_max": value},  # TRL's old name
}


# ------------------------------------------------------------------------------------------ value forms
def _scale_rewards(value: Any) -> Any:
    return {True: "group", False: "none"}.get(value, value) if isinstance(value, bool) else value


VALUE_FORMS: dict[str, Callable[[Any], Any]] = {
    "scale_rewards": _scale_rewards,  # TRL: true = group, false = none
    "epsilon_high": lambda value: 0.0 if value is None else value,  # TRL: null = the same as epsilon (rewardlab: 0)
    "vllm_importance_sampling_clip_min": lambda value: 0.0 if value is None else value,  # TRL: null = no lower bound
}


# ------------------------------------------------------------------------------------------ not supported
_VLLM = "rewardlab runs vLLM colocated in the training process (engine: vllm); a vLLM server is not supported"
_REF_SYNC = "the reference is the starting policy throughout (TR-DPO's reference sync is not supported)"
_ENTROPY = "no entropy bonus (an objective can add one: docs/architecture.md, 'An objective')"
UNSUPPORTED: dict[str, tuple[Any, str]] = {
    # model loading
    "model_init_kwargs": (None, "rewardlab loads local model directories or .gguf files; set dtype and device"),
    "trust_remote_code": (False, "models are loaded without remote code"),
    "router_aux_loss_coef": (None, "the MoE auxiliary loss is not supported"),
    "disable_dropout": (ANY, "rewardlab always disables dropout in the policy"),
    "cast_lm_head_to_fp32": (False, "set dtype: float32 to train in full precision"),
    "model_revision": (None, "rewardlab loads local directories: check out the revision there"),
    "attn_implementation": (ANY, "the model's default attention is used"),
    "use_peft": (False, "set lora_r (> 0) for LoRA"),
    "lora_dropout": (ANY, "LoRA is set by lora_r, lora_alpha and lora_target_modules"),
    "load_in_4bit": (False, "quantized training is not supported"),
    "load_in_8bit": (False, "quantized training is not supported"),
    # data
    "dataset_config": (None, "pass a local file (.jsonl/.json/.parquet) or a datasets.Dataset from Python"),
    "dataset_train_split": ("train", "pass the split itself as dataset (a file, or a datasets.Dataset from Python)"),
    "dataset_test_split": ("test", "pass the held-out split itself as eval_dataset"),
    "dataset_num_proc": (ANY, "records are read in one process"),
    "dataloader_num_workers": (ANY, "records are read in one process"),
    "remove_unused_columns": (ANY, "reward functions receive every column but prompt and completion, as in TRL"),
    "shuffle_dataset": (ANY, "rewardlab always draws records in a seeded random order"),
    "pad_to_multiple_of": (ANY, "no padding to a multiple"),
    "padding_free": (ANY, "batches are padded"),
    "truncation_mode": ("keep_start", "rewardlab keeps the start of a sequence (cuts the end)"),
    "chat_template_path": (None, "the tokenizer's chat template is used"),
    "chat_template_kwargs": (None, "the tokenizer's chat template is used as it is"),
    "dataset_kwargs": (None, "not supported"),
    "eos_token": (None, "the tokenizer's EOS token is used"),
    "pad_token": (None, "the tokenizer's pad token is used (EOS when it has none)"),
    "packing": (False, "packing is not supported"),
    "packing_strategy": (ANY, "packing is not supported"),
    "eval_packing": (None, "packing is not supported"),
    "completion_only_loss": (None, "rewardlab trains on the completion of prompt/completion rows (TRL's true)"),
    # generation
    "num_generations_eval": (None, "held-out evaluation decodes one greedy completion per prompt"),
    "generation_batch_size": (None, "one generation batch per optimizer step: batch_size completions"),
    "steps_per_generation": (None, "a rollout is trained on as one batch; num_iterations passes over it reuse it"),
    "min_p": (None, "use top_p or top_k"),
    "generation_kwargs": (None, "set temperature, top_p and top_k"),
    "repetition_penalty": (1.0, "not supported"),
    "cache_implementation": (ANY, "the engine manages its own cache"),
    "ds3_gather_for_generation": (ANY, "DeepSpeed is not supported"),
    "use_transformers_continuous_batching": (False, "not supported"),
    "transformers_continuous_batching_config": (None, "not supported"),
    "use_transformers_paged": (False, "not supported"),
    "max_tool_calling_iterations": (None, "tool calls are not supported; multi-turn text environments: env"),
    "vllm_mode": ("colocate", _VLLM), "vllm_model_impl": ("vllm", _VLLM), "vllm_enable_sleep_mode": (False, _VLLM),
    "vllm_structured_outputs_regex": (None, _VLLM), "vllm_server_base_url": (None, _VLLM),
    "vllm_server_host": ("0.0.0.0", _VLLM), "vllm_server_port": (8000, _VLLM), "vllm_server_timeout": (240.0, _VLLM),
    "vllm_group_port": (51216, _VLLM), "vllm_max_model_length": (None, _VLLM),
    "vllm_tensor_parallel_size": (1, _VLLM),
    # the GRPO loss
    "delta": (None, "two-sided clipping (INTELLECT-2) is not supported"),
    "vespo_k_pos": (2.0, "VESPO is not supported"), "vespo_lambda_pos": (3.0, "VESPO is not supported"),
    "vespo_k_neg": (3.0, "VESPO is not supported"), "vespo_lambda_neg": (2.0, "VESPO is not supported"),
    "multi_objective_aggregation": ("sum_then_normalize", "rewardlab sums the weighted rewards, then normalises (TRL's default)"),
    "sync_ref_model": (False, _REF_SYNC), "ref_model_mixup_alpha": (ANY, _REF_SYNC), "ref_model_sync_steps": (ANY, _REF_SYNC),
    "top_entropy_quantile": (1.0, "every token is in the loss (the entropy mask is not supported)"),
    "entropy_coef": (0.0, _ENTROPY), "use_adaptive_entropy": (False, _ENTROPY), "entropy_coef_min": (ANY, _ENTROPY),
    "entropy_coef_max": (ANY, _ENTROPY), "entropy_coef_delta": (ANY, _ENTROPY), "entropy_target": (ANY, _ENTROPY),
    "off_policy_mask_threshold": (None, "off-policy sequence masking is not supported"),
    "use_bias_correction_kl": (ANY, "the KL estimate is not reweighted by the importance ratio (the same at num_iterations 1)"),
    # the DPO family
    "precompute_ref_batch_size": (ANY, "the reference pass uses batch_size"),
    "ld_alpha": (None, "LD-DPO is not supported"),
    "f_divergence_type": ("reverse_kl", "only DPO's reverse KL is supported"),
    "f_alpha_divergence_coef": (ANY, "only DPO's reverse KL is supported"),
    "use_weighting": (False, "WPO weighting is not supported"),
    "discopop_tau": (ANY, "DiscoPOP is not supported"),
    "activation_offloading": (ANY, "not supported (memory only)"),
    # logging, saving, hardware
    "log_multimodal": (ANY, "text only"),
    "log_unique_prompts": (False, "samples.jsonl holds num_samples_logged completions every logging_steps"),
    "log_completions_hub_repo": (None, "nothing is pushed to the Hub"),
    "logging_strategy": ("steps", "metrics.jsonl gets every step; logging_steps sets the progress line and samples"),
    "logging_dir": (ANY, "TensorBoard events go into the run directory"),
    "logging_first_step": (ANY, "metrics.jsonl gets every step"),
    "per_device_eval_batch_size": (ANY, "evaluation batches its prompts itself"),
    "push_to_hub": (False, "nothing is pushed to the Hub; the model is in the run directory's final/"),
    "hub_model_id": (None, "nothing is pushed to the Hub"),
    "use_liger_kernel": (False, "not supported"),
    "torch_compile": (False, "not supported"),
    "tf32": (ANY, "set by torch's defaults"),
    "gradient_checkpointing_kwargs": (ANY, "gradient checkpointing is not supported"),
    "lr_scheduler_kwargs": (None, "lr_scheduler takes no options"),
    "adam_beta1": (0.9, "AdamW's betas are torch's defaults (0.9, 0.999)"),
    "adam_beta2": (0.999, "AdamW's betas are torch's defaults (0.9, 0.999)"),
    "adam_epsilon": (1e-8, "AdamW's eps is torch's default (1e-8)"),
    "do_train": (ANY, "rewardlab train always trains"),
    "do_eval": (ANY, "held-out evaluation runs at the start and the end (and every eval_steps)"),
    "ddp_find_unused_parameters": (ANY, "multi-process runs use torchrun (docs/architecture.md)"),
}


# ------------------------------------------------------------------------------------------ applying it
def translate(cls: type, items: dict[str, Any], source: str, pending: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    """One source's settings (flat keys, sections already resolved) in rewardlab's names. Batch sizes, epochs and
    warm-up ratios go to `pending` for `finish`."""
    fields = _fields(cls)
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}  # rewardlab key -> the TRL key it came from (to name both in a conflict)
    forced: dict[str, Any] = {}

    def put(key: str, value: Any, from_key: str) -> None:
        if key in out and out[key] != value:
            raise ConfigError(f"{source}: {from_key} sets {key}={value!r}, but {origin[key]} sets {key}={out[key]!r}; keep one")
        out[key], origin[key] = value, from_key

    for key, value in items.items():
        if not isinstance(key, str):
            out[key] = value  # the key check names it
            continue
        if key in fields:
            if key in VALUE_FORMS:
                value = VALUE_FORMS[key](value)
            if key == "warmup_steps" and isinstance(value, float) and 0 < value < 1:  # TRL: a ratio of the steps
                pending["warmup_ratio"] = (value, f"{source}: warmup_steps={value}")
                continue
            if key == "max_steps" and isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                pending.setdefault("num_train_epochs", (TRL_EPOCHS, f"{source}: max_steps={value} (TRL: train for "
                                                                     f"num_train_epochs, {TRL_EPOCHS:g} by default)"))
                continue  # TRL: max_steps -1 trains for num_train_epochs
            put(key, value, key)
        elif key in DEFERRED:
            pending[key] = (value, source)
        elif key in ALIASES:
            try:
                mapped = ALIASES[key](value, cls, items)
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None
            for name, mapped_value in mapped.items():
                if key in FORCING:
                    forced[name] = mapped_value
                else:
                    put(name, mapped_value, key)
        elif key in UNSUPPORTED:
            accepted, hint = UNSUPPORTED[key]
            if accepted is not ANY and value != accepted:
                raise ConfigError(f"{source}: {key}={value!r} is a TRL setting rewardlab does not support: {hint} "
                                  "(docs/from_trl.md)")
        else:
            out[key] = value  # the key check names it (and the closest fields)
    return {**out, **forced}


def finish(cls: type, values: dict[str, Any], pending: dict[str, tuple[Any, str]], given: set[str]) -> None:
    """Settle what needs every source: batch_size (and mini_batch_size) from per_device_train_batch_size x
    gradient_accumulation_steps, max_steps from num_train_epochs, warmup_steps from warmup_ratio. Updates
    `values` and `given` in place."""
    if not pending:
        return
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    current = lambda name: values.get(name, defaults.get(name))  # noqa: E731
    if "per_device_train_batch_size" in pending or "gradient_accumulation_steps" in pending:
        per_device = convert(pending.get("per_device_train_batch_size", (TRL_BATCH, ""))[0], int, "per_device_train_batch_size", "TRL setting")
        steps = convert(pending.get("gradient_accumulation_steps", (TRL_ACCUMULATION, ""))[0], int, "gradient_accumulation_steps", "TRL setting")
        if per_device < 1 or steps < 1:
            raise ConfigError(f"per_device_train_batch_size ({per_device}) and gradient_accumulation_steps ({steps}) must be >= 1")
        if given & {"batch_size", "mini_batch_size"}:
            raise ConfigError("set batch_size (and mini_batch_size) or TRL's per_device_train_batch_size and "
                              "gradient_accumulation_steps, not both: batch_size = per_device_train_batch_size x "
                              "gradient_accumulation_steps")
        values["batch_size"] = per_device * steps  # completions (GRPO) or rows per optimizer step, in one process
        given.add("batch_size")
        if "mini_batch_size" in defaults:  # the online loop: a forward/backward pass per TRL device batch
            values["mini_batch_size"] = per_device if steps > 1 else 0
            given.add("mini_batch_size")
    if "num_train_epochs" in pending:
        epochs_value, where = pending["num_train_epochs"]
        epochs = convert(epochs_value, float, "num_train_epochs", "TRL setting")
        if "max_steps" in given:  # TRL: a positive max_steps wins over num_train_epochs
            log.warning("%s: num_train_epochs is not used: max_steps=%s is set (as in TRL, max_steps wins)", where,
                        values["max_steps"])
        else:
            values["max_steps"] = _steps_for_epochs(epochs, current, where)
            given.add("max_steps")
    if "warmup_ratio" in pending:
        ratio = convert(pending["warmup_ratio"][0], float, "warmup_ratio", "TRL setting")
        if not 0 <= ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {ratio}")
        if "warmup_steps" in given:
            raise ConfigError("set warmup_steps or TRL's warmup_ratio, not both")
        values["warmup_steps"] = math.ceil(ratio * current("max_steps"))  # transformers' rounding
        given.add("warmup_steps")


def _steps_for_epochs(epochs: float, current: Callable[[str], Any], where: str) -> int:
    """Optimizer steps for `epochs` passes over the dataset: ceil(epochs x rows / rows per step), where a step
    takes batch_size / num_generations prompts (GRPO) or batch_size rows."""
    dataset = current("dataset")
    if not dataset:
        raise ConfigError(f"{where}: num_train_epochs (TRL) needs a dataset (the built-in task generates problems "
                          "without end); set max_steps")
    from .data import DataError, load_records

    try:
        rows = len(load_records(dataset))
    except (DataError, OSError) as err:
        raise ConfigError(f"{where}: cannot count the dataset's rows for num_train_epochs ({err}); set max_steps") from None
    generations = current("num_generations")
    per_step = current("batch_size") // generations if generations else current("batch_size")
    return max(1, math.ceil(epochs * rows / max(1, per_step)))
