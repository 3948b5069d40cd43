"""Same numbers before and after a refactor of the online loop: a few steps of every variant, fingerprinted.

    python tools/loop_fingerprint.py --out /tmp/before.json                 # on the old code
    python tools/loop_fingerprint.py --compare /tmp/before.json             # on the new code: max differences

Each variant trains the tiny model for a few steps with fixed seeds; the fingerprint is every logged metric
(timings and throughput left out) and the sum and sum of squares of the final weights. --compare exits 1
when any number differs by more than --tolerance (default 1e-6) or a metric appears or disappears.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}
BASE = {
    "model_config": TINY, "max_steps": 3, "batch_size": 16, "num_generations": 4, "max_completion_length": 5,
    "eval_n": 8, "learning_rate": 0.01, "tensorboard": False, "torch_threads": 1, "logging_steps": 0,
    "reward_funcs": ["tests.reward_fixtures:digit_share"], "eval_steps": 2,
}
VARIANTS = {
    "grpo": ("grpo", {"beta": 0.05}),
    "grpo_minibatch_iters": ("grpo", {"num_iterations": 2, "mini_batch_size": 8, "epsilon_high": 0.28}),
    "dr_grpo": ("dr_grpo", {}),
    "dapo": ("dapo", {"overlong_buffer": 2, "missing_eos_penalty": 0.1}),
    "gspo": ("gspo", {}),
    "rloo": ("rloo", {"mask_truncated_completions": True}),
    "reinforce_pp": ("reinforce_pp", {}),
    "ppo": ("ppo", {"kl_target": 0.5}),
    "flowrl": ("flowrl", {}),
    "sdpo": ("sdpo", {"task": "arithmetic", "reward_funcs": []}),
    "rlsd": ("rlsd", {"task": "arithmetic", "reward_funcs": []}),
    "srpo": ("srpo", {"task": "arithmetic", "reward_funcs": []}),
    "tictactoe": ("grpo", {"env": "tictactoe", "reward_funcs": [], "max_completion_length": 4, "eval_n": 4}),
}
SKIPPED = ("time/", "tokens_per_s")


def fingerprint(name: str, method: str, overrides: dict, workdir: Path) -> dict:
    from safetensors.torch import load_file

    import rewardlab

    rewardlab.train(method, {**BASE, **overrides, "output_dir": str(workdir), "run_name": name})
    rows = [json.loads(line) for line in open(workdir / name / "metrics.jsonl")]
    metrics = {f"{row['step']}:{key}": value for row in rows for key, value in row.items()
               if key != "step" and not key.startswith(SKIPPED)}
    weights = load_file(workdir / name / "final" / "model.safetensors")
    metrics["weights/sum"] = float(sum(t.double().sum() for t in weights.values()))
    metrics["weights/sum_sq"] = float(sum((t.double() ** 2).sum() for t in weights.values()))
    return metrics


def differences(before: dict, after: dict, tolerance: float) -> list[str]:
    found = []
    for variant in sorted(set(before) | set(after)):
        old, new = before.get(variant, {}), after.get(variant, {})
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                found.append(f"{variant} {key}: {'only after' if key not in old else 'only before'}")
                continue
            a, b = old[key], new[key]
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
                if not (math.isclose(a, b, rel_tol=0, abs_tol=tolerance) or (math.isnan(a) and math.isnan(b))):
                    found.append(f"{variant} {key}: {a!r} -> {b!r}")
            elif a != b:
                found.append(f"{variant} {key}: {a!r} -> {b!r}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="", help="write the fingerprints here")
    parser.add_argument("--compare", default="", help="compare with fingerprints written earlier")
    parser.add_argument("--only", default="", help="variants whose name contains this")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    chosen = {k: v for k, v in VARIANTS.items() if args.only in k}
    with tempfile.TemporaryDirectory() as tmp:
        prints = {name: fingerprint(name, method, overrides, Path(tmp)) for name, (method, overrides) in chosen.items()}
    if args.out:
        Path(args.out).write_text(json.dumps(prints, indent=1, sort_keys=True))
        print(f"{len(prints)} variants, {sum(len(p) for p in prints.values())} numbers: {args.out}")
    if args.compare:
        before = {k: v for k, v in json.loads(Path(args.compare).read_text()).items() if k in chosen}
        found = differences(before, prints, args.tolerance)
        print("\n".join(found) if found else f"identical within {args.tolerance:g}: {', '.join(prints)}")
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
