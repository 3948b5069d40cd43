"""Supervised fine-tuning in TRL's three dataset formats (the cold start before RL):

    prompt-completion  {"prompt", "completion"}  next-token loss on the completion tokens only
    conversational LM  {"messages": [...]}        loss on every token of the rendered conversation, or with
                                                  assistant_only_loss on the assistant turns only
    language modelling {"text": "..."}            loss on every token (dataset_text_field names the column)

A row is held as (prompt ids, completion ids, loss mask): the prompt is left-padded, the completion
right-padded, and the loss is the mean over the completion tokens the mask keeps. A prompt-completion row
has no mask (all its completion tokens count); a text or conversation row has its first token as the
"prompt", since the first token has nothing before it to be predicted from.
"""

from __future__ import annotations

import time
from functools import partial

import torch

from ..config import SFTConfig
from ..data import DataError, validate_sft_records
from ..data.chat import render_conversation
from ..data.collate import left_pad, right_pad
from ..models import token_logprobs
from ..models.loading import load_tokenizer
from ..monitor import progress
from .evaluate import evaluate_accuracy
from .inputs import (
    NO_EVAL_DATA,
    encode_completion,
    encode_prompt,
    eval_records,
    eval_source,
    train_records,
    verifier,
)
from .lifecycle import finish_run, grad_step, managed_run, start_run

Row = tuple[list[int], list[int], "list[int] | None"]


def encode_conversation(messages: list[dict], tok, assistant_only_loss: bool) -> tuple[list[int], list[int] | None]:
    """Token ids of a rendered conversation and, with assistant_only_loss, a mask that is 1 on the tokens
    that start inside an assistant turn (data/chat.py render_conversation gives the turns' spans)."""
    if not assistant_only_loss:
        from ..data.chat import _render, _require_template

        _require_template(tok, "conversation")
        return tok(_render(tok, list(messages), add_generation_prompt=False), add_special_tokens=False)["input_ids"], None
    text, spans = render_conversation(messages, tok)
    try:
        encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise DataError("assistant_only_loss needs a fast tokenizer (one that reports character offsets)") from None
    mask = [int(any(a <= start < b for a, b in spans)) for start, _ in encoded["offset_mapping"]]
    return encoded["input_ids"], mask


def encode_row(record: dict, tok, kind: str, text_field: str = "text", assistant_only_loss: bool = False) -> Row:
    """One record of the given format (validate_sft_records) as (prompt ids, completion ids, loss mask)."""
    if kind == "prompt_completion":
        return encode_prompt(record["prompt"], tok)[0], encode_completion(record, tok), None
    if kind == "text":  # the tokenizer's own special tokens (a BOS), then EOS, as TRL does
        ids, mask = tok(record[text_field])["input_ids"], None
        if not ids or ids[-1] != tok.eos_token_id:
            ids = ids + [tok.eos_token_id]
    else:
        ids, mask = encode_conversation(record["messages"], tok, assistant_only_loss)
    if len(ids) < 2:
        raise DataError(f"the {'text' if kind == 'text' else 'conversation'} encodes to {len(ids)} token(s); a row "
                        "needs two or more (the first is only read, the rest are learned)")
    if mask is not None and not any(mask[1:]):
        raise DataError("no assistant token after the first token; nothing to train on with assistant_only_loss")
    return ids[:1], ids[1:], None if mask is None else mask[1:]


def encode_rows(records: list[dict], tok, max_length: int, source: str, kind: str = "prompt_completion",
                text_field: str = "text", assistant_only_loss: bool = False) -> list[Row]:
    """Every row's (prompt ids, completion ids, loss mask), once, before training: a row over max_length is an
    error naming its source and index, instead of a failure at whichever step first samples it."""
    encoded = []
    for index, record in enumerate(records):
        try:
            prompt, completion, mask = encode_row(record, tok, kind, text_field, assistant_only_loss)
        except DataError as err:
            raise DataError(f"{source}, row {index}: {err}") from None
        if len(prompt) + len(completion) > max_length:
            what = "prompt + completion" if kind == "prompt_completion" else "the sequence"
            raise DataError(
                f"{source}, row {index}: {what} is {len(prompt) + len(completion)} tokens, over "
                f"max_length={max_length}; raise max_length or shorten or drop the row"
            )
        encoded.append((prompt, completion, mask))
    return encoded


