"""KL estimators between the policy and the reference, and the controllers that set its weight.

Estimators are per token, from samples drawn under the policy (docs/algorithms.md#kl-estimators),
with delta = ref_logp - logp:

    k1 = -delta                 unbiased, can be negative per token
    k2 = delta^2 / 2            biased, low variance
    k3 = exp(delta) - delta - 1 unbiased for KL(pi || ref) and never negative
"""

from __future__ import annotations

import torch

KL_KINDS = ("k1", "k2", "k3")

# exp() of the log-ratio overflows early: fp16 tops out near exp(11), fp32 near exp(88).
# A token the policy has all but ruled out (or an unmasked padding slot holding a filler
# log-prob) can make delta that large, and one inf in the loss turns every gradient NaN.
# |delta| <= 20 leaves every realistic token untouched (exp(20) ~ 5e8) while staying finite.
_K3_DELTA_LIMIT = 20.0


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token KL estimate; logp and ref_logp of the same shape -> that shape.

    Gradient flows through logp (k3 is the usual in-loss KL penalty of GRPO). k3 clamps delta
    to [-20, 20] before the exp, see _K3_DELTA_LIMIT.
    """
    delta = ref_logp - logp
    if kind == "k1":
        return -delta
    if kind == "k2":
        return 0.5 * delta.square()
    if kind == "k3":
        delta = delta.clamp(-_K3_DELTA_LIMIT, _K3_DELTA_LIMIT)
        return torch.exp(delta) - delta - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; valid: {', '.join(KL_KINDS)}")


class FixedKLController:
    """A constant KL coefficient; same interface as AdaptiveKLController."""

    def __init__(self, beta: float):
        if beta < 0:
            raise ValueError(f"FixedKLController beta must be >= 0, got {beta}")
        self.value = float(beta)

    def update(self, observed_kl: float | torch.Tensor, n_steps: int) -> None:
        """Nothing to adapt; present so trainers can call it unconditionally."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Ziegler et al.'s proportional controller steering the observed KL toward `target`.

    e = clip(KL / target - 1, -0.2, 0.2); beta <- beta (1 + e n_steps / horizon), where
    n_steps is the number of samples (episodes) the KL was measured on. The clip keeps a
    single noisy KL reading from moving beta by more than 20% of n_steps / horizon.
    """

    def __init__(self, init_beta: float, target: float, horizon: float):
        if init_beta < 0:
            raise ValueError(f"AdaptiveKLController init_beta must be >= 0, got {init_beta}")
        if target <= 0 or horizon <= 0:
            raise ValueError(
                f"AdaptiveKLController target and horizon must be > 0; got target={target}, horizon={horizon}"
            )
        self.value = float(init_beta)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, observed_kl: float | torch.Tensor, n_steps: int) -> None:
        proportional_error = min(max(float(observed_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        # Only the running coefficient is state; target and horizon come from the config.
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
