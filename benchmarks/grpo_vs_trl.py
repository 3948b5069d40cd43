"""GRPO side by side: rewardlab vs TRL's GRPOTrainer, same model, data and settings, in one run.

    python benchmarks/grpo_vs_trl.py [--steps 30] [--repeats 3] [--threads 2]

Both libraries load the same built-in tiny Llama (char tokenizer) from one saved directory, train on
the same pool of arithmetic prompts ("12+34=" -> "46") with the same reward function, group size,
batch, lengths, optimizer settings and seed, in float32 on the CPU with the same torch thread count.
After one short warm-up run each, the timed runs alternate (rewardlab, TRL, rewardlab, TRL, ...) so
that drift in machine load hits both alike.

What is timed, in both: the training steps only, each step being generation + reward scoring +
advantages + loss/backward + optimizer step. rewardlab: the sum of "time/step" in the run's
metrics.jsonl (its evaluations, checkpoint and plots happen outside the steps). TRL: a TrainerCallback
measuring on_step_begin -> on_step_end (model loading, logging and the dataloader's fetch are outside).
Tokens are completion tokens actually generated (up to and including EOS, no padding): rewardlab's
"tokens_generated", and for TRL the lengths of the `completion_ids` its reward function receives.

Writes benchmarks/results/grpo_vs_trl.md (table, command, versions, machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from trl_timing import step_timer  # benchmarks/ is on sys.path when a script there runs

import rewardlab
from rewardlab.models import build_char_tokenizer, build_tiny_model
from rewardlab.monitor import format_table
from rewardlab.tasks import arithmetic_reward, make_task

RESULTS = Path(__file__).parent / "results" / "grpo_vs_trl.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per library (alternating)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (both); 1 by default: on a busy 2-core machine a second OpenMP thread waits on a core",
    )
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps of the untimed warm-up run per library")
    parser.add_argument("--sft-steps", type=int, default=300, help="untimed SFT warm start of the model (0: random init)")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=8)
    parser.add_argument(
        "--learning-rate", type=float, default=1e-4,
        help="1e-4 keeps the warm-started policy's reward steady over 30 steps; at 5e-4 Adam's first steps "
        "knock it down in both libraries alike",
    )
    parser.add_argument("--loss-type", default="dapo", help="TRL loss_type name, used by both (TRL's default: dapo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS), help="markdown report path ('' to skip)")
    return parser.parse_args(argv)


def prepare_model(work: Path, args: argparse.Namespace) -> tuple[Path, int]:
    """The built-in tiny Llama, saved with save_pretrained where both libraries load it from.

    With --sft-steps > 0 it is first warm-started by rewardlab's SFT on the same task, so that GRPO starts
    in the partly-right regime: rewards vary within groups, advantages are non-zero and completions stop
    at EOS, as in real RL post-training (a random model scores 0 everywhere and every gradient is 0).
    """
    if args.sft_steps == 0:
        tokenizer = build_char_tokenizer()
        model = build_tiny_model(tokenizer, seed=args.seed)
        path = work / "model"
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        return path, sum(p.numel() for p in model.parameters())
    print(f"SFT warm start of the tiny model ({args.sft_steps} steps, untimed)", file=sys.stderr)
    rewardlab.train("sft", {
        "model": "tiny", "max_steps": args.sft_steps, "seed": args.seed, "dtype": "float32", "device": "cpu",
        "torch_threads": args.threads, "eval_n": 100, "logging_steps": 0, "tensorboard": False,
        "output_dir": str(work), "run_name": "sft",
    })
    path = work / "sft" / "final"  # save_pretrained layout: model + tokenizer
    from transformers import AutoModelForCausalLM

    return path, sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())


def run_rewardlab(model_dir: Path, work: Path, args: argparse.Namespace, steps: int, name: str) -> dict:
    summary = rewardlab.train("grpo", {
        "model": str(model_dir),
        "dtype": "float32",
        "device": "cpu",
        "torch_threads": args.threads,
        "seed": args.seed,
        "max_steps": steps,
        "batch_size": args.prompts_per_step * args.num_generations,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "temperature": 1.0,
        "learning_rate": args.learning_rate,
        "lr_scheduler": "constant",
        "warmup_steps": 0,
        "max_grad_norm": 1.0,
        "weight_decay": 0.0,
        "loss_type": args.loss_type,
        "scale_rewards": "group",
        "beta": 0.0,
        "log_kl": False,  # TRL with beta=0 has no reference model either
        "num_iterations": 1,
        "eval_n": 8,  # held-out evals run before and after the loop, outside the timed steps
        "logging_steps": 0,
        "save_steps": 0,
        "tensorboard": False,
        "output_dir": str(work),
        "run_name": name,
    })
    del summary
    rows = [json.loads(line) for line in (work / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps_rows = [r for r in rows if "time/step" in r]
    if len(steps_rows) != steps:
        raise RuntimeError(f"rewardlab run {name}: expected {steps} step rows in metrics.jsonl, found {len(steps_rows)}")
    return {
        "time_s": sum(r["time/step"] for r in steps_rows),
        "tokens": sum(r["tokens_generated"] for r in steps_rows),
        "rewards": [r["reward"] for r in steps_rows],
        "phases": {k: sum(r[f"time/{k}"] for r in steps_rows) for k in ("generate", "score", "train")},
    }


def run_trl(model_dir: Path, work: Path, args: argparse.Namespace, steps: int, name: str) -> dict:
    import trl
    from datasets import Dataset

    tokens = [0]

    def arithmetic_reward_counting(completions, answer, completion_ids, **kwargs):
        tokens[0] += sum(len(ids) for ids in completion_ids)  # EOS included, padding excluded (as rewardlab)
        return arithmetic_reward(completions, answer)

    # the same pool rewardlab draws from: its train_records() with the same seed and count
    records = make_task("arithmetic").generate(steps * args.prompts_per_step, seed=args.seed, split="train")
    dataset = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in records])
    config = trl.GRPOConfig(
        output_dir=str(work / name),
        run_name=name,
        seed=args.seed,
        use_cpu=True,
        bf16=False,
        fp16=False,
        max_steps=steps,
        per_device_train_batch_size=args.prompts_per_step * args.num_generations,
        gradient_accumulation_steps=1,
        steps_per_generation=1,  # generation batch = train batch: one fresh rollout per optimizer step
        num_iterations=1,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        weight_decay=0.0,
        loss_type=args.loss_type,
        scale_rewards="group",
        beta=0.0,
        gradient_checkpointing=False,  # TRL's default is True; rewardlab does not checkpoint
        disable_dropout=True,
        use_vllm=False,
        report_to="none",
        logging_steps=1,  # logging happens after on_step_end: outside the timed window
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    timer = step_timer()
    trainer = trl.GRPOTrainer(
        model=str(model_dir),
        reward_funcs=arithmetic_reward_counting,
        args=config,
        train_dataset=dataset,
        callbacks=[timer],
    )
    if config.generation_batch_size != args.prompts_per_step * args.num_generations:
        raise RuntimeError(f"TRL generation batch is {config.generation_batch_size}, not the rewardlab batch")
    trainer.train()
    torch.set_num_threads(args.threads)  # in case anything in the trainer changed it
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    if len(timer.times) != steps or len(rewards) != steps:
        raise RuntimeError(f"TRL run {name}: timed {len(timer.times)} steps and logged {len(rewards)} rewards, expected {steps}")
    return {"time_s": sum(timer.times), "tokens": tokens[0], "rewards": rewards}


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor()
    return f"{model or 'unknown CPU'}, nproc {os.cpu_count()}"


def versions() -> dict[str, str]:
    import transformers
    import trl

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "rewardlab": rewardlab.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("rewardlab").setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    runners = {"rewardlab": run_rewardlab, "TRL": run_trl}
    results: dict[str, list[dict]] = {lib: [] for lib in runners}
    t_total = time.time()
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl-") as tmp:
        work = Path(tmp)
        model_dir, n_params = prepare_model(work, args)
        for lib, run in runners.items():
            print(f"warm-up: {lib} ({args.warmup_steps} steps)", file=sys.stderr)
            run(model_dir, work, args, args.warmup_steps, f"warmup-{lib}")
        for repeat in range(args.repeats):
            for lib, run in runners.items():
                print(f"timed run {repeat + 1}/{args.repeats}: {lib} ({args.steps} steps)", file=sys.stderr)
                results[lib].append(run(model_dir, work, args, args.steps, f"{lib}-{repeat}"))
    total_s = time.time() - t_total

    def median(lib: str, key: str) -> float:
        return statistics.median(r[key] for r in results[lib])

    span = max(1, args.steps // 3)
    rows = []
    for lib in runners:
        runs = results[lib]
        rows.append({
            "library": lib,
            "train time s (median)": median(lib, "time_s"),
            "runs s": " / ".join(f"{r['time_s']:.2f}" for r in runs),
            "s/step": median(lib, "time_s") / args.steps,
            "tokens (median)": median(lib, "tokens"),
            "tokens/s (median)": statistics.median(r["tokens"] / r["time_s"] for r in runs),
            "reward mean": statistics.fmean(x for r in runs for x in r["rewards"]),
            f"reward first/last {span} steps": "{:.3f} / {:.3f}".format(
                statistics.fmean(x for r in runs for x in r["rewards"][:span]),
                statistics.fmean(x for r in runs for x in r["rewards"][-span:]),
            ),
        })
    time_ratio = rows[0]["train time s (median)"] / rows[1]["train time s (median)"]
    tps_ratio = rows[0]["tokens/s (median)"] / rows[1]["tokens/s (median)"]
    table = format_table(rows)
    phases = {k: statistics.median(r["phases"][k] for r in results["rewardlab"]) for k in ("generate", "score", "train")}
    verdict = "faster" if time_ratio < 1 else "slower"
    print(table)
    print(f"rewardlab/TRL wall time ratio: {time_ratio:.3f} (rewardlab {verdict}); tokens/s ratio: {tps_ratio:.3f}")
    print(f"total benchmark time {total_s:.0f}s")

    if args.output:
        command = "python benchmarks/grpo_vs_trl.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_report(args, rows, time_ratio, tps_ratio, phases, n_params, total_s, command.strip())
        print(f"wrote {args.output}")
    return 0


def write_report(args, rows, time_ratio, tps_ratio, phases, n_params, total_s, command) -> None:
    def md_table(rows: list[dict]) -> str:
        head = list(rows[0])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    batch = args.prompts_per_step * args.num_generations
    v = versions()
    start = (
        f", warm-started by {args.sft_steps} untimed steps of rewardlab SFT on the same task so that rewards vary"
        " within groups (a random model scores 0 everywhere)" if args.sft_steps else ", randomly initialised"
    )
    text = f"""# GRPO: rewardlab vs TRL GRPOTrainer

