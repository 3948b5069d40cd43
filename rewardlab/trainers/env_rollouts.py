"""Text environments in the trainers: episodes stand in for prompts, the demonstrator for a dataset.

The online loop (`train_grpo`) keeps its shape with `cfg.env` set: its "records" are environment seeds,
`rollout_and_score` plays a group of `num_generations` episodes per seed in lockstep and returns the same
Rollout + rewards the loss consumes (environment tokens masked out), and evaluation plays greedy
episodes on fresh seeds. SFT learns the turns of the environment's noisy demonstrator (the cold start).
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import CommonConfig, GRPOConfig
from ..envs import DemonstratorAgent, make_text_env
from ..envs.evaluate import TRAIN_SEED_BASE, evaluate_agent
from ..rollout import SamplingParams
from ..rollout.episodes import PolicyAgent, episodes_to_rollout, run_episodes
from ..tasks.splits import check_split
from .batches import ScoredBatch
from .inputs import eval_split

# Seeds of training episodes: 10^9 + 10^7 * training seed + i (evaluation uses seeds below 10^9);
# the demonstrator's episodes start half-way through the block.
TRAIN_SEED_STRIDE = 10**7
DEMO_OPTION = "demo_follow"


def env_options(cfg: CommonConfig) -> dict[str, Any]:
    """The environment's constructor options (demo_follow is the demonstrator's, not the env's)."""
    return {k: v for k, v in cfg.env_options.items() if k != DEMO_OPTION}


def env_seed_records(cfg: CommonConfig, n: int) -> list[dict]:
    """The online loop's "prompts" when training on an environment: one record per episode seed. The
    environment is built once here, so a wrong name or option fails before the run directory exists."""
    make_text_env(cfg.env, env_options(cfg)).close()
    base = TRAIN_SEED_BASE + TRAIN_SEED_STRIDE * cfg.seed
    return [{"prompt": f"{cfg.env} seed {base + i}", "env_seed": base + i} for i in range(n)]


def model_max_length(model: torch.nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


class EnvRollouts:
    """Rollout and evaluation on a text environment for the online loop (see module docstring)."""

    def __init__(self, cfg: GRPOConfig, model: torch.nn.Module, tokenizer: Any, engine: Any, sampling: SamplingParams):
        self.cfg, self.model, self.tokenizer = cfg, model, tokenizer
        self.options = env_options(cfg)
        self.agent = PolicyAgent(engine, tokenizer, sampling, model_max_length(model))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.last_eval: dict[str, float] = {}

    def make_env(self):
        return make_text_env(self.cfg.env, self.options)

    def rollout_and_score(self, batch: list[dict]) -> ScoredBatch:
        """The online loop's rollout_and_score: a ScoredBatch whose per_function holds each row's episode metrics."""
        cfg = self.cfg
        seeds = [r["env_seed"] for r in batch for _ in range(cfg.num_generations)]
        episodes = run_episodes(self.make_env, seeds, self.agent)
        rollout, rewards, source = episodes_to_rollout(
            episodes, seeds, self.tokenizer.pad_token_id, cfg.env_reward, cfg.env_turns_per_episode, self.generator
        )
        device = next(self.model.parameters()).device
        for name in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "sampled_logprobs", "group_index",
                     "completion_attention_mask"):
            setattr(rollout, name, getattr(rollout, name).to(device))
        # each row carries its episode's metrics, so they follow the rows through dynamic sampling
        summaries = [ep.summary() for ep in episodes]
        per_metric = {f"env/{key}": torch.tensor([summaries[e][key] for e in source]) for key in summaries[0]}
        rows = [{"prompt": observation} for observation in rollout.prompts_text]
        return ScoredBatch(rollout, rewards.to(device), per_metric, rows)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, list[dict]]:
        """Greedy episodes on the held-out seeds: (score, per-episode rows); every metric in last_eval. The score is
        the environment's own "score" metric (TextEnv.summarize), or the mean episode return when it has none."""
        was_training = self.model.training
        self.model.eval()
        greedy = PolicyAgent(self.agent.engine, self.tokenizer, SamplingParams(self.cfg.max_completion_length, 0.0),
                             self.agent.max_length)
        result = evaluate_agent(self.cfg.env, self.options, greedy, self.cfg.eval_n, self.cfg.eval_seed, split=eval_split(self.cfg))
        self.model.train(was_training)
        self.last_eval = dict(result.metrics)
        return result.metrics["score"] if "score" in result.metrics else result.metrics["return"], result.rows


# --- the cold start: the demonstrator's turns as SFT records --------------------------------------------


def demonstration_records(cfg: CommonConfig, n: int, split: str = "train") -> list[dict]:
    """At least `n` SFT records, one per demonstrator turn: prompt = the chat the policy would see at that
    turn (the whole conversation, or the instructions + current observation for context "last"),
    completion = the demonstrator's text, legal = the legal actions then. The demonstrator's follow
    probability is env_options["demo_follow"] (default 0.5). Each split ("train", "tune", "test") plays its
    own episode seeds, at 1/2, 5/8 and 3/4 of this training seed's range (far apart: a split uses a few
    thousand), with its own demonstrator stream."""
    check_split(split)
    follow = float(cfg.env_options.get(DEMO_OPTION, 0.5))
    eighths = {"train": 4, "tune": 5, "test": 6}[split]
    stream = {"train": cfg.seed * 2, "test": cfg.seed * 2 + 1, "tune": [cfg.seed, 2]}[split]  # a list: no int's stream
    agent = DemonstratorAgent(follow=follow, seed=stream)
    base = TRAIN_SEED_BASE + TRAIN_SEED_STRIDE * cfg.seed + eighths * TRAIN_SEED_STRIDE // 8
    records: list[dict] = []
    options = env_options(cfg)
    chunk = 0
    while len(records) < n:
        seeds = [base + chunk * 1000 + i for i in range(1000)]
        chunk += 1
        for ep in run_episodes(lambda: make_text_env(cfg.env, options), seeds, agent):
            system = ep.messages[:1] if ep.messages[0]["role"] == "system" else []
            for k, turn in enumerate(ep.turns):
                user = len(system) + 2 * k  # messages: [system], user, assistant, user, assistant, ...
                history = ep.messages[: user + 1] if ep.context == "full" else system + [ep.messages[user]]
                records.append({"prompt": history, "completion": turn.text, "legal": list(turn.before.get("legal", []))})
    return records[:n]


def legal_action_verifier(cfg: CommonConfig):
    """A reward function: 1.0 when the completion's action parses and is legal at that turn (the `legal`
    column), else 0.0. SFT on an environment reports this as its held-out accuracy."""
    parse = make_text_env(cfg.env, env_options(cfg)).unwrapped.parse_action

    def legal_action(prompts, completions, legal, **_: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [float(parse(t) in allowed) for t, allowed in zip(texts, legal)]

    return legal_action
