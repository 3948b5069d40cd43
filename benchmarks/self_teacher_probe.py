"""Does the self-teacher know more than the student? Log-prob of the correct answer with and without the hint.

    python benchmarks/self_teacher_probe.py runs/self_distill/start1/final [--n 200]

SDPO, RLSD and SRPO assume that the policy, re-prompted with a correct solution (config teacher_template),
puts more probability on the correct answer than the policy does on the plain prompt. This measures it on
held-out problems of the demo's arithmetic task: the mean summed log-prob of the reference answer (plus
EOS) under the plain prompt and under the teacher prompt that shows that very answer.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse

import torch

from rewardlab.config import GRPOConfig
from rewardlab.demo import DEMO_TASK
from rewardlab.models import load_policy, token_logprobs
from rewardlab.rollout import left_pad
from rewardlab.tasks import make_task


@torch.no_grad()
def answer_logprob(model, tok, prompts: list[str], answers: list[str]) -> torch.Tensor:
    prompt_ids, prompt_mask = left_pad([tok(p, add_special_tokens=False)["input_ids"] for p in prompts], tok.pad_token_id)
    completions = [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in answers]
    width = max(len(c) for c in completions)
    completion_ids = torch.full((len(answers), width), tok.pad_token_id)
    completion_mask = torch.zeros((len(answers), width), dtype=torch.long)
    for row, ids in enumerate(completions):
        completion_ids[row, : len(ids)], completion_mask[row, : len(ids)] = torch.tensor(ids), 1
    logp, _ = token_logprobs(model, torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1), width)
    return (logp * completion_mask).sum(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    model, tok = load_policy(args.model)
    model.eval()
    records = make_task("arithmetic", **DEMO_TASK).generate(args.n, seed=7, split="test")
    template = GRPOConfig().teacher_template
    plain = answer_logprob(model, tok, [r["prompt"] for r in records], [r["answer"] for r in records])
    hinted = answer_logprob(model, tok, [template.format(prompt=r["prompt"], solution=r["answer"]) for r in records],
                            [r["answer"] for r in records])
    print(f"mean log-prob of the correct answer, {args.n} held-out problems: plain prompt {plain.mean():.2f}, "
          f"teacher prompt showing the answer {hinted.mean():.2f}; the teacher is more confident on "
          f"{(hinted > plain).float().mean():.1%} of them")


if __name__ == "__main__":
    main()
