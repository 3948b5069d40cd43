"""Preference learning measured against the gold scorer of the built-in `preference` task, over seeds.

    python benchmarks/preference_gold.py [--seeds 0 1 2 3 4] [--stages sft tune rm-tune rm dpo ipo simpo kto]

Everything runs through the `rewardlab` command line with the built-in tiny model; the commands are
written to the report.
  1. SFT on the careless demonstrations, per seed      examples/sft_preference.yaml
  2. tune: DPO's beta, chosen on the tune split         examples/dpo_preference.yaml, beta in --tune-betas,
     from the first seed's SFT model; each candidate's gold win rate against that SFT model on the
     tune split (eval seed 100) picks the beta every seed then uses. Nothing here looks at the test split.
  3. rm-tune: the reward model's step count, chosen on the tune split: one run of the config's steps from
     the first seed's SFT model, evaluated on the tune split every --rm-eval-steps; the step with the best
     accuracy against the noisy labels (what a user can measure; the earliest on a tie) is every seed's
     max_steps. (The tune run's cosine schedule spans all its steps, so a shorter chosen run decays sooner.)
     rm: a reward model from each seed's SFT model        examples/rm_preference.yaml, max_steps as chosen
     held-out accuracy against the noisy labels and against the noiseless gold order (test split)
  4. DPO (tuned beta), IPO, SimPO and KTO (their library default betas, not tuned) from the SFT model
  5. `rewardlab eval` of each against the SFT model on the test split (eval seed 100 + seed): mean gold
     score of sampled completions and the gold win rate (a tie counts half)

Methods are compared with DPO by the per-seed difference in win rate: its mean, 95% t interval and an
exact sign-flip p-value; "no difference" when the interval contains 0.

A stage is reused only when it finished with the same command (benchmarks/stages.py hashes the command,
the config file's contents and the upstream stage), so an interrupted run resumes without mixing runs.

Writes benchmarks/results/preference_gold.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from stages import run_stage  # benchmarks/ is on sys.path when a script there runs
from stats import mean_sd, paired, verdict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "preference_gold.md"
METHODS = {
    "dpo": ["loss_type=sigmoid"],
    "ipo": ["loss_type=ipo", "beta=0.1"],
    "simpo": ["loss_type=simpo", "beta=2.5"],
    "kto": ["loss_type=kto", "beta=0.1"],
}
EVAL_SEED = 100


def run(command: list[str], log: list[str]) -> None:
    text = " ".join(shlex.quote(c) for c in command)
    log.append(text.replace(f"{ROOT}/", ""))
    print(f"$ {text}", file=sys.stderr, flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    print(done.stdout, file=sys.stderr)
    if done.returncode:
        raise RuntimeError(f"command failed ({done.returncode}): {text}")


def stage(folder: str, command: list[str], log: list[str]) -> None:
    """Run a training command whose output lands in `folder`, unless it already finished with the same one."""
    run_stage(ROOT / folder, {"command": command}, lambda: run(command, log), lambda: log.append("(reused) " + " ".join(command)))


def evaluate(cli: list[str], model: str, reference: str, split: str, seed: int, n: int, log: list[str]) -> dict:
    out = ROOT / model.removesuffix("/final") / f"eval-{split}-seed{seed}.jsonl"
    summary = out.with_suffix(".summary.json")
    if not summary.is_file() or summary.stat().st_mtime < (ROOT / model).stat().st_mtime:
        run([*cli, "eval", "--model", model, "--reference", reference, "--task", "preference", "--split", split,
             "--seed", str(seed), "--n", str(n), "--out", str(out.relative_to(ROOT))], log)
    return json.loads(summary.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--stages", nargs="+", default=["sft", "tune", "rm-tune", "rm", *METHODS])
    parser.add_argument("--rm-eval-steps", type=int, default=500, help="tune-split evaluations of the rm-tune run")
    parser.add_argument("--tune-betas", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    parser.add_argument("--output-dir", default="runs/preference")
    parser.add_argument("--eval-n", type=int, default=500)
    parser.add_argument("--report", default=str(RESULTS))
    args = parser.parse_args(argv)
    cli = [str(ROOT / ".venv" / "bin" / "rewardlab")] if (ROOT / ".venv" / "bin" / "rewardlab").exists() else ["rewardlab"]
    common = ["torch_threads=1", "tensorboard=false"]
    log: list[str] = []
    t0 = time.time()

    def sft_of(seed: int) -> str:
        out = f"{args.output_dir}/seed{seed}"
        if "sft" in args.stages or ("tune" in args.stages and seed == args.seeds[0]):
            stage(f"{out}/sft", [*cli, "train", "sft", "--config", "examples/sft_preference.yaml", f"seed={seed}",
                                 f"output_dir={out}", "run_name=sft", *common], log)
        return f"{out}/sft/final"

    tuning = []
    if "tune" in args.stages:
        seed = args.seeds[0]
        sft = sft_of(seed)
        for beta in args.tune_betas:
            name = f"tune-dpo-beta{beta:g}"
            out = f"{args.output_dir}/seed{seed}"
            stage(f"{out}/{name}", [*cli, "train", "dpo", "--config", "examples/dpo_preference.yaml", "loss_type=sigmoid",
                                    f"beta={beta:g}", f"model={sft}", f"seed={seed}", f"output_dir={out}", f"run_name={name}", *common], log)
            s = evaluate(cli, f"{out}/{name}/final", sft, "tune", EVAL_SEED, args.eval_n, log)
            tuning.append({"beta": beta, "win_rate": s["win_rate"], "gold_mean": s["gold_mean"], "n_prompts": s["n_prompts"]})
    dpo_beta = max(tuning, key=lambda r: r["win_rate"])["beta"] if tuning else None

    rm_tuning, rm_steps = [], None
    if "rm-tune" in args.stages:
        seed = args.seeds[0]
        sft, out = sft_of(seed), f"{args.output_dir}/seed{seed}"
        stage(f"{out}/tune-rm", [*cli, "train", "rm", "--config", "examples/rm_preference.yaml", f"model={sft}", f"seed={seed}",
                                 "eval_split=tune", f"eval_steps={args.rm_eval_steps}", f"output_dir={out}", "run_name=tune-rm",
                                 *common], log)
        metrics = [json.loads(line) for line in (ROOT / out / "tune-rm" / "metrics.jsonl").read_text().splitlines() if line.strip()]
        final = json.loads((ROOT / out / "tune-rm" / "summary.json").read_text())  # the last step's evaluation, in full
        rm_tuning = [{"step": int(r["step"]), "accuracy": r["eval/accuracy"], "gold_accuracy": r.get("eval/gold_accuracy")}
                     for r in metrics if "eval/accuracy" in r and 0 < int(r["step"]) < final["steps"]]
        rm_tuning.append({"step": final["steps"], "accuracy": final["eval_accuracy"], "gold_accuracy": final.get("eval_gold_accuracy")})
        rm_steps = max(rm_tuning, key=lambda r: (r["accuracy"], -r["step"]))["step"]

    rm_rows, results = [], {m: [] for m in METHODS}
    for seed in args.seeds:
        out = f"{args.output_dir}/seed{seed}"
        sft = sft_of(seed)
        if "rm" in args.stages:
            steps = [f"max_steps={rm_steps}"] if rm_steps is not None else []
            stage(f"{out}/rm", [*cli, "train", "rm", "--config", "examples/rm_preference.yaml", *steps, f"model={sft}",
                                f"seed={seed}", f"output_dir={out}", "run_name=rm", *common], log)
            rm_rows.append({"seed": seed, **json.loads((ROOT / out / "rm" / "summary.json").read_text())})
        for method, extra in METHODS.items():
            if method not in args.stages:
                continue
            if method == "dpo" and dpo_beta is not None:
                extra = [*extra, f"beta={dpo_beta:g}"]
            stage(f"{out}/{method}", [*cli, "train", "dpo", "--config", "examples/dpo_preference.yaml", *extra, f"model={sft}",
                                      f"seed={seed}", f"output_dir={out}", f"run_name={method}", *common], log)
            s = evaluate(cli, f"{out}/{method}/final", sft, "test", EVAL_SEED + seed, args.eval_n, log)
            results[method].append({"seed": seed, **{k: s[k] for k in ("win_rate", "gold_mean", "reference_gold_mean", "gold_perfect", "n_prompts")}})
    total = time.time() - t0
    results = {m: rows for m, rows in results.items() if rows}

    command = f"python benchmarks/preference_gold.py {shlex.join(argv if argv is not None else sys.argv[1:])}".strip()
    lines = ["# Preference learning against the gold scorer (built-in `preference` task, tiny model)", "",
             f"Generated by `{command}` on {platform.machine()} ({os.cpu_count()} cores, 1 torch thread) in {total:.0f} s"
             " (stages already finished with the same command are reused and not timed).", ""]
    if tuning:
        lines += [f"## Tuning DPO's beta on the tune split (seed {args.seeds[0]}'s SFT model, eval seed {EVAL_SEED})", "",
                  "| beta | gold win rate vs SFT | gold mean | prompts |", "|---|---|---|---|"]
        lines += [f"| {r['beta']:g} | {r['win_rate']:.3f} | {r['gold_mean']:.3f} | {r['n_prompts']} |" for r in tuning]
        lines += ["", f"Chosen: beta {dpo_beta:g} (highest win rate on the tune split); every seed's DPO run below uses it.", ""]
    if rm_tuning:
        lines += [f"## Reward model steps, chosen on the tune split (seed {args.seeds[0]}'s SFT model)", "",
                  "| step | tune accuracy vs noisy labels | tune accuracy vs gold order |", "|---|---|---|"]
        lines += [f"| {r['step']} | {r['accuracy']:.3f} | {r['gold_accuracy']:.3f} |" for r in rm_tuning]
        lines += ["", f"Chosen: {rm_steps} steps (the best accuracy against the noisy labels on the tune split; the gold "
                  "column is shown, not used).", ""]
    if rm_rows:
        lines += ["## Reward model: test-split pairwise accuracy", "",
                  "| seed | vs noiseless gold order | vs noisy labels | label ceiling (labels agreeing with gold) | expected ceiling |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['seed']} | {r['eval_gold_accuracy']:.3f} | {r['eval_accuracy']:.3f} | {r['eval_label_gold_agreement']:.3f} | "
                  f"{r['eval_expected_label_accuracy']:.3f} |" for r in rm_rows]
        for key, name in (("eval_gold_accuracy", "vs gold"), ("eval_accuracy", "vs labels")):
            mean, sd = mean_sd([r[key] for r in rm_rows])
            lines.append(f"\nMean ± sd {name}: {mean:.3f} ± {sd:.3f}")
        lines.append("")
    if results:
        lines += [f"## Policies: gold win rate against each seed's SFT model on the test split (eval seed {EVAL_SEED} + seed)", "",
                  "| method | beta | win rate per seed | mean ± sd | vs DPO: mean difference [95% CI], p | gold mean per seed (SFT) |",
                  "|---|---|---|---|---|---|"]
        base = [r["win_rate"] for r in results.get("dpo", [])]
        comparisons = {}
        for method, rows in results.items():
            wins = [r["win_rate"] for r in rows]
            mean, sd = mean_sd(wins)
            beta = dpo_beta if method == "dpo" and dpo_beta is not None else next(
                (float(e.split("=")[1]) for e in METHODS[method] if e.startswith("beta=")), None)
            comparison = ""
            if method != "dpo" and len(base) == len(wins) >= 2:
                d = paired(wins, base)
                comparison = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], p={d['p']:.2f}: {verdict(d)}"
                comparisons[method] = d
            golds = ", ".join(f"{r['gold_mean']:.2f} ({r['reference_gold_mean']:.2f})" for r in rows)
            lines.append(f"| {method} | {beta if beta is not None else 'config'} | {', '.join(f'{w:.3f}' for w in wins)} | "
                         f"{mean:.3f} ± {sd:.3f} | {comparison} | {golds} |")
        lines += ["", "Spread: sample sd over seeds; differences are paired by seed. DPO's beta was chosen on the tune split; "
                  "the other methods' betas are their defaults and were not tuned.", ""]
    else:
        comparisons = {}
    lines += ["## Commands", "", *[f"    {c}" for c in log], ""]
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text("\n".join(lines) + "\n")
    Path(args.report).with_suffix(".json").write_text(json.dumps(
        {"command": command, "seconds": total, "tuning": tuning, "dpo_beta": dpo_beta, "rm_tuning": rm_tuning,
         "rm_steps": rm_steps, "reward_model": rm_rows, "policies": results,
         "vs_dpo": comparisons},
        indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
