"""Process reward models (PRMs): a score for every step of a completion, and those scores as a reward.

    train_prm(cfg)                       step-labelled completions -> a token-classification model whose two
                                         logits at the last token of each step say wrong / right
    ProcessRewardFunction(path, agg)     a reward function (TRL's calling convention) for the online loop:
                                         P(step right) of each step, aggregated by min, last or mean

Training rows are TRL's stepwise-supervision records, {"prompt", "completions": [step, ...], "labels":
[bool, ...]}: from a dataset, or built from a task with a step verifier (the `chain` task): its
demonstrations, or a policy's own samples (policy_samples), each step labelled by whether it is still on a
path to the answer. A row is the prompt's tokens, then each step followed by step_separator; the label sits
on the separator's last token (as TRL's PRM trainer placed it). The saved model is a stock
`AutoModelForTokenClassification` directory plus rewardlab_prm.json naming the separator.
docs/algorithms.md#process-reward-models has the formulas and worked numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..config import ConfigError, PRMConfig
from ..data import DataError, load_records
from ..data.collate import right_pad
from ..models import load_policy, load_process_reward_model, token_logits
from ..monitor import format_table, progress
from ..rollout import SamplingParams
from .inputs import encode_prompt, task_of
from .lifecycle import finish_run, grad_step, managed_run, start_run

PRM_FILE = "rewardlab_prm.json"
AGGREGATIONS = ("min", "last", "mean")


def encode_steps(prompt, steps: list[str], tokenizer, separator: str, max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(token ids of prompt + each step + separator, the position of each step's last separator token)."""
    ids, positions = list(encode_prompt(prompt, tokenizer)[0]), []
    for step in steps:
        ids += tokenizer(step + separator, add_special_tokens=False)["input_ids"]
        positions.append(len(ids) - 1)
    if max_length and len(ids) > max_length:
        raise DataError(f"prompt + {len(steps)} steps is {len(ids)} tokens, over max_length={max_length}; raise "
                        "max_length or drop the row")
    return ids, positions


def aggregate(step_scores: list[float], how: str) -> float:
    """One reward from a completion's step scores: min (the weakest step), last, or mean; 0.0 with no step."""
    if not step_scores:
        return 0.0
    if how == "min":
        return min(step_scores)
    if how == "last":
        return step_scores[-1]
    return sum(step_scores) / len(step_scores)


def validate_stepwise(records: list[dict], source: str) -> None:
    for i, r in enumerate(records):
        where = f"{source}, row {i}"
        if not isinstance(r, dict) or "prompt" not in r or "completions" not in r or "labels" not in r:
            raise DataError(f"{where}: a process-reward row needs prompt, completions (a list of steps) and labels "
                            f"(one bool per step); got {sorted(r) if isinstance(r, dict) else type(r).__name__}")
        steps, labels = r["completions"], r["labels"]
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise DataError(f"{where}: completions must be a non-empty list of step strings")
        if not isinstance(labels, list) or len(labels) != len(steps) or not all(isinstance(x, bool) for x in labels):
            raise DataError(f"{where}: labels must be a list of {len(steps)} bools, one per step; got {labels!r}")


@torch.no_grad()
def policy_sample_rows(policy_dir: str, records: list[dict], task, cfg: PRMConfig) -> list[dict]:
    """A policy's own samples of `records`' prompts, num_generations each, labelled step by step by the task."""
    from .rejection import sample_scored

    with torch.random.fork_rng(devices=[]):
        policy, tok = load_policy(policy_dir, dtype=cfg.dtype, device=cfg.device, seed=cfg.seed)
        samples = sample_scored(policy, tok, records, cfg.num_generations, SamplingParams(cfg.max_new_tokens, cfg.temperature))
    rows = []
    for p, record in enumerate(records):
        for i in samples.group(p):
            steps, labels = task.step_labels(record, samples.texts[i])
            if steps:
                rows.append({"prompt": record["prompt"], "completions": steps, "labels": labels})
    return rows


