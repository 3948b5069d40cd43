"""The online update over two processes (torch.distributed, gloo, on CPU) equals the update in one process on
the same global batch: injected rollouts, rewards that vary within groups, a group split across the processes,
each process's completions at its own width. And a GRPO run under torchrun writes one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rewardlab.config import load_config
from rewardlab.models import build_char_tokenizer, build_tiny_model, token_logprobs
from rewardlab.rollout import Rollout
from rewardlab.trainers import gather
from rewardlab.trainers.batches import ScoredBatch
from rewardlab.trainers.lifecycle import grad_step
from rewardlab.trainers.policy_update import LoopParts, loss_plan, update_policy

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}
ROOT = Path(__file__).resolve().parents[1]
# method, overrides: each aggregation, an outcome estimator with the KL in the loss, a per-token one with it in the reward
VARIANTS = [("grpo", {}), ("dapo", {"dynamic_sampling": False, "epsilon_high": 0.28}), ("dr_grpo", {}),
            ("rloo", {"beta": 0.04}), ("reinforce_pp", {}), ("grpo", {"mini_batch_size": 4, "num_iterations": 2})]
SPLIT = 7  # rows 0-6 on process 0, 7-11 on process 1: group 1 (rows 4-7) straddles them


def injected_batch(model) -> ScoredBatch:
    """12 rows, 3 prompts x 4 samples, completions of different lengths, rewards varying within every group."""
    g = torch.Generator().manual_seed(3)
    prompt_ids = torch.randint(4, 40, (12, 5), generator=g)
    prompt_mask = torch.ones(12, 5, dtype=torch.long)
    prompt_mask[:4, :2] = 0  # group 0's prompt is shorter (left-padded)
    lengths = torch.tensor([6, 2, 5, 3, 4, 6, 1, 3, 2, 5, 4, 6])
    completion_mask = (torch.arange(6)[None, :] < lengths[:, None]).long()
    completion_ids = torch.randint(4, 40, (12, 6), generator=g) * completion_mask
    with torch.no_grad():
        sampled = token_logprobs(model, torch.cat([prompt_ids, completion_ids], 1),
                                 torch.cat([prompt_mask, completion_mask], 1), 6)[0] * completion_mask
    rollout = Rollout(prompt_ids, prompt_mask, completion_ids, completion_mask, sampled,
                      torch.arange(3).repeat_interleave(4), ["eos"] * 12)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.0, 1.0, 0.3, 0.9, 0.1, 0.4, 1.0, 0.0])
    return ScoredBatch(rollout, rewards, {}, [{"prompt": "x"}] * 12)


def rows_of(batch: ScoredBatch, rows: slice) -> ScoredBatch:
    """The given rows, completions cut to their own widest row (each process has its own width)."""
    r = batch.rollout
    width = int(r.completion_mask[rows].sum(1).max())
    part = Rollout(r.prompt_ids[rows], r.prompt_mask[rows], r.completion_ids[rows, :width], r.completion_mask[rows, :width],
                   r.sampled_logprobs[rows, :width], r.group_index[rows], r.finish_reason[rows])
    return ScoredBatch(part, batch.rewards[rows], {}, batch.records[rows])


def train_variants(rows: slice | None) -> list[torch.Tensor]:
    """For each variant: the flat parameters after two updates of a fresh tiny model on the injected batch (its
    `rows`, over several processes). Plain SGD, so that a parameter's difference is its gradient's difference
    times the learning rate (Adam divides a near-zero gradient by its own size, and so magnifies rounding)."""
    out = []
    for method, overrides in VARIANTS:
        cfg = load_config(method, overrides={"model_config": TINY, "learning_rate": 0.01, "batch_size": 12,
                                             "num_generations": 4, "max_completion_length": 6, **overrides})
        model = build_tiny_model(build_char_tokenizer(), seed=0, **TINY)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        ctx = SimpleNamespace(model=model, optimizer=optimizer,
                              scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
        cfg.model = "tiny"
        plan = loss_plan(cfg)
        parts = LoopParts.build(cfg, plan, model, build_char_tokenizer(), torch.device("cpu"))
        batch = injected_batch(model)
        for _ in range(2):
            update_policy(cfg, ctx, plan, parts, rows_of(batch, rows) if rows else batch, grad_step)
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return out


def _process(rank: int, world: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    gather._CURRENT = gather.ProcessGroup()
    try:
        torch.save(train_variants(slice(0, SPLIT) if rank == 0 else slice(SPLIT, 12)), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_update_exactly_as_one_on_the_same_global_batch(tmp_path):
    torch.set_num_threads(1)
    single = train_variants(None)
    processes = mp.spawn(_process, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=False)
    for _ in range(120):  # a collective that one process never reaches would hang: fail after 4 minutes instead
        if processes.join(timeout=2):
            break
    else:
        for process in processes.processes:
            process.kill()
        pytest.fail("the two processes did not finish within 4 minutes (a collective mismatch?)")
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    start = torch.cat([p.detach().flatten() for p in build_tiny_model(build_char_tokenizer(), seed=0, **TINY).parameters()])
    for (method, overrides), one, a, b in zip(VARIANTS, single, rank0, rank1):
        assert torch.equal(a, b), f"{method} {overrides}: the processes' parameters differ"
        assert (one - start).abs().max() > 1e-3, f"{method}: the update did not move the parameters"
        assert (a - one).abs().max() < 1e-6, f"{method} {overrides}: 2 processes differ from 1 by {(a - one).abs().max():.2e}"


@pytest.mark.slow
def test_grpo_under_torchrun_writes_one_run_directory(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rewardlab", "train", "grpo",
           f"output_dir={tmp_path}", "run_name=g", "max_steps=3", "batch_size=16", "num_generations=4",
           "max_completion_length=4", "eval_n=8", "torch_threads=1", "tensorboard=false",
           "model_config={hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}"]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    rows = [json.loads(line) for line in open(tmp_path / "g" / "metrics.jsonl")]
    assert [r["step"] for r in rows if "reward" in r] == [1, 2, 3]  # each step once, from the main process
    assert (tmp_path / "g" / "final" / "model.safetensors").exists()
