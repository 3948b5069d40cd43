"""Mutations for offline (see tools/mutations.py): the offline trainers (SFT, reward model, the DPO
family, distillation) and the classic algorithms. The learning tests named in `tests` must fail on each."""

from __future__ import annotations

from mutations import Mutation

OFFLINE_TESTS = ["tests/test_learning_offline.py"]
CLASSIC_TESTS = ["tests/classic/test_learning_classic.py"]
FLIP = "(-loss).backward()"

OFFLINE: list[Mutation] = [
    # ------------------------------------------------------------ the update direction
    Mutation("offline:sft-loss-sign", "rewardlab/trainers/sft.py", "loss.backward()", FLIP,
             "SFT climbs the demonstrations' NLL instead of descending it", OFFLINE_TESTS),
    Mutation("offline:rm-loss-sign", "rewardlab/trainers/reward_model.py", "loss.backward()", FLIP,
             "the reward model learns to rank the rejected reply above the chosen one", OFFLINE_TESTS),
    Mutation("offline:dpo-trainer-loss-sign", "rewardlab/trainers/preference.py", "loss.backward()", FLIP,
             "every DPO-family loss (and KTO) is ascended", OFFLINE_TESTS),
    Mutation("offline:dpo-paired-loss-sign", "rewardlab/trainers/preference.py",
             "    return losses.mean(), metrics\n\n\n@torch.no_grad()",
             "    return -losses.mean(), metrics\n\n\n@torch.no_grad()",
             "the paired losses (DPO, IPO, cDPO, SimPO) come out negated: chosen pushed down, rejected up", OFFLINE_TESTS),
    Mutation("offline:kto-loss-sign", "rewardlab/trainers/preference.py",
             "        return losses.mean(), metrics\n    logps = sequence_logps",
             "        return -losses.mean(), metrics\n    logps = sequence_logps",
             "KTO's loss comes out negated: desirable completions pushed down, undesirable up", OFFLINE_TESTS),
    Mutation("offline:distill-loss-sign", "rewardlab/trainers/distill.py", "loss.backward()", FLIP,
             "distillation (opd, gkd, sft) moves the student away from the teacher", OFFLINE_TESTS),
    # ------------------------------------------------------------ wiring that changes the math
    Mutation("offline:preference-loss_type-ignored", "rewardlab/trainers/preference.py",
             "cfg.beta, cfg.loss_type, cfg.label_smoothing", 'cfg.beta, "sigmoid", cfg.label_smoothing',
             "the trainer computes plain sigmoid DPO whatever loss_type says (ipo, simpo)", OFFLINE_TESTS),
    Mutation("offline:ipo-as-sigmoid", "rewardlab/algos/preference.py",
             'if loss_type == "ipo":\n        losses = (h', 'if False:\n        losses = (h',
             "IPO's squared regression to 1/(2 beta) is replaced by DPO's unbounded logistic loss", OFFLINE_TESTS),
    Mutation("offline:cdpo-label_smoothing-ignored", "rewardlab/trainers/preference.py",
             "cfg.loss_type, cfg.label_smoothing, **opts", "cfg.loss_type, 0.0, **opts",
             "cDPO's label smoothing never reaches the loss, so it trains as plain DPO", OFFLINE_TESTS),
    Mutation("offline:preference-beta-ignored", "rewardlab/trainers/preference.py",
             "ref_chosen, ref_rejected, cfg.beta,", "ref_chosen, ref_rejected, 0.1,",
             "the paired losses use the default beta 0.1 whatever beta says", OFFLINE_TESTS),
    Mutation("offline:simpo-length-normalisation-dropped", "rewardlab/algos/preference.py",
             'chosen_avg = policy_chosen_logps / torch.as_tensor(opts["chosen_lengths"], **like).clamp(min=1)',
             "chosen_avg = policy_chosen_logps",
             "SimPO scores the chosen reply by its summed, not per-token, log-prob (the formula test notices)",
             ["tests/test_preference_trainers.py"]),
    Mutation("offline:distill-loss_type-ignored", "rewardlab/trainers/distill.py",
             'if cfg.loss_type == "gkd":\n            loss = token_mean(jsd_per_token',
             'if False:\n            loss = token_mean(jsd_per_token',
             "loss_type gkd trains on the opd surrogate instead of the generalised JSD", OFFLINE_TESTS),
    Mutation("offline:gkd-beta-ignored", "rewardlab/trainers/distill.py",
             "attention, C, cfg.beta, cfg.temperature)", "attention, C, 0.5, cfg.temperature)",
             "GKD's JSD uses beta 0.5 whatever beta says", OFFLINE_TESTS),
    # ------------------------------------------------------------ classic RL
    Mutation("classic:q_learning-update-sign", "rewardlab/classic/q_learning.py",
             "q_table[state, action] += learning_rate * td_error", "q_table[state, action] -= learning_rate * td_error",
             "the tabular update moves Q(s, a) away from its TD target", CLASSIC_TESTS),
    Mutation("classic:q_learning-no-bootstrap", "rewardlab/classic/q_learning.py",
             "bootstrap = 0.0 if terminated else gamma * q_table[next_state].max()", "bootstrap = 0.0",
             "Q-learning forgets the next state's value: Q is the immediate reward only", CLASSIC_TESTS),
    Mutation("classic:dqn-loss-sign", "rewardlab/classic/dqn.py", "loss.backward()", FLIP,
             "DQN ascends its TD regression loss", CLASSIC_TESTS),
    Mutation("classic:dqn-terminal-bootstraps", "rewardlab/classic/dqn.py",
             'gamma * (1.0 - batch["terminated"]) * next_value', "gamma * next_value",
             "DQN bootstraps through termination from the (meaningless) value of the terminal state", CLASSIC_TESTS),
    Mutation("classic:reinforce-loss-sign", "rewardlab/classic/reinforce.py", "loss.backward()", FLIP,
             "REINFORCE makes the actions that earned more less likely", CLASSIC_TESTS),
    Mutation("classic:a2c-loss-sign", "rewardlab/classic/a2c.py", "loss.backward()", FLIP,
             "A2C makes the actions with positive advantage less likely", CLASSIC_TESTS),
    Mutation("classic:ppo-loss-sign", "rewardlab/classic/ppo.py", "loss.backward()", FLIP,
             "PPO makes the actions with positive advantage less likely", CLASSIC_TESTS),
]