def batch_loss(model, rows: list[Row], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean next-token loss over the kept completion tokens, their count) of a batch of encoded rows."""
    prompt_ids, prompt_mask = left_pad([p for p, _, _ in rows], pad_id)
    completion_ids, completion_mask = right_pad([c for _, c, _ in rows], pad_id)
    input_ids = torch.cat([prompt_ids, completion_ids], 1).to(device)
    attention = torch.cat([prompt_mask, completion_mask], 1).to(device)
    if all(m is None for _, _, m in rows):
        loss_mask = completion_mask.to(device)
    else:
        loss_mask = right_pad([[1] * len(c) if m is None else m for _, c, m in rows], 0)[0].to(device)
    logp, _ = token_logprobs(model, input_ids, attention, completion_ids.shape[1])
    return -(logp * loss_mask).sum() / loss_mask.sum(), loss_mask.sum()


@torch.no_grad()
def evaluate_loss(model, rows: list[Row], pad_id: int, batch_size: int) -> float:
    """Mean next-token loss over every kept token of the held-out rows (TRL's eval_loss)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0.0
    for start in range(0, len(rows), batch_size):
        loss, count = batch_loss(model, rows[start : start + batch_size], pad_id, device)
        total, tokens = total + float(loss) * float(count), tokens + float(count)
    model.train(was_training)
    return total / max(tokens, 1.0)


@managed_run
def train_sft(cfg: SFTConfig) -> dict:
    n_records = cfg.num_train_samples or cfg.max_steps * cfg.batch_size
    check = partial(validate_sft_records, text_field=cfg.dataset_text_field, assistant_only_loss=cfg.assistant_only_loss)
    kinds: dict[str, str] = {}
    # checked before writing anything: the rows, their encoding, the held-out rows
    records = train_records(cfg, n_records, validate=lambda rows, source: kinds.setdefault("train", check(rows, source)))
    tokenizer = load_tokenizer(cfg.model)
    options = (cfg.dataset_text_field, cfg.assistant_only_loss)
    kind = kinds.get("train", "prompt_completion")  # a text environment's demonstrations are prompt/completion rows
    encoded = encode_rows(records, tokenizer, cfg.max_length, str(cfg.dataset) or f"task {cfg.task}", kind, *options)
    # the user's eval_dataset, the task's split when the user gave no data; a dataset without eval_dataset: nothing
    held_out = eval_records(cfg, validate=lambda rows, source: kinds.setdefault("eval", check(rows, source))) \
        if eval_source(cfg) else []
    # held-out text or conversations have no prompt to answer: they are scored by their loss (TRL's eval_loss)
    eval_rows = None
    if kinds.get("eval", "prompt_completion") != "prompt_completion":
        eval_rows = encode_rows(held_out, tokenizer, cfg.max_length, str(cfg.eval_dataset), kinds["eval"], *options)
    ctx = start_run(cfg)
    model, tok = ctx.model, ctx.tokenizer
    device = next(model.parameters()).device
    # A seeded permutation per epoch: the data position is a pure function of the step, so resume is exact.
    order_gen = torch.Generator().manual_seed(cfg.seed)
    epochs = -(-cfg.max_steps * cfg.batch_size // len(records))
    order = torch.cat([torch.randperm(len(records), generator=order_gen) for _ in range(epochs)]).tolist()
    verify = verifier(cfg)

    def evaluate() -> dict:
        if eval_rows is not None:
            return {"eval/loss": evaluate_loss(model, eval_rows, tok.pad_token_id, cfg.batch_size)}
        return {"eval/accuracy": evaluate_accuracy(model, tok, held_out, verify, cfg.max_new_tokens)[0]}

    t_start, bar = time.time(), progress(cfg.max_steps, "sft")
    bar.update(ctx.start_step)
    for step in range(ctx.start_step, cfg.max_steps):
        batch = [encoded[i] for i in order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
        loss, _ = batch_loss(model, batch, tok.pad_token_id, device)
        loss.backward()
        metrics = {"loss": loss.item(), "grad_norm": grad_step(ctx, cfg.max_grad_norm), "lr": ctx.scheduler.get_last_lr()[0]}
        done = step + 1
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            metrics.update(evaluate())
        ctx.logger.log(done, metrics)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        ctx.end_step(done, cfg)
    bar.close()
    train_time = time.time() - t_start

    if eval_rows is not None:
        rows, final = [], {"eval_accuracy": None, "eval_loss": evaluate()["eval/loss"]}
    else:
        accuracy, rows = evaluate_accuracy(model, tok, held_out, verify, cfg.max_new_tokens)
        final = {"eval_accuracy": accuracy}
    summary = {"method": "sft", "steps": cfg.max_steps, **final, "eval_data": eval_source(cfg) or NO_EVAL_DATA,
               "train_time_s": train_time}
    extra = {"eval/loss": final["eval_loss"]} if eval_rows is not None else None
    return finish_run(ctx, cfg.max_steps, rows, summary, extra)