Generated by `benchmarks/grpo_vs_trl.py`; numbers from one run, both libraries in the same process.

{md_table(rows)}

- **rewardlab / TRL wall time of the training steps: {time_ratio:.3f}** (below 1: rewardlab faster).
- **rewardlab / TRL generated tokens per second: {tps_ratio:.3f}** (above 1: rewardlab faster).
- rewardlab's steps split (median run): generate {phases['generate']:.2f} s, score {phases['score']:.3f} s,
  loss + backward + optimizer {phases['train']:.2f} s.
- Reward: exact-match arithmetic reward of the sampled completions (temperature 1), averaged over all
  steps of all timed runs, and over the first and last third of the steps. A sanity check that both
  libraries run the same task from the same start and that their updates move the policy alike; it is
  not a learning benchmark (8 prompts per step for {args.steps} steps is too little to learn much).

## Setup (identical for both)

- Model: rewardlab's built-in tiny Llama ({n_params / 1e6:.2f} M parameters, char tokenizer){start}, saved
  with `save_pretrained`; both load it from that directory. float32, CPU, torch threads = {args.threads}.
- Data: `make_task("arithmetic").generate({args.steps} x {args.prompts_per_step}, seed={args.seed})`, plain-text
  prompts; reward `rewardlab.tasks.arithmetic_reward`.
