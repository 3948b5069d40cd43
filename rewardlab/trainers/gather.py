"""Every number of the online loop that, in a run over several processes, must come from all of them, in one
module: a multi-process version replaces `current()` and nothing else changes.

In one process each operation is the identity (SingleProcess). Under torch.distributed (ProcessGroup, set up by
`start()` when the run is launched with torchrun) each process holds a shard of the step's rows (whole groups, or
a group split across processes; group ids are global, so a group's rows are found wherever they live), and:

    rows(*tensors)       every process's rows, in rank order: token rewards and group ids before an advantage
                         estimator (it compares a row with its whole group; reinforce_pp and gae whiten over the
                         whole batch), masks and critic values with them; rewards before group statistics
    local(*tensors)      this process's rows of tensors computed on rows(...)
    token_count(mask)    valid tokens over all processes: the token_mean share of a minibatch
    count(n)             a number summed over processes: rows of the global batch, for the per-row share
    mean(value)          a scalar averaged over processes: the adaptive KL controller's input
    shard(items)         this process's contiguous part of a list, and the index of its first item

Call sites: policy_update.compute_advantages, policy_update.minibatch_weight, online.train_grpo (zero-variance
fraction), batches.dynamic_sample (which groups are informative), online.step_metrics (reward statistics).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


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

    def count(self, n: int) -> int:
        return n

    def mean(self, value: float) -> float:
        return value

    def shard(self, items: list) -> tuple[list, int]:
        return items, 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        pass

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module whose forward the loss runs through (DistributedDataParallel over several processes)."""
        return module


class ProcessGroup(SingleProcess):
    """The same operations over an initialised torch.distributed process group (gloo on CPU, nccl on GPUs).

    rows() pads every process's tensors to common rows and columns, all-gathers them and concatenates the real
    rows in rank order (columns stay padded to the widest: pad positions are 0, and masks are 0 there); local()
    undoes the last rows(): this process's rows, at its own width.
    """

    def __init__(self):
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self._layout: list[tuple[int, int]] = []  # (rows, columns) of each process at the last rows()

    def _sizes(self, tensor: torch.Tensor) -> list[tuple[int, ...]]:
        shapes: list = [None] * self.world_size
        dist.all_gather_object(shapes, tuple(tensor.shape))
        return shapes

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        shapes = self._sizes(tensor)
        if tensor.dim() > 1:
            self._layout = [(shape[0], shape[1]) for shape in shapes]
        rows = max(shape[0] for shape in shapes)
        padded = torch.zeros((rows, *[max(shape[d] for shape in shapes) for d in range(1, tensor.dim())]),
                             dtype=tensor.dtype, device=tensor.device)
        padded[tuple(slice(0, n) for n in tensor.shape)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[: shape[0]] for part, shape in zip(parts, shapes)])

    def rows(self, *tensors):
        return tuple(None if t is None else self._gather(t) for t in tensors)

    def local(self, *tensors):
        start = sum(rows for rows, _ in self._layout[: self.rank])
        rows, columns = self._layout[self.rank]
        return tuple(None if t is None else t[start : start + rows, :columns] for t in tensors)

    def token_count(self, mask: torch.Tensor) -> torch.Tensor:
        total = mask.sum().to(torch.float64)
        dist.all_reduce(total)
        return total.to(mask.sum().dtype)

    def count(self, n: int) -> int:
        total = torch.tensor(n, dtype=torch.long)
        dist.all_reduce(total)
        return int(total)

    def mean(self, value: float) -> float:
        total = torch.tensor(value, dtype=torch.float64)
        dist.all_reduce(total)
        return float(total) / self.world_size

    def shard(self, items: list) -> tuple[list, int]:
        if len(items) % self.world_size:
            raise ValueError(f"{len(items)} prompts per step do not split over {self.world_size} processes; use a "
                             f"multiple of {self.world_size} (batch_size / num_generations)")
        size = len(items) // self.world_size
        return items[self.rank * size : (self.rank + 1) * size], self.rank * size

    def barrier(self) -> None:
        dist.barrier()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(module)


_CURRENT: SingleProcess = SingleProcess()


def current() -> SingleProcess:
    """The gather operations of this run."""
    return _CURRENT


def start() -> SingleProcess:
    """Under torchrun (WORLD_SIZE > 1 in the environment): join the process group (gloo on CPU, nccl with
    CUDA) and use ProcessGroup; otherwise SingleProcess. Called once at the start of a run."""
    global _CURRENT
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized() and dist.get_world_size() > 1:
        if not isinstance(_CURRENT, ProcessGroup):
            _CURRENT = ProcessGroup()
    elif isinstance(_CURRENT, ProcessGroup):  # left from a process group that has ended
        _CURRENT = SingleProcess()
    return _CURRENT