def stepwise_rows(cfg: PRMConfig, split: str, n: int, seed: int) -> tuple[list[dict], str]:
    """(stepwise records, where they came from) for training (split "train") or evaluation."""
    path = cfg.dataset if split == "train" else cfg.eval_dataset
    if path:
        rows = load_records(path)[: n if split != "train" else None]
        validate_stepwise(rows, str(path))
        return rows, str(path)
    if cfg.dataset and split != "train":
        return [], ""
    task = task_of(cfg)
    if not hasattr(task, "step_labels"):
        raise ConfigError(f"task {cfg.task!r} has no step verifier; use task=chain, or give dataset= stepwise records "
                          "({prompt, completions: [steps], labels: [bools]})")
    if cfg.policy_samples:
        prompts = task.generate(max(1, -(-n // cfg.num_generations)), seed=seed, split=split)
        return policy_sample_rows(cfg.policy_samples, prompts, task, cfg)[:n], f"task {cfg.task} ({split} split), samples of {cfg.policy_samples}"
    rows = []
    for record in task.generate(n, seed=seed, split=split):
        steps, labels = task.step_labels(record, record["completion"])
        rows.append({"prompt": record["prompt"], "completions": steps, "labels": labels})
    return rows, f"task {cfg.task} ({split} split), demonstrations"


def encode_rows(rows: list[dict], tokenizer, separator: str, max_length: int, source: str) -> list[tuple[list[int], list[int], list[int]]]:
    encoded = []
    for i, row in enumerate(rows):
        try:
            ids, positions = encode_steps(row["prompt"], row["completions"], tokenizer, separator, max_length)
        except DataError as err:
            raise DataError(f"{source}, row {i}: {err}") from None
        encoded.append((ids, positions, [int(x) for x in row["labels"]]))
    return encoded


def batch_tensors(batch, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, labels [B, T] with -100 off the step ends), right-padded."""
    ids, attention = right_pad([b[0] for b in batch], pad_id)
    labels = torch.full_like(ids, -100)
    for row, (_, positions, values) in enumerate(batch):
        labels[row, positions] = torch.tensor(values)
    return ids.to(device), attention.to(device), labels.to(device)


def step_loss(model, batch, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean cross-entropy over the labelled step ends, P(right) at them, their labels)."""
    ids, attention, labels = batch_tensors(batch, pad_id, device)
    logits = token_logits(model, ids, attention)
    where = labels != -100
    loss = torch.nn.functional.cross_entropy(logits[where], labels[where])
    return loss, logits[where].softmax(-1)[:, 1].detach(), labels[where]


@torch.no_grad()
def step_accuracy(model, encoded, pad_id: int, batch_size: int) -> dict[str, float]:
    """Agreement of the PRM (P(right) > 0.5) with the step labels: over all steps, on the right and the wrong
    steps apart (a PRM that says "right" everywhere scores its base rate overall and 0 on wrong steps), and the
    share of completions whose first wrong step is the first step the PRM rejects."""
    if not encoded:
        return {}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probs, labels = [], []
    for start in range(0, len(encoded), batch_size):
        _, p, y = step_loss(model, encoded[start : start + batch_size], pad_id, device)
        probs.append(p.cpu())
        labels.append(y.cpu())
    model.train(was_training)
    p, y = torch.cat(probs), torch.cat(labels)
    predicted = p > 0.5
    out = {"step_accuracy": float((predicted == y.bool()).float().mean()),
           "right_step_accuracy": float(predicted[y == 1].float().mean()) if (y == 1).any() else float("nan"),
           "wrong_step_accuracy": float((~predicted[y == 0]).float().mean()) if (y == 0).any() else float("nan"),
           "steps": float(len(y)), "wrong_steps": float((y == 0).sum())}
    first_found, offset, with_error = 0, 0, 0
    for _, positions, values in encoded:
        k = len(positions)
        row_pred, row_y = predicted[offset : offset + k].tolist(), values
        offset += k
        if 0 in row_y:
            with_error += 1
            first_found += row_y.index(0) == (row_pred.index(False) if False in row_pred else -1)
    out["first_error_found"] = first_found / with_error if with_error else float("nan")
    return out


@managed_run
def train_prm(cfg: PRMConfig) -> dict:
    n = cfg.num_train_samples or cfg.max_steps * cfg.batch_size
    train_rows, train_source = stepwise_rows(cfg, "train", n, cfg.seed)
    eval_rows, eval_source = stepwise_rows(cfg, cfg.eval_split, cfg.eval_n, cfg.eval_seed)
    ctx = start_run(cfg, reward_model="process")
    model, tok = ctx.model, ctx.tokenizer
    device = next(model.parameters()).device
    encoded = encode_rows(train_rows, tok, cfg.step_separator, cfg.max_length, train_source)
    held_out = encode_rows(eval_rows, tok, cfg.step_separator, cfg.max_length, eval_source)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    epochs = -(-cfg.max_steps * cfg.batch_size // len(encoded))
    order = torch.cat([torch.randperm(len(encoded), generator=order_gen) for _ in range(epochs)]).tolist()
    before = step_accuracy(model, held_out, tok.pad_token_id, cfg.batch_size) if ctx.start_step == 0 else {}
    t_start, bar = time.time(), progress(cfg.max_steps, "prm")
    bar.update(ctx.start_step)
    for step in range(ctx.start_step, cfg.max_steps):
        batch = [encoded[i] for i in order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
        loss, p, y = step_loss(model, batch, tok.pad_token_id, device)
        loss.backward()
        metrics = {"loss": loss.item(), "train/step_accuracy": float(((p > 0.5) == y.bool()).float().mean()),
                   "grad_norm": grad_step(ctx, cfg.max_grad_norm), "lr": ctx.scheduler.get_last_lr()[0]}
        done = step + 1
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            metrics.update({f"eval/{k}": v for k, v in step_accuracy(model, held_out, tok.pad_token_id, cfg.batch_size).items()})
        ctx.logger.log(done, metrics)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        ctx.end_step(done, cfg)
    bar.close()
    train_time = time.time() - t_start
    after = step_accuracy(model, held_out, tok.pad_token_id, cfg.batch_size)
    summary = {"method": "prm", "steps": cfg.max_steps, "eval_accuracy": after.get("step_accuracy"),
               "eval_before": before or None, "eval": after, "train_data": train_source, "eval_data": eval_source or None,
               "train_rows": len(encoded), "train_time_s": train_time}
    result = finish_run(ctx, cfg.max_steps, [], summary, {f"eval/{k}": v for k, v in after.items() if k != "step_accuracy"})
    (ctx.run_dir / "final" / PRM_FILE).write_text(json.dumps({"step_separator": cfg.step_separator}) + "\n")
    if after:
        print(format_table([[k, before.get(k), v] for k, v in after.items()], ["held-out", "before", "after"]))
    return result


class ProcessRewardFunction:
    """A saved PRM as a reward function: each completion is split into steps at the PRM's separator, scored
    step by step (P(right) at each step's end), and the scores are aggregated (min, last or mean)."""

    def __init__(self, path: str, aggregation: str = "min", device: str = "cpu", dtype: str = "auto"):
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"prm_aggregation={aggregation!r}; choose one of: {', '.join(AGGREGATIONS)}")
        settings = Path(path) / PRM_FILE
        if not settings.is_file():
            raise ConfigError(f"process_reward_model {path!r} has no {PRM_FILE}; pass a `rewardlab train prm` run's final/")
        self.separator = json.loads(settings.read_text())["step_separator"]
        with torch.random.fork_rng(devices=[]):
            self.model, self.tokenizer = load_process_reward_model(path, dtype=dtype, device=device)
        self.model.requires_grad_(False).eval()
        self.aggregation = aggregation
        self.__name__ = "process_reward_model"

    @torch.no_grad()
    def step_scores(self, prompts: list, completions: list) -> list[list[float]]:
        device = next(self.model.parameters()).device
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        rows = []
        for prompt, text in zip(prompts, texts):
            steps = [s.strip() for s in text.split(self.separator) if s.strip()]
            ids, positions = encode_steps(prompt, steps, self.tokenizer, self.separator)
            rows.append((ids, positions))
        ids, attention = right_pad([r[0] for r in rows], self.tokenizer.pad_token_id)
        probs = token_logits(self.model, ids.to(device), attention.to(device)).softmax(-1)[..., 1].cpu()
        return [[float(probs[i, pos]) for pos in positions] for i, (_, positions) in enumerate(rows)]

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        return [aggregate(scores, self.aggregation) for scores in self.step_scores(prompts, completions)]
