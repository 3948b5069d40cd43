"""What the online loop optimises (`objective`): each entry of OBJECTIVES says what it changes in the
policy-gradient loss, through up to three hooks, and what it needs built.

    advantages(cfg, advantages, teacher, t) -> advantages           after the estimator (rlsd)
    token_loss(cfg, per_token, logp, old, teacher, rewards, mask)    the per-token loss, before the KL term and
        -> (per_token, metrics)                                      the aggregation (sdpo, srpo)
    loss(cfg, parts, model, rollout, t, rows, logp, old, advantages, mask)
        -> (loss, metrics)                                           replaces the aggregated loss (flowrl)

`advantages` is [B,T]; an objective with outcome_only=True reads one value per row (advantages[:, 0]) and the
config refuses it with a per-token estimator. policy_gradient uses no hook. Adding an objective is one entry here
(and one test); the driver and policy_update.py do not change. The math is in docs/algorithms.md (#flowrl, #self-distillation-sdpo-rlsd-srpo).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..algos import FLOWRL_IMPORTANCE, flowrl_loss, rlsd_advantages
from ..config_loading import ConfigError
from ..registry import Registry
from .self_distill import self_distill_per_token


@dataclass(frozen=True)
class Objective:
    needs_reference: bool = False  # the loss reads the reference policy's log-probs
    log_z: bool = False  # a learned log Z head (trainers/flowrl.py), not exported
    self_teacher: bool = False  # the policy (or its EMA) re-prompted with a solution (trainers/self_distill.py)
    outcome_only: bool = True  # reads one advantage per completion, over task prompts (not env episodes)
    advantages: Callable | None = None
    token_loss: Callable | None = None
    loss: Callable | None = None
    check: Callable | None = None  # check(cfg): the objective's own settings, at load; raises ConfigError


def _choice(cfg, name: str, choices: tuple[str, ...]) -> None:
    if getattr(cfg, name) not in choices:
        raise ConfigError(f"{name}={getattr(cfg, name)!r} is not valid; choose one of: {', '.join(choices)}")


def check_flowrl(cfg) -> None:
    _choice(cfg, "flowrl_importance", FLOWRL_IMPORTANCE)
    for name in ("flowrl_beta", "flowrl_weight_clamp", "log_z_learning_rate"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(cfg, name)}")


def check_self_teacher(cfg) -> None:
    _choice(cfg, "self_teacher", ("ema", "policy"))
    _choice(cfg, "teacher_context", ("sibling", "answer", "followup"))
    if cfg.teacher_context == "followup":
        from ..tasks import TASKS

        if cfg.dataset or cfg.env or cfg.task not in TASKS or not hasattr(TASKS[cfg.task], "followup"):
            raise ConfigError("teacher_context=followup needs a built-in task with a simulated user (task=arithmetic; "
                              f"its followup_rate option adds second turns to the cold start); got task={cfg.task!r}"
                              + (f", dataset={cfg.dataset!r}" if cfg.dataset else "") + (f", env={cfg.env!r}" if cfg.env else ""))
    if not (0 <= cfg.sdpo_mix <= 1 and 0 <= cfg.rlsd_lambda <= 1 and 0 < cfg.teacher_ema_rate <= 1):
        raise ConfigError(f"sdpo_mix and rlsd_lambda must be in [0, 1] and teacher_ema_rate in (0, 1]; got sdpo_mix="
                          f"{cfg.sdpo_mix}, rlsd_lambda={cfg.rlsd_lambda}, teacher_ema_rate={cfg.teacher_ema_rate}")
    if not 0 < cfg.rlsd_eps <= 1:
        raise ConfigError(f"rlsd_eps must be in (0, 1], got {cfg.rlsd_eps}")


def rlsd_reweight(cfg, advantages, teacher, t):
    """RLSD: the verifier sets each sample's sign, the self-teacher each token's magnitude."""
    return rlsd_advantages(advantages[:, 0], teacher.logp, t.sampled_logp, t.completion_mask, cfg.rlsd_lambda, cfg.rlsd_eps)


def self_distill_token_loss(cfg, per_token, logp, old, teacher, rewards, mask):
    """sdpo (distil toward the self-teacher, mixed by sdpo_mix) or srpo (failed rows distil, successes keep GRPO)."""
    return self_distill_per_token(cfg.objective, per_token, logp, old, teacher, rewards >= cfg.success_reward, mask, cfg.sdpo_mix)


def flowrl_minibatch_loss(cfg, parts, model, rollout, t, rows, logp, old, advantages, mask):
    """FlowRL: the trajectory-balance loss toward exp(flowrl_beta * r_hat) pi_ref (r_hat = the GRPO advantage)."""
    z = parts.log_z(model, rollout.prompt_ids[rows], rollout.prompt_mask[rows])
    loss, metrics = flowrl_loss(z, logp, t.ref_logp[rows], old, advantages[rows, 0], mask, cfg.flowrl_beta,
                                cfg.flowrl_importance, cfg.flowrl_weight_clamp, cfg.epsilon, cfg.epsilon_high or None)
    return loss, {f"flowrl/{k}": v for k, v in metrics.items()}


OBJECTIVES: Registry[Objective] = Registry("objective")
OBJECTIVES.add("policy_gradient", Objective(outcome_only=False))
OBJECTIVES.add("flowrl", Objective(needs_reference=True, log_z=True, loss=flowrl_minibatch_loss, check=check_flowrl))
OBJECTIVES.add("sdpo", Objective(self_teacher=True, token_loss=self_distill_token_loss, check=check_self_teacher))
OBJECTIVES.add("srpo", Objective(self_teacher=True, token_loss=self_distill_token_loss, check=check_self_teacher))
OBJECTIVES.add("rlsd", Objective(self_teacher=True, advantages=rlsd_reweight, check=check_self_teacher))