- {args.steps} optimizer steps per run; {batch} completions per step = {args.prompts_per_step} prompts x
  {args.num_generations} generations; max_completion_length {args.max_completion_length}; temperature 1.0,
  top_k 0, top_p 1.0.
- AdamW, learning rate {args.learning_rate:g} constant, no warm-up, weight decay 0, grad clip 1.0;
  loss_type `{args.loss_type}`, scale_rewards group, epsilon 0.2, beta 0 (no reference model, rewardlab's
  `log_kl` off), one update per generation batch (TRL: per_device_train_batch_size {batch},
  gradient_accumulation_steps 1, steps_per_generation 1, num_iterations 1: generation batch = {batch}).
- TRL extras off: use_vllm False, bf16 False, gradient_checkpointing False (TRL's default is True),
  report_to none, save_strategy no, dropout disabled (the tiny model has none).
- Timed: the training steps only (generation + reward + advantages + loss/backward + optimizer step).
  rewardlab: sum of `time/step` in metrics.jsonl; TRL: a TrainerCallback from on_step_begin to
  on_step_end. Model loading, rewardlab's held-out evaluations, checkpoints and plots are outside.
  One untimed warm-up run of {args.warmup_steps} steps per library first, then {args.repeats} timed runs
  each, alternating rewardlab, TRL, rewardlab, ...; medians reported.
- Tokens: completion tokens generated, up to and including EOS, no padding.

## Reproduce

    {command}

Total benchmark wall time: {total_s:.0f} s.

## Environment

- Machine: {machine()} (shared with other work while measuring: absolute times are noisy, the
  alternating runs keep the ratio fair)
- {", ".join(f"{k} {val}" for k, val in v.items())}
"""
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
