"""Every number of the online loop that, in a run over several processes, must come from all of them, in one
module: a multi-process version replaces `current()` and nothing else changes.

In one process each operation is the identity (SingleProcess). Under torch.distributed each process holds a
shard of the step's rows (whole groups, or a group split across processes), and:

    rows(*tensors)       every process's rows, in rank order: token rewards and group ids before an advantage
                         estimator (it compares a row with its whole group; reinforce_pp and gae whiten over the
                         whole batch), masks and critic values with them; rewards before group statistics
    local(*tensors)      this process's rows of tensors computed on rows(...)
    token_count(mask)    valid tokens over all processes: the token_mean share of a minibatch
    mean(value)          a scalar averaged over processes: the adaptive KL controller's input

Call sites: policy_update.compute_advantages, policy_update.minibatch_weight, online.train_grpo (zero-variance
fraction), batches.dynamic_sample (which groups are informative), online.step_metrics (reward statistics).
"""

from __future__ import annotations

import torch


class SingleProcess:
    """The gather operations of a run in one process: each returns its input."""

    rank = 0
    world_size = 1

    def rows(self, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        return tensors

    def local(self, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        return tensors

    def token_count(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.sum()

    def mean(self, value: float) -> float:
        return value


_CURRENT = SingleProcess()


def current() -> SingleProcess:
    """The gather operations of this run."""
    return _CURRENT
