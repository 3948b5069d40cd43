"""DPO side by side: rewardlab vs TRL's DPOTrainer, same model, data, batch and steps, in one run.

    python benchmarks/dpo_vs_trl.py [--steps 40] [--repeats 3] [--batch-size 32]

Both libraries load the same built-in tiny Llama (char tokenizer) from one saved directory, train with
the sigmoid (DPO) loss on the same preference pairs of the built-in `preference` task, with the same
beta, batch, optimizer, learning rate and thread count, float32 on the CPU, the reference log-probs
computed on the fly each step from a frozen copy of the starting model (both libraries load it from the
same path).

1. Same loss: both libraries compute the loss of one batch of pairs with the policy and a *different*
   reference model (saved from another seed, so the loss is not the trivial ln 2 of policy = reference):
   rewardlab through its trainer (a 1-step run whose batch is the whole dataset; the logged step-1 loss),
   TRL through DPOTrainer.compute_loss on the collated batch of the same rows. They must agree within 1e-4.
2. Speed and memory: timed runs alternate (rewardlab, TRL, rewardlab, ...), each in a fresh process.
   Timed: the optimizer steps only (forward of policy and reference, loss, backward, optimizer step),
   after the first 2 steps of each run, which are left out as warm-up. rewardlab: "time/step" in
   metrics.jsonl; TRL: a TrainerCallback from on_step_begin to on_step_end. Peak memory: the process's
   peak resident set size (VmHWM) from the first forward pass of any module (the policy and reference are
   loaded by then) to the end of the run, minus its resident size at that first forward.

Writes benchmarks/results/dpo_vs_trl.md (table, command, versions, machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from trl_timing import step_timer  # benchmarks/ is on sys.path when a script there runs

RESULTS = Path(__file__).parent / "results" / "dpo_vs_trl.md"
WARMUP_STEPS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per library (alternating)")
    parser.add_argument("--batch-size", type=int, default=32, help="preference pairs per step")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (both)")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS), help="markdown report path ('' to skip)")
    parser.add_argument("--worker", choices=["rewardlab", "TRL"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------- memory


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets the peak resident set size (Linux)
        fh.write("5")


def rss_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


# ---------------------------------------------------------------------------------------------- the two libraries


def pairs(args: argparse.Namespace, n: int) -> list[dict]:
    from rewardlab.tasks import make_task

    return make_task("preference").preference_pairs(n, seed=args.seed)


def rewardlab_run(work: Path, args: argparse.Namespace, name: str, steps: int, dataset: Path, ref_model: str = "") -> dict:
    import rewardlab

    rewardlab.train("dpo", {
        "model": str(work / "policy"), "ref_model": ref_model, "dataset": str(dataset), "eval_dataset": str(dataset),
        "eval_n": args.batch_size, "dtype": "float32", "device": "cpu", "torch_threads": args.threads, "seed": args.seed,
        "max_steps": steps, "batch_size": args.batch_size, "loss_type": "sigmoid", "beta": args.beta,
        "learning_rate": args.learning_rate, "lr_scheduler": "constant", "warmup_steps": 0, "max_grad_norm": 1.0,
        "weight_decay": 0.0, "max_length": 256, "logging_steps": 0, "save_steps": 0, "tensorboard": False,
        "output_dir": str(work), "run_name": name,
    })
    rows = [json.loads(line) for line in (work / name / "metrics.jsonl").read_text().splitlines()]
    step_rows = [r for r in rows if "time/step" in r]
    return {"step_times": [r["time/step"] for r in step_rows], "losses": [r["loss"] for r in step_rows]}


def trl_trainer(work: Path, args: argparse.Namespace, name: str, steps: int, dataset: Path, ref_model=None, callbacks=()):
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer

    rows = [json.loads(line) for line in dataset.read_text().splitlines()]
    config = trl.DPOConfig(
        output_dir=str(work / name), run_name=name, seed=args.seed, use_cpu=True, bf16=False, fp16=False,
        max_steps=steps, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        learning_rate=args.learning_rate, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
        weight_decay=0.0, loss_type=["sigmoid"], beta=args.beta, max_length=256, precompute_ref_log_probs=False,
        padding_free=False, gradient_checkpointing=False, disable_dropout=True, report_to="none", logging_steps=1,
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )
    return trl.DPOTrainer(
        model=str(work / "policy"), ref_model=ref_model, args=config, train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(work / "policy"), callbacks=list(callbacks),
    )


def trl_run(work: Path, args: argparse.Namespace, name: str, steps: int, dataset: Path) -> dict:
    import torch

    timer = step_timer()
    trainer = trl_trainer(work, args, name, steps, dataset, callbacks=[timer])
    trainer.train()
    torch.set_num_threads(args.threads)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"step_times": timer.times, "losses": losses}


def first_batch_losses(work: Path, args: argparse.Namespace) -> tuple[float, float]:
    """The loss of one batch with a reference that differs from the policy, in both libraries."""
    import torch
    from transformers import AutoModelForCausalLM

    batch = work / "first_batch.jsonl"
    ours = rewardlab_run(work, args, "check-rewardlab", 1, batch, ref_model=str(work / "reference"))["losses"][0]
    reference = AutoModelForCausalLM.from_pretrained(work / "reference")
    trainer = trl_trainer(work, args, "check-trl", 1, batch, ref_model=reference)
    loader = trainer.get_train_dataloader()
    inputs = next(iter(loader))
    if len(inputs["input_ids"]) != 2 * args.batch_size:
        raise RuntimeError(f"TRL's first batch has {len(inputs['input_ids'])} rows, expected {2 * args.batch_size}")
    trainer.model.train()
    with torch.no_grad():
        theirs = float(trainer.compute_loss(trainer.model, inputs))
    return ours, theirs


# ---------------------------------------------------------------------------------------------- orchestration


def worker(args: argparse.Namespace) -> int:
    """One timed run in this fresh process; prints a JSON line with step times and memory."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    if args.worker == "TRL":
        import trl  # noqa: F401  (imported before the baseline, like rewardlab below)
    import rewardlab  # noqa: F401

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    baseline = {}

    def at_first_forward(module, inputs):
        # the first forward of any module in the process: the models are loaded, nothing has run yet
        if not baseline:
            baseline["kib"] = rss_kib("VmRSS")
            reset_peak_rss()

    hook = torch.nn.modules.module.register_module_forward_pre_hook(at_first_forward)
    run = rewardlab_run if args.worker == "rewardlab" else trl_run
    result = run(work, args, f"{args.worker}-{os.getpid()}", args.steps, work / "train.jsonl")
    hook.remove()
    result["peak_extra_mib"] = (rss_kib("VmHWM") - baseline["kib"]) / 1024
    print("RESULT " + json.dumps(result))
    return 0


