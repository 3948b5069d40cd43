"""Best-of-n accuracy (n = 1..32) of the demo's models, picked by the verifier and by a learned reward model.

    python benchmarks/best_of_n.py [--seed 0] [--samples 32] [--out runs/best_of_n]

Stages (stages.py; a rerun retrains nothing already trained with the same arguments):
    demo    `rewardlab demo --seed S`: the SFT cold start and the GRPO model
    pairs   the SFT model's own samples of training prompts (8 each, temperature 1) judged by the verifier:
            one (right, wrong) pair per prompt that has both (rejection.verified_pairs); tune-split prompts
            give the reward model's held-out pairs
    rm      a reward model from the SFT model's weights trained on those pairs (`rewardlab train rm`)

Then, for the SFT model and the GRPO model: --samples answers per test-split problem (500 distinct problems,
eval seed 7, temperature 1), and for each n the exact expected accuracy of best-of-n (best_of_n_curve: over
every n-subset of the samples): picked by the verifier (pass@n, an oracle) and by the reward model's highest
score. Writes benchmarks/results/best_of_n.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import torch
from stages import run_stage  # benchmarks/ is on sys.path when a script there runs

import rewardlab
from rewardlab.config import config_to_dict, load_config
from rewardlab.demo import DEMO_TASK, demo_configs
from rewardlab.models import load_policy
from rewardlab.monitor import format_table
from rewardlab.rewards.reward_model import RewardModelScorer
from rewardlab.rollout import SamplingParams
from rewardlab.tasks import make_task
from rewardlab.trainers import train_grpo, train_sft
from rewardlab.trainers.evaluate import best_of_n_curve, evaluate_accuracy, sample_best_of_n
from rewardlab.trainers.rejection import sample_scored, verified_pairs

RESULTS = Path(__file__).resolve().parent / "results" / "best_of_n.md"


def demo_models(out: Path, seed: int) -> tuple[Path, Path]:
    sft_cfg, grpo_cfg = demo_configs(str(out), seed, run_name="grpo", torch_threads=1, tensorboard=False)
    sft_cfg.torch_threads, sft_cfg.tensorboard = 1, False
    run_stage(sft_cfg.run_dir, config_to_dict(sft_cfg), train=partial(train_sft, sft_cfg), load=lambda: None)
    run_stage(grpo_cfg.run_dir, config_to_dict(grpo_cfg), train=partial(train_grpo, grpo_cfg), load=lambda: None)
    return sft_cfg.run_dir / "final", grpo_cfg.run_dir / "final"


def write_pairs(policy: Path, split: str, prompts: int, path: Path, seed: int) -> dict:
    task = make_task("arithmetic", **DEMO_TASK)
    model, tok = load_policy(str(policy), device="cpu")
    records = task.generate(prompts, seed=seed, split=split)
    torch.manual_seed(seed)
    samples = sample_scored(model, tok, records, 8, SamplingParams(6, 1.0), verify=task.reward_functions()[0])
    pairs = verified_pairs(samples, records)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for pair in pairs:
            fh.write(json.dumps(pair) + "\n")
    info = {"prompts": len(records), "pairs": len(pairs)}
    (path.parent / "info.json").write_text(json.dumps(info))
    return info


def reward_model(out: Path, sft: Path, seed: int, args) -> tuple[Path, dict]:
    pairs = out / "pairs"
    made = {split: run_stage(pairs / split, {"stage": "pairs", "policy": str(sft), "split": split, "prompts": n, "seed": seed},
                             train=partial(write_pairs, sft, split, n, pairs / split / "final" / "pairs.jsonl", seed),
                             load=partial(lambda split: json.loads((pairs / split / "final" / "info.json").read_text()), split))
            for split, n in (("train", args.pair_prompts), ("tune", 300))}
    cfg = {"model": str(sft), "dataset": str(pairs / "train" / "final" / "pairs.jsonl"),
           "eval_dataset": str(pairs / "tune" / "final" / "pairs.jsonl"),
           "max_steps": args.rm_steps, "batch_size": 32, "learning_rate": 1e-4, "output_dir": str(out), "run_name": "rm",
           "seed": seed, "torch_threads": 1, "tensorboard": False, "eval_n": 10000}
    summary = run_stage(out / "rm", {"method": "rm", **cfg}, train=partial(rewardlab.train, "rm", cfg),
                        load=lambda: json.loads((out / "rm" / "summary.json").read_text()))
    return out / "rm" / "final", {"pairs": made, "rm_tune_accuracy": summary.get("eval_accuracy")}


def curves(policy: Path, rm: Path, args) -> dict:
    task = make_task("arithmetic", **DEMO_TASK)
    records = task.generate(500, seed=7, split="test")
    model, tok = load_policy(str(policy), device="cpu")
    scorer = RewardModelScorer(str(rm), load_config("rm", None, {"device": "cpu"}), torch.device("cpu"))
    torch.manual_seed(args.seed)
    t0 = time.time()
    correct, scores = sample_best_of_n(model, tok, records, task.reward_functions()[0], args.samples, 6, 1.0, scorer)
    ns = list(range(1, args.samples + 1))
    greedy = evaluate_accuracy(model, tok, records, task.reward_functions()[0], 6)[0]
    return {"greedy": greedy, "by_verifier": best_of_n_curve(correct, None, ns), "by_reward_model": best_of_n_curve(correct, scores, ns),
            "problems": len(records), "time_s": time.time() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--pair-prompts", type=int, default=3000)
    parser.add_argument("--rm-steps", type=int, default=400)
    parser.add_argument("--out", default="runs/best_of_n")
    args = parser.parse_args()
    out = Path(args.out) / f"seed{args.seed}"
    sft, grpo = demo_models(out, args.seed)
    rm, rm_info = reward_model(out, sft, args.seed, args)
    results = {"SFT cold start": curves(sft, rm, args), "after GRPO (the demo's model)": curves(grpo, rm, args)}
    shown = [n for n in (1, 2, 4, 8, 16, 32) if n <= args.samples]
    table = [{"policy": name, "greedy": f"{r['greedy']:.3f}", "picked by": by, **{f"n={n}": f"{r[key][n]:.3f}" for n in shown}}
             for name, r in results.items() for by, key in (("verifier (pass@n)", "by_verifier"), ("reward model", "by_reward_model"))]
    command = " ".join(["python", "benchmarks/best_of_n.py", *sys.argv[1:]])
    pairs = rm_info["pairs"]
    text = "\n".join([
        "# Best-of-n on arithmetic: by the verifier and by a learned reward model", "",
        f"Generated by `{command}`. Policies: the demo's SFT cold start and its GRPO model (seed {args.seed}). Reward model: "
        f"the SFT model's weights with a scalar head, trained {args.rm_steps} steps on {pairs['train']['pairs']} pairs of the SFT "
        f"model's own samples (a right and a wrong answer to the same training prompt, from {pairs['train']['prompts']} prompts "
        f"x 8 samples); its accuracy on {pairs['tune']['pairs']} held-out tune-split pairs: {rm_info['rm_tune_accuracy']:.3f}. "
        f"{args.samples} samples per problem at temperature 1 on 500 distinct test-split problems (eval seed 7); each cell "
        "is the exact expected accuracy of best-of-n over every n-subset of those samples (no resampling noise). The "
        "verifier's pick is pass@n, an upper bound no reward model can pass.", "",
        format_table(table), ""])
    RESULTS.with_suffix(".json").write_text(json.dumps({"command": command, "reward_model": rm_info, "results": results}, indent=2))
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
