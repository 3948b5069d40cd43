"""Risk-sensitive PPO on rewardlab/MarketMaking-v0: does a risk-sensitive objective cut the tail for little PnL?

    OMP_NUM_THREADS=1 python benchmarks/market_risk.py            # about 30 minutes on one core
    OMP_NUM_THREADS=1 python benchmarks/market_risk.py --quick    # smoke run (about 2 minutes), written to a temp dir

Variants (rewardlab/classic/risk.py, docs/market_making.md#risk-sensitive-training), PPO defaults otherwise:

    risk-neutral PPO     the plain reward (the PnL change)
    inventory penalty    env_kwargs inventory_penalty c: reward - c q^2 each step
    mean-variance        mv_coef lambda: E[R] - lambda Var[R], an adjustment of each episode's last reward
    CVaR                 cvar_coef 1, cvar_alpha alpha: E[R] + CVaR_alpha[R] (Tamar et al. 2015's gradient)
    Lagrangian limit     lagrange_limit L, budget 0.05, lr 0.05: at most 5% of steps with |q| > L, by dual ascent

Protocol. Tuning: each variant's coefficient from a grid of 3, one training seed (100), scored on 100 TUNE
evaluation episodes (seeds 500000 + i); the risk-neutral reference is trained and scored the same way. The rule:
among the grid values whose tune CVaR-5% loss is at least 30% below the risk-neutral one, the highest tune mean
PnL; if none is, the best tune CVaR-5%. Test: the chosen coefficient and risk-neutral PPO trained with seeds
0..4, each greedy policy scored on 100 TEST episodes (seeds 600000 + i, disjoint from the tune seeds and from the
training envs, which are reset with seeds 0..4 + env index and 100..103). Each metric is computed per trained
model on its 100 episodes, then reported as mean +- sd over the 5 models. The three baselines play the same
test episodes. Aim: CVaR-5% loss cut by >= 30% against risk-neutral PPO for at most 10% of its mean PnL.
Regime shift: the test-seed-0 model of the variant with the best test CVaR plays 10 episodes with the shift
scripted at step 100; RegimeShiftDetector() runs on the mid moves and, separately, on the agent's PnL changes.

Writes benchmarks/results/market_risk.md and .json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from rewardlab.classic import ppo
from rewardlab.classic.market import (
    AvellanedaStoikov,
    FixedSpread,
    InventorySkew,
    RegimeShiftDetector,
    risk_report,
    run_episodes,
)

RESULTS = Path(__file__).resolve().parent / "results" / "market_risk.md"
ENV_ID = "rewardlab/MarketMaking-v0"
METRICS = ("mean_pnl", "pnl_std", "cvar", "max_abs_inventory", "sharpe_step")
LAGRANGE = {"lagrange_lr": 0.05, "lagrange_budget": 0.05}
VARIANTS = {  # name: (what the grid varies, grid, options of that value)
    "inventory penalty": ("c", (0.0001, 0.0005, 0.002), lambda c: {"env_kwargs": {"inventory_penalty": c}}),
    "mean-variance": ("lambda", (0.01, 0.05, 0.2), lambda lam: {"mv_coef": lam}),
    "CVaR": ("alpha", (0.05, 0.1, 0.25), lambda alpha: {"cvar_coef": 1.0, "cvar_alpha": alpha}),
    "Lagrangian limit": ("limit", (5.0, 10.0, 15.0), lambda limit: {"lagrange_limit": limit, **LAGRANGE}),
}
NEUTRAL = "risk-neutral PPO"
FULL = {"steps": 200_000, "train_seeds": (0, 1, 2, 3, 4), "tune_seeds": (100,), "episodes": 100, "shift_episodes": 10}
QUICK = {"steps": 4_096, "train_seeds": (0, 1), "tune_seeds": (100,), "episodes": 10, "shift_episodes": 2}
TUNE_SEED0, TEST_SEED0, SHIFT_SEED0, SHIFT_STEP = 500_000, 600_000, 610_000, 100


class Greedy:
    def __init__(self, policy):
        self.policy = policy

    def act(self, obs):
        return self.policy.act(obs, deterministic=True)


def train(options: dict, seed: int, steps: int, runs_dir: str, name: str):
    start = time.time()
    config = ppo.PPOConfig(env_id=ENV_ID, total_steps=steps, seed=seed, runs_dir=runs_dir, name=name, progress=False,
                           tensorboard=False, eval_episodes=0, log_every=20_000, checkpoint_every=0, **options)
    policy, history = ppo.train(config)
    last = history[-1] if history else {}
    info = {"seed": seed, "train_seconds": round(time.time() - start, 1)}
    info |= {key: last[key] for key in ("lagrange_multiplier", "constraint_cost", "risk_value_at_risk", "risk_return_std") if key in last}
    return policy, info


def score(policy, seeds: range) -> dict:
    records = run_episodes(policy, ENV_ID, seeds)
    report = risk_report(records)
    return {key: report[key] for key in (*METRICS, "sharpe_episode")}


def aggregate(rows: list[dict]) -> dict:
    return {key: {"mean": float(np.mean([r[key] for r in rows])), "sd": float(np.std([r[key] for r in rows], ddof=1)) if len(rows) > 1 else 0.0}
            for key in (*METRICS, "sharpe_episode")}


def choose(tune_rows: dict, reference: dict) -> float:
    """The rule of the module docstring: the highest tune mean PnL among values that cut the CVaR-5% loss by
    >= 30% against the risk-neutral reference; the best CVaR-5% if none does."""
    target = 0.7 * reference["cvar"] if reference["cvar"] < 0 else reference["cvar"]
    cutting = {value: row for value, row in tune_rows.items() if row["cvar"] >= target}
    if cutting:
        return max(cutting, key=lambda value: cutting[value]["mean_pnl"])
    return max(tune_rows, key=lambda value: tune_rows[value]["cvar"])


def aim_check(variant: dict, neutral: dict) -> dict:
    """CVaR-5% loss cut and mean-PnL cost against risk-neutral PPO, on the means over training seeds."""
    loss_n, loss_v = -neutral["cvar"]["mean"], -variant["cvar"]["mean"]
    mean_n, mean_v = neutral["mean_pnl"]["mean"], variant["mean_pnl"]["mean"]
    cut = 1.0 - loss_v / loss_n if loss_n > 0 else float("nan")
    change = (mean_v - mean_n) / abs(mean_n) if mean_n != 0 else float("nan")
    def se(key: str) -> float:  # of the difference of two means over training seeds
        return float(np.sqrt(neutral[key]["sd"] ** 2 / neutral["n"] + variant[key]["sd"] ** 2 / variant["n"]))

    pnl_ok = mean_v >= mean_n - 0.10 * abs(mean_n)  # gives up at most 10% of the risk-neutral mean PnL
    cvar_diff = variant["cvar"]["mean"] - neutral["cvar"]["mean"]
    return {"cvar_loss_cut": cut, "cvar_diff": cvar_diff, "cvar_diff_se": se("cvar"), "cvar_resolved": bool(cvar_diff > 2 * se("cvar")),
            "mean_pnl_change": change, "mean_pnl_diff": mean_v - mean_n, "mean_pnl_diff_se": se("mean_pnl"),
            "pnl_allowance": 0.10 * abs(mean_n), "cvar_ok": bool(cut >= 0.30), "pnl_ok": bool(pnl_ok),
            "meets_aim": bool(cut >= 0.30 and pnl_ok), "pnl_diff_resolved": bool(abs(mean_v - mean_n) > 2 * se("mean_pnl"))}


def regime_shift_run(policy, episodes: int) -> list[dict]:
    seeds = range(SHIFT_SEED0, SHIFT_SEED0 + episodes)
    rows = []
    for record in run_episodes(policy, ENV_ID, seeds, regime_shift_step=SHIFT_STEP):
        shift = int(np.flatnonzero(record["regime_path"] == 1)[0])
        mid = RegimeShiftDetector()
        mid_step = mid.run(np.diff(record["mid_path"]))
        pnl = RegimeShiftDetector(mean=None)  # the agent's PnL changes: mean and std from the warmup
        pnl_step = pnl.run(np.diff(record["pnl_path"]))
        inventory = np.abs(record["inventory_path"])
        rows.append({"seed": record["seed"], "shift_step": shift, "mid_alarm_step": mid_step, "mid_alarm_kind": mid.alarm_kind,
                     "pnl_alarm_step": pnl_step, "pnl_alarm_kind": pnl.alarm_kind, "pnl": record["pnl"],
                     "pnl_before_shift": float(record["pnl_path"][shift]),
                     "max_abs_inventory_before": float(inventory[:shift + 1].max()), "max_abs_inventory_after": float(inventory[shift + 1:].max())})
    return rows


def pm(stat: dict, digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def step_text(step, shift) -> str:
    return "none" if step is None else f"{step} ({step - shift:+d})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, seeds and episodes; results to a temp dir")
    parser.add_argument("--out", type=Path, default=None, help="results .md path (the .json goes next to it)")
    parser.add_argument("--render", type=Path, default=None, help="only rewrite the .md (and the aim) from this results .json")
    args = parser.parse_args()
    if args.render is not None:
        result = json.loads(args.render.read_text())
        result["aim"] = {name: aim_check(result["test"][name], result["test"][NEUTRAL]) for name in VARIANTS}
        result["verdict"] = [name for name, check in result["aim"].items() if check["meets_aim"]]
        result["verdict_text"] = verdict_text(result)
        args.render.write_text(json.dumps(result, indent=2))
        args.render.with_suffix(".md").write_text(render(result, result["plan"]) + "\n")
        print(args.render.with_suffix(".md").read_text())
        return 0
    plan = QUICK if args.quick else FULL
    out = args.out or (Path(tempfile.mkdtemp()) / "market_risk_quick.md" if args.quick else RESULTS)
    steps, episodes = plan["steps"], plan["episodes"]
    tune_seeds, test_seeds = range(TUNE_SEED0, TUNE_SEED0 + episodes), range(TEST_SEED0, TEST_SEED0 + episodes)
    start = time.time()

    def say(text: str) -> None:
        print(f"[{time.time() - start:6.0f} s] {text}", flush=True)

    result: dict = {"env_id": ENV_ID, "plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()},
                    "tune_eval_seeds": [tune_seeds.start, tune_seeds.stop], "test_eval_seeds": [test_seeds.start, test_seeds.stop],
                    "lagrange": LAGRANGE, "quick": args.quick, "tune": {}, "test": {}}
    with tempfile.TemporaryDirectory() as runs_dir:
        counter = iter(range(10_000))

        def fit(options: dict, seed: int):
            return train(options, seed, steps, runs_dir, f"run-{next(counter)}")

        # 1. tuning: one coefficient per variant, on the tune evaluation seeds
        reference = []
        for seed in plan["tune_seeds"]:
            policy, info = fit({}, seed)
            reference.append(score(Greedy(policy), tune_seeds))
        reference_row = {key: float(np.mean([r[key] for r in reference])) for key in METRICS}
        result["tune"][NEUTRAL] = {"row": reference_row}
        say(f"tune {NEUTRAL}: {reference_row}")
        chosen = {}
        for name, (label, grid, make) in VARIANTS.items():
            rows = {}
            for value in grid:
                scores = []
                for seed in plan["tune_seeds"]:
                    policy, info = fit(make(value), seed)
                    scores.append(score(Greedy(policy), tune_seeds))
                rows[value] = {key: float(np.mean([s[key] for s in scores])) for key in METRICS}
                say(f"tune {name} {label}={value}: {rows[value]}")
            chosen[name] = choose(rows, reference_row)
            result["tune"][name] = {"label": label, "grid": list(grid), "rows": {str(v): r for v, r in rows.items()}, "chosen": chosen[name]}

        # 2. test: 5 training seeds per variant, each model on the test evaluation seeds
        models = {}
        for name in (NEUTRAL, *VARIANTS):
            options = {} if name == NEUTRAL else VARIANTS[name][2](chosen[name])
            per_seed = []
            for seed in plan["train_seeds"]:
                policy, info = fit(options, seed)
                per_seed.append({**info, **score(Greedy(policy), test_seeds)})
                models.setdefault(name, Greedy(policy))  # the first training seed's model, for the regime-shift run
                say(f"test {name} seed {seed}: mean {per_seed[-1]['mean_pnl']:.3f} cvar {per_seed[-1]['cvar']:.3f} "
                    f"({info['train_seconds']} s)")
            result["test"][name] = {"options": options, "per_seed": per_seed, **aggregate(per_seed), "n": len(per_seed)}

    # 3. baselines on the same test episodes
    baselines = {"fixed_spread(1)": FixedSpread(1.0), "inventory_skew(1, 0.1)": InventorySkew(1.0, 0.1),
                 "avellaneda_stoikov(0.0005)": AvellanedaStoikov(0.0005)}
    result["baselines"] = {name: score(policy, test_seeds) for name, policy in baselines.items()}

    # 4. the aim
    neutral = result["test"][NEUTRAL]
    result["aim"] = {name: aim_check(result["test"][name], neutral) for name in VARIANTS}
    result["verdict"] = [name for name, check in result["aim"].items() if check["meets_aim"]]
    result["verdict_text"] = verdict_text(result)

    # 5. regime shift with the variant of the best test CVaR
    shift_name = max(VARIANTS, key=lambda name: result["test"][name]["cvar"]["mean"])
    result["regime_shift"] = {"agent": f"{shift_name} (training seed {plan['train_seeds'][0]})", "shift_step": SHIFT_STEP,
                              "episodes": regime_shift_run(models[shift_name], plan["shift_episodes"])}
    result["seconds"] = round(time.time() - start, 1)
    say("done")

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.write_text(render(result, plan) + "\n")
    print(out.read_text())
    print(f"written: {out} and {out.with_suffix('.json')}")
    return 0


def verdict_text(result: dict) -> str:
    """The verdict on the means, then what the seeds resolve and what they do not."""
    aim, neutral = result["aim"], result["test"][NEUTRAL]
    passing = [name for name, check in aim.items() if check["meets_aim"]]
    if not passing:
        return "**Verdict: no.** No risk-sensitive variant meets the aim on the test seeds."
    names = ", ".join(passing)
    text = [f"**Verdict: yes on the means over training seeds, for {names}:** each cuts the CVaR-5% loss by at least 30% "
            "and its mean PnL is not more than 10% below risk-neutral PPO's."]
    resolved = [name for name in passing if aim[name]["cvar_resolved"]]
    unresolved = [name for name in passing if not aim[name]["cvar_resolved"]]
    if resolved:
        text.append(f"The CVaR-5% improvement is resolved (> 2 SE) for {', '.join(resolved)}" +
                    (f", not for {', '.join(unresolved)}." if unresolved else "."))
    if not any(aim[name]["pnl_diff_resolved"] for name in passing):
        ses = [aim[name]["mean_pnl_diff_se"] for name in passing]
        text.append(f"The mean-PnL half is not resolved for any of them: risk-neutral PPO's mean PnL is "
                    f"{neutral['mean_pnl']['mean']:.3f} ± {neutral['mean_pnl']['sd']:.3f} over its {neutral['n']} models, so the 10% allowance "
                    f"is {aim[passing[0]]['pnl_allowance']:.3f} while the SE of each mean-PnL difference is {min(ses):.2f} to {max(ses):.2f}. "
                    "The seeds show no detectable PnL cost; they cannot show that the cost is below 10%.")
    return " ".join(text)


def render(result: dict, plan: dict) -> str:
    n_train, episodes = len(plan["train_seeds"]), plan["episodes"]
    lines = ["# Risk-sensitive PPO on rewardlab/MarketMaking-v0", "",
             f"Generated by `python benchmarks/market_risk.py`{' --quick (a smoke run: not a result)' if result['quick'] else ''}. "
             f"PPO defaults (rewardlab/classic/ppo.py), {plan['steps']} steps per run, greedy evaluation on the default env",
             "(random regime shift). PnL in currency (1 tick = 0.01); CVaR-5% is the mean of the worst 5% of a model's episode",
             "PnLs; Sharpe is per step (mean / std of the per-step PnL changes, pooled), not annualised.", "",
             "## Tuning (TUNE evaluation seeds)", "",
             f"Each coefficient from a grid of 3, training seed(s) {list(plan['tune_seeds'])}, scored on {episodes} episodes with "
             f"evaluation seeds {result['tune_eval_seeds'][0]}..{result['tune_eval_seeds'][1] - 1} (not the test seeds). Chosen: the highest "
             "tune mean PnL among the values whose CVaR-5% loss is >= 30% below risk-neutral PPO's on the same seeds; the best "
             f"CVaR-5% if none is. The Lagrangian runs with budget {LAGRANGE['lagrange_budget']} (fraction of steps over the limit) "
             f"and dual step {LAGRANGE['lagrange_lr']}; CVaR with cvar_coef 1.", "",
             "| variant | value | mean PnL | PnL std | CVaR-5% | max abs inventory | chosen |", "|---|---|---|---|---|---|---|"]
    ref = result["tune"][NEUTRAL]["row"]
    lines.append(f"| {NEUTRAL} | - | {ref['mean_pnl']:.3f} | {ref['pnl_std']:.3f} | {ref['cvar']:.3f} | {ref['max_abs_inventory']:.0f} | reference |")
    for name in VARIANTS:
        tune = result["tune"][name]
        for value, row in tune["rows"].items():
            mark = "**yes**" if float(value) == tune["chosen"] else ""
            lines.append(f"| {name} | {tune['label']} = {float(value):g} | {row['mean_pnl']:.3f} | {row['pnl_std']:.3f} | {row['cvar']:.3f} | "
                         f"{row['max_abs_inventory']:.0f} | {mark} |")
    lines += ["", "## Test (TEST evaluation seeds)", "",
              f"Training seeds {list(plan['train_seeds'])}; each model scored on {episodes} episodes with evaluation seeds "
              f"{result['test_eval_seeds'][0]}..{result['test_eval_seeds'][1] - 1}; mean ± sd over the {n_train} models. "
              "The baselines play the same episodes (one deterministic rule each, so no sd).", "",
              "| policy | mean PnL | PnL std | CVaR-5% | max abs inventory | Sharpe (per step) |", "|---|---|---|---|---|---|"]
    for name, row in result["test"].items():
        value = "" if name == NEUTRAL else f" ({VARIANTS[name][0]} = {result['tune'][name]['chosen']:g})"
        lines.append(f"| {name}{value} | {pm(row['mean_pnl'])} | {pm(row['pnl_std'])} | {pm(row['cvar'])} | "
                     f"{pm(row['max_abs_inventory'], 1)} | {pm(row['sharpe_step'])} |")
    for name, row in result["baselines"].items():
        lines.append(f"| {name} | {row['mean_pnl']:.3f} | {row['pnl_std']:.3f} | {row['cvar']:.3f} | {row['max_abs_inventory']:.0f} | "
                     f"{row['sharpe_step']:.3f} |")
    multipliers = [s["lagrange_multiplier"] for s in result["test"]["Lagrangian limit"]["per_seed"] if "lagrange_multiplier" in s]
    if multipliers:
        costs = [s["constraint_cost"] for s in result["test"]["Lagrangian limit"]["per_seed"]]
        lines += ["", f"Lagrangian limit, at the end of training (last rollout, stochastic policy): multiplier "
                      f"{np.mean(multipliers):.2f} ± {np.std(multipliers, ddof=1) if len(multipliers) > 1 else 0:.2f}, fraction of steps over "
                      f"the limit {np.mean(costs):.3f} (budget {LAGRANGE['lagrange_budget']})."]
    lines += ["", "## The aim: CVaR-5% loss cut by >= 30% for at most 10% of mean PnL", "",
              "Against risk-neutral PPO, on the means over the training seeds. CVaR loss cut = 1 - CVaR loss (variant) / CVaR loss "
              "(risk-neutral), the loss being -CVaR-5%; mean PnL change = (mean PnL (variant) - mean PnL (risk-neutral)) / |mean PnL "
              "(risk-neutral)|, and the aim allows down to -10%. The SE of the mean-PnL difference comes from the two sds over "
              f"training seeds (SE of a difference = sqrt(sd1^2 / {n_train} + sd2^2 / {n_train})); a difference is 'resolved' when it is more "
              "than 2 SE from 0.", "",
              "| variant | CVaR-5% difference (SE) | CVaR-5% loss cut (>= 30%?) | mean PnL difference (SE) | mean PnL change (>= -10%?) | meets the aim |",
              "|---|---|---|---|---|---|"]
    for name, check in result["aim"].items():
        lines.append(f"| {name} | {check['cvar_diff']:+.3f} ({check['cvar_diff_se']:.3f}) | {100 * check['cvar_loss_cut']:.0f}% "
                     f"({'yes' if check['cvar_ok'] else 'no'}) | {check['mean_pnl_diff']:+.3f} ({check['mean_pnl_diff_se']:.3f}) | "
                     f"{100 * check['mean_pnl_change']:+.0f}% ({'yes' if check['pnl_ok'] else 'no'}) | {'yes' if check['meets_aim'] else 'no'} |")
    lines += ["", verdict_text(result)]
    shift = result["regime_shift"]
    lines += ["", "## Regime shift", "",
              f"Agent: {shift['agent']}, greedy, on {len(shift['episodes'])} episodes with the shift scripted at step "
              f"{shift['shift_step']} (env option regime_shift_step; evaluation seeds {SHIFT_SEED0}..{SHIFT_SEED0 + len(shift['episodes']) - 1}). "
              "RegimeShiftDetector() with its defaults on the mid moves; RegimeShiftDetector(mean=None) on the agent's per-step "
              "PnL changes (mean and std from its 40-step warmup). A step is the 0-based index of the move; the "
              "delay from the shift is in parentheses.", "",
              "| seed | shift step | flag on mid moves (delay) | kind | flag on PnL changes (delay) | kind | max abs q before / after | PnL at shift / end |",
              "|---|---|---|---|---|---|---|---|"]
    for row in shift["episodes"]:
        lines.append(f"| {row['seed']} | {row['shift_step']} | {step_text(row['mid_alarm_step'], row['shift_step'])} | {row['mid_alarm_kind'] or '-'} | "
                     f"{step_text(row['pnl_alarm_step'], row['shift_step'])} | {row['pnl_alarm_kind'] or '-'} | "
                     f"{row['max_abs_inventory_before']:.0f} / {row['max_abs_inventory_after']:.0f} | {row['pnl_before_shift']:.2f} / {row['pnl']:.2f} |")
    lines += ["", f"Runtime: {result['seconds']} s on one core (OMP_NUM_THREADS=1)."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
