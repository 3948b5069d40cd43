"""Evaluation against a task's hidden gold scorer: mean gold score of sampled completions, and the win
rate of one policy against another judged by the gold scorer (ties count half)."""

from __future__ import annotations

import statistics

import torch

from ..rollout import HFEngine, SamplingParams
from ..tasks import win_rate
from .inputs import encode_prompt


@torch.no_grad()
def gold_samples(
    model,
    tokenizer,
    task,
    records: list[dict],
    *,
    samples_per_prompt: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 16,
    seed: int = 0,
) -> list[dict]:
    """Sample completions for the records' prompts and score each with task.gold.

    Sampling is seeded (and leaves the global RNG as it was), so two policies evaluated with the same
    seed see the same prompts in the same order: row k of both is a fair pair for a win rate.
    """
    was_training = model.training
    model.eval()
    engine = HFEngine(model, tokenizer)
    prompts = [encode_prompt(r["prompt"], tokenizer)[0] for r in records]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rollout = engine.generate(prompts, samples_per_prompt, SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature))
    model.train(was_training)
    expanded = [r for r in records for _ in range(samples_per_prompt)]
    return [
        {"prompt": r["prompt"], "completion": text, "gold": task.gold(r["prompt"], text)}
        for r, text in zip(expanded, rollout.completions_text)
    ]


def gold_report(policy_rows: list[dict], reference_rows: list[dict] | None = None, gold_max: float = 5.0) -> dict:
    """Mean gold score, share of perfect completions, and (with reference rows) the win rate."""
    scores = [r["gold"] for r in policy_rows]
    report = {"gold_mean": statistics.fmean(scores), "gold_perfect": sum(s == gold_max for s in scores) / len(scores)}
    if reference_rows is not None:
        reference = [r["gold"] for r in reference_rows]
        report["reference_gold_mean"] = statistics.fmean(reference)
        report["win_rate"] = win_rate(scores, reference)
        report["wins"] = sum(p > r for p, r in zip(scores, reference)) / len(scores)
        report["ties"] = sum(p == r for p, r in zip(scores, reference)) / len(scores)
    return report


def gold_eval(args, cfg, task) -> int:
    """`rewardlab eval` on a task with a gold scorer: mean gold score of the model's samples on held-out
    prompts, and with --reference the win rate against that model (same prompts, same sampling seed)."""
    import json
    from pathlib import Path

    from ..models import load_policy
    from ..monitor import format_table
    from .inputs import eval_records

    records = eval_records(cfg)
    options = {"samples_per_prompt": args.samples, "temperature": 1.0 if args.temperature is None else args.temperature,
               "max_new_tokens": args.max_new_tokens or 16, "seed": cfg.eval_seed}
    model, tokenizer = load_policy(args.model, device=args.device)
    rows = gold_samples(model, tokenizer, task, records, **options)
    reference_rows = None
    if args.reference:
        del model
        reference, reference_tokenizer = load_policy(args.reference, device=args.device)
        reference_rows = gold_samples(reference, reference_tokenizer, task, records, **options)
        for row, ref_row in zip(rows, reference_rows):
            row["reference_completion"], row["reference_gold"] = ref_row["completion"], ref_row["gold"]
    report = gold_report(rows, reference_rows)
    decoding = "greedy" if options["temperature"] == 0 else f"temperature {options['temperature']:g}"
    table = [["model", args.model, report["gold_mean"], report["gold_perfect"], report.get("win_rate")]]
    if reference_rows is not None:
        table.append(["reference", args.reference, report["reference_gold_mean"], None, None])
    print(format_table(table, ["", "path", "gold mean (0-5)", "perfect", "win rate"]))
    print(f"{len(records)} held-out prompts x {args.samples} samples ({decoding}), eval seed {cfg.eval_seed}"
          + (f"; wins {report['wins']:.3f}, ties {report['ties']:.3f} (a tie counts half)" if reference_rows else ""))
    out = Path(args.out) if args.out else Path(args.model if Path(args.model).is_dir() else ".") / f"eval-{cfg.task}-seed{cfg.eval_seed}.jsonl"
    with open(out, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (out.with_suffix(".summary.json")).write_text(json.dumps({"model": args.model, "reference": args.reference or None,
                                                               "n_prompts": len(records), **options, **report}, indent=2))
    print(f"per-sample results: {out}")
    return 0