def spawn(lib: str, work: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", lib, "--work", str(work), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--learning-rate", str(args.learning_rate), "--beta", str(args.beta), "--seed", str(args.seed)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{lib} worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def prepare(work: Path, args: argparse.Namespace) -> int:
    from rewardlab.models import build_char_tokenizer, build_tiny_model

    tokenizer = build_char_tokenizer()
    for name, seed in (("policy", args.seed), ("reference", args.seed + 1)):
        model = build_tiny_model(tokenizer, seed=seed)
        model.save_pretrained(work / name)
        tokenizer.save_pretrained(work / name)
    data = pairs(args, args.steps * args.batch_size)
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    (work / "first_batch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data[: args.batch_size]))
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    from rewardlab.monitor import format_table

    torch.set_num_threads(args.threads)
    t_total = time.time()
    results: dict[str, list[dict]] = {"rewardlab": [], "TRL": []}
    with tempfile.TemporaryDirectory(prefix="dpo_vs_trl-") as tmp:
        work = Path(tmp)
        n_params = prepare(work, args)
        ours, theirs = first_batch_losses(work, args)
        print(f"first-batch loss: rewardlab {ours:.7f}, TRL {theirs:.7f}, |diff| {abs(ours - theirs):.2e}", file=sys.stderr)
        for repeat in range(args.repeats):
            for lib in results:
                print(f"timed run {repeat + 1}/{args.repeats}: {lib} ({args.steps} steps)", file=sys.stderr)
                results[lib].append(spawn(lib, work, args))
    total_s = time.time() - t_total

    rows = []
    for lib, runs in results.items():
        times = [sum(r["step_times"][WARMUP_STEPS:]) for r in runs]
        timed_steps = args.steps - WARMUP_STEPS
        rows.append({
            "library": lib,
            "time s (median)": statistics.median(times),
            "runs s": " / ".join(f"{t:.2f}" for t in times),
            "pairs/s": timed_steps * args.batch_size / statistics.median(times),
            "peak training memory MiB (median)": statistics.median(r["peak_extra_mib"] for r in runs),
            "loss first/last step": "{:.4f} / {:.4f}".format(
                statistics.fmean(r["losses"][0] for r in runs), statistics.fmean(r["losses"][-1] for r in runs)),
        })
    speedup = rows[1]["time s (median)"] / rows[0]["time s (median)"]
    memory_ratio = rows[0]["peak training memory MiB (median)"] / rows[1]["peak training memory MiB (median)"]
    print(format_table(rows))
    print(f"rewardlab is {speedup:.2f}x as fast as TRL (pairs/s); peak training memory ratio rewardlab/TRL {memory_ratio:.2f}")
    print(f"first-batch loss: rewardlab {ours:.7f}, TRL {theirs:.7f}, |diff| {abs(ours - theirs):.2e}")
    if args.output:
        command = "python benchmarks/dpo_vs_trl.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_report(args, rows, speedup, memory_ratio, (ours, theirs), n_params, total_s, command.strip())
        print(f"wrote {args.output}")
    return 0 if abs(ours - theirs) <= 1e-4 else 1


def write_report(args, rows, speedup, memory_ratio, losses, n_params, total_s, command) -> None:
    import platform

    import torch
    import transformers
    import trl

    import rewardlab

    head = list(rows[0])
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |" for row in rows]
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    ours, theirs = losses
    text = f"""# DPO: rewardlab vs TRL DPOTrainer

Generated by `benchmarks/dpo_vs_trl.py`; one run, both libraries on the same machine, alternating.

{chr(10).join(table)}

- **rewardlab is {speedup:.2f}x as fast as TRL** (pairs per second over the timed steps, medians of {args.repeats} runs).
- **Peak training memory, rewardlab / TRL: {memory_ratio:.2f}** (peak resident set from the first forward pass
  to the end of the run, minus the resident set at that first forward, when policy and reference are loaded).
- **Same loss on the first batch:** rewardlab {ours:.7f}, TRL {theirs:.7f}, difference {abs(ours - theirs):.1e}
  (policy and reference differ, so this is not the ln 2 of policy = reference; required: within 1e-4).

## Setup (identical for both)

- Model: rewardlab's built-in tiny Llama ({n_params / 1e6:.2f} M parameters, char tokenizer), saved with
  `save_pretrained`; both load the policy from that directory and the reference from the same path
  (a frozen copy; log-probs computed on the fly every step). float32, CPU, torch threads = {args.threads}.
- Data: `make_task("preference").preference_pairs({args.steps} x {args.batch_size}, seed={args.seed})`, plain-text
  prompts ("qdk:") with chosen/rejected replies; each completion ends in EOS in both libraries.
- {args.steps} optimizer steps per run, {args.batch_size} pairs per step, loss sigmoid, beta {args.beta:g}; AdamW,
  learning rate {args.learning_rate:g} constant, no warm-up, weight decay 0, grad clip 1.0; max_length 256.
- TRL extras off: precompute_ref_log_probs False, padding_free False, gradient_checkpointing False, bf16 False,
  report_to none, save_strategy no.
- Timed: optimizer steps {WARMUP_STEPS + 1}..{args.steps} of each run (the first {WARMUP_STEPS} are warm-up). rewardlab:
  `time/step` in metrics.jsonl; TRL: TrainerCallback on_step_begin -> on_step_end. Each run is a fresh
  process; model loading and rewardlab's held-out evaluation lie outside the timed steps.

## Reproduce

    {command}

Total benchmark wall time: {total_s:.0f} s.

## Environment

- Machine: {cpu}, nproc {os.cpu_count()} (shared with other work while measuring: absolute times are noisy,
  alternating runs keep the ratio fair)
- python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__},
  trl {trl.__version__}, rewardlab {rewardlab.__version__}
"""
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps({
        "command": command, "rows": rows, "speedup": speedup, "memory_ratio": memory_ratio,
        "first_batch_loss": {"rewardlab": ours, "TRL": theirs}, "total_s": total_s,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
    }, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
