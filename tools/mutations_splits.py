"""Mutations for splits (see tools/mutations.py)."""

from __future__ import annotations

from mutations import Mutation

SPLITS_TESTS = ["tests/test_splits.py"]

SPLITS: list[Mutation] = [
    Mutation(
        "splits: arithmetic canonical form -> ordered string",
        "rewardlab/tasks/arithmetic.py",
        "        a, b = min(a, b), max(a, b)\n",
        "        pass\n",
        "splitting by the ordered string puts b+a of a test problem a+b in training",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: preference canonical form -> raw prompt",
        "rewardlab/tasks/preference.py",
        '    return "".join(sorted(letters))\n',
        "    return letters\n",
        "splitting by the raw prompt puts reorderings of a test prompt (same ideal reply) in training",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: tune pool takes test problems too",
        "rewardlab/tasks/arithmetic.py",
        "if split_of(canonical_problem(a, op, b), tune_fraction, test_fraction) == split:",
        'if split_of(canonical_problem(a, op, b), tune_fraction, test_fraction) in (split, "test"):',
        "tuning on test problems makes the reported test numbers chosen on themselves",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: listed eval sets drawn with replacement",
        "rewardlab/tasks/splits.py",
        "    ranked = heapq.nlargest(min(n, len(pool)), pool, key=lambda kw: math.log(1.0 - rng.random()) / kw[1])\n",
        "    ranked = rng.choices(pool, weights=[w for _, w in pool], k=n)\n",
        "an eval set of n rows then holds far fewer distinct problems",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: rejection draws keep duplicates",
        "rewardlab/tasks/splits.py",
        "if drawn is None or drawn[0] in seen:",
        "if drawn is None:",
        "large tasks' eval sets repeat problems",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: eval_split ignored",
        "rewardlab/trainers/inputs.py",
        "return task_of(cfg).generate(n, seed=seed, split=split)",
        'return task_of(cfg).generate(n, seed=seed, split="test")',
        "eval_split: tune would still evaluate on test",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: env tune episodes are test episodes",
        "rewardlab/envs/evaluate.py",
        '"tune": EVAL_SEED_STRIDE // 2}',
        '"tune": 0}',
        "tuning on a text environment would use the test episodes",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: env eval seed not checked before running",
        "rewardlab/cli.py",
        "        eval_seeds(args.seed, args.n, args.split)\n",
        "        pass\n",
        "rewardlab eval --env --seed 424242 dies with a traceback after loading the agents",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: DPO evaluates on test whatever eval_split says",
        "rewardlab/trainers/preference.py",
        "held_out = preference_records(cfg, cfg.eval_n, split=eval_split(cfg))",
        'held_out = preference_records(cfg, cfg.eval_n, split="test")',
        "choosing DPO's beta on its own held-out evaluation would read the test split",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: reward model evaluates on test whatever eval_split says",
        "rewardlab/trainers/reward_model.py",
        "held_out = preference_records(cfg, cfg.eval_n, split=eval_split(cfg))",
        'held_out = preference_records(cfg, cfg.eval_n, split="test")',
        "choosing reward-model steps on its accuracy would read the test split",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: env demonstrations of tune are those of test",
        "rewardlab/trainers/env_rollouts.py",
        'eighths = {"train": 4, "tune": 5, "test": 6}[split]',
        'eighths = {"train": 4, "tune": 6, "test": 6}[split]',
        "an SFT run on an environment tuned on its held-out accuracy would read the test episodes",
        SPLITS_TESTS,
    ),
    Mutation(
        "splits: env evaluation during training ignores eval_split",
        "rewardlab/trainers/env_rollouts.py",
        "self.cfg.eval_n, self.cfg.eval_seed, split=eval_split(self.cfg))",
        "self.cfg.eval_n, self.cfg.eval_seed)",
        "an early stop on a GRPO run's environment evaluation would read the test episodes",
        SPLITS_TESTS,
    ),
    Mutation(
        "code task: hidden tests may call the shown inputs",
        "rewardlab/tasks/code.py",
        "    below = rng.sample(HIDDEN_BELOW, n_tests // 2)\n",
        "    below = rng.sample(HIDDEN_BELOW[-2:] + SHOWN_INPUTS, n_tests // 2)\n",
        "a hidden test on a shown input rewards copying the prompt, not writing the function",
        ["tests/test_code_task.py::test_hidden_tests_are_not_in_the_prompt"],
    ),
    Mutation(
        "code task: reward all or nothing",
        "rewardlab/tasks/code.py",
        "                rewards[i] = result.reward\n",
        "                rewards[i] = float(result.reward == 1.0)\n",
        "the reward is the fraction of hidden tests passed, so a half-right function earns half",
        ["tests/test_code_task.py::test_reward_is_the_fraction_of_hidden_tests_passed"],
    ),
]
