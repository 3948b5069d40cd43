"""The multi-turn episode runner: many text-environment episodes in lockstep, one batched generate per turn.

    episodes = run_episodes(lambda: make_text_env("tictactoe"), seeds, PolicyAgent(engine, tok, params))
    rollout, rewards, source_episode = episodes_to_rollout(episodes, group_ids, tok.pad_token_id)

Each turn, every unfinished episode gets one turn of text from the agent, and its environment steps.
For the language-model policy (`PolicyAgent`) the conversation is kept as the exact token ids the model
saw and wrote. `episodes_to_rollout` turns finished episodes into the Rollout the online loss already
consumes:

- context "full" (the conversation grows): one row per episode. The prompt is the first turn's prompt
  (instructions + first observation); the "completion" is everything after it, the policy's turns and the
  environment's replies interleaved. `completion_mask` is 1 only on tokens the policy wrote, so only they
  carry gradient; `completion_attention_mask` is 1 on all of them, so the environment's text is attended.
- context "last" (each turn sees the current observation only): one row per turn.

Rewards: the episode return for every row of the episode, or (context "last") the return-to-go from the
row's turn, grouped with the same turn of the other episodes in the group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.chat import render_prompt
from ..data.collate import left_pad, pad_values
from .types import Engine, Rollout, SamplingParams


@dataclass
class Turn:
    """One policy turn: the text written, what the environment answered (`info`; `before` is the info the
    agent acted on), and (for a language-model
    agent) the tokens: prompt_ids the model saw, completion_ids it wrote (EOS included when written),
    their sampled log-probs, and the finish reason ("eos" or "length")."""

    text: str
    reward: float
    info: dict[str, Any]
    before: dict[str, Any] = field(default_factory=dict)
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str = "eos"


@dataclass
class Episode:
    """One episode in progress or finished. `messages` is the chat so far (system, user, assistant, ...);
    `info` is the environment's latest info; `pending` holds the agent's token record of the turn being
    played until the environment has answered."""

    seed: int
    env: Any
    messages: list[dict[str, str]]
    info: dict[str, Any]
    turns: list[Turn] = field(default_factory=list)
    done: bool = False
    pending: dict[str, Any] | None = None

    @property
    def episode_return(self) -> float:
        return float(sum(t.reward for t in self.turns))

    @property
    def context(self) -> str:
        return self.env.unwrapped.context

    def summary(self) -> dict[str, float]:
        """The environment's per-episode metrics plus the return and number of turns."""
        return {"return": self.episode_return, "turns": float(len(self.turns)),
                **self.env.unwrapped.summarize([t.info for t in self.turns])}


def run_episodes(
    make_env: Callable[[], Any], seeds: list[int], agent: Any, max_turns: int | None = None,
    on_turn: Callable[[int], None] | None = None,
) -> list[Episode]:
    """Play one episode per seed, all in lockstep: each round asks the agent for every unfinished episode's
    next turn at once (one batched generate for a language model), then steps the environments."""
    episodes = []
    for seed in seeds:
        env = make_env()
        obs, info = env.reset(seed=int(seed))
        messages = [{"role": "system", "content": info["instructions"]}] if info.get("instructions") else []
        messages.append({"role": "user", "content": obs})
        episodes.append(Episode(int(seed), env, messages, info))
    turn = 0
    while True:
        active = [ep for ep in episodes if not ep.done]
        if not active:
            break
        if max_turns is not None and turn >= max_turns:
            raise RuntimeError(f"{len(active)} episodes still running after max_turns={max_turns}; raise max_turns")
        texts = agent.act(active)
        if len(texts) != len(active):
            raise RuntimeError(f"agent {type(agent).__name__} returned {len(texts)} turns for {len(active)} episodes")
        for ep, text in zip(active, texts):
            obs, reward, terminated, truncated, info = ep.env.step(text)
            record = ep.pending or {}
            ep.pending = None
            ep.turns.append(Turn(text, float(reward), info, ep.info, **record))
            ep.info = info
            ep.messages.append({"role": "assistant", "content": text})
            ep.done = terminated or truncated
            if not ep.done:
                ep.messages.append({"role": "user", "content": obs})
        if on_turn is not None:
            on_turn(turn)
        turn += 1
    return episodes


class PolicyAgent:
    """A language model as an agent: renders each episode's conversation with the chat template, samples
    all turns of a round in one `engine.generate`, and records the exact tokens for training."""

    def __init__(self, engine: Engine, tokenizer: Any, params: SamplingParams, max_length: int | None = None):
        self.engine, self.tokenizer, self.params = engine, tokenizer, params
        self.max_length = max_length

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        if generation_prompt:
            return render_prompt(messages, self.tokenizer)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def prompt_ids(self, ep: Episode) -> list[int]:
        """The tokens the model sees for the episode's next turn."""
        if ep.context == "last" or not ep.turns:
            system = [m for m in ep.messages[:1] if m["role"] == "system"]
            return self._encode(self._render(system + ep.messages[-1:], True))
        last = ep.turns[-1]
        eos = self.tokenizer.eos_token_id
        written = last.prompt_ids + last.completion_ids
        if not last.completion_ids or last.completion_ids[-1] != eos:
            written = written + [eos]  # a turn cut at the length limit is closed by the template's EOS
        before = self._render(ep.messages[:-1], False)
        after = self._render(ep.messages, True)
        if not after.startswith(before):
            raise ValueError(
                "the chat template does not render the conversation so far as a prefix of the conversation with "
                "the next observation, so the environment's reply cannot be appended as tokens; use context='last'"
            )
        return written + self._encode(after[len(before):])

    def act(self, episodes: list[Episode]) -> list[str]:
        prompts = [self.prompt_ids(ep) for ep in episodes]
        if self.max_length is not None:
            longest = max(len(p) for p in prompts) + self.params.max_new_tokens
            if longest > self.max_length:
                raise ValueError(
                    f"an episode's conversation needs {longest} positions but the model has {self.max_length}; "
                    "raise the model's max_position_embeddings, shorten the turns, or use context='last'"
                )
        rollout = self.engine.generate(prompts, 1, self.params)
        texts = []
        for row, (ep, prompt) in enumerate(zip(episodes, prompts)):
            keep = rollout.completion_mask[row].bool()
            ep.pending = {
                "prompt_ids": prompt,
                "completion_ids": rollout.completion_ids[row][keep].tolist(),
                "logprobs": rollout.sampled_logprobs[row][keep].tolist(),
                "finish_reason": rollout.finish_reason[row],
            }
            texts.append(rollout.completions_text[row])
        return texts


REWARD_MODES = ("return", "return_to_go", "regret_to_go", "regret")


def returns_to_go(rewards: list[float]) -> list[float]:
    """[r0, r1, r2] -> [r0 + r1 + r2, r1 + r2, r2] (undiscounted: episodes are short and finite)."""
    out, running = [], 0.0
    for r in reversed(rewards):
        running += r
        out.append(running)
    return out[::-1]


def _observation(ep: Episode, turn: int) -> str:
    """The observation the policy answered at `turn` (messages: [system], user, assistant, user, ...)."""
    system = 1 if ep.messages and ep.messages[0]["role"] == "system" else 0
    return ep.messages[system + 2 * turn]["content"]


def episodes_to_rollout(
    episodes: list[Episode],
    group_ids: list[int],
    pad_id: int,
    reward_mode: str = "return",
    turns_per_episode: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[Rollout, torch.Tensor, list[int]]:
    """The training batch of finished policy episodes: (Rollout, rewards [B], source episode of each row).

    group_ids: one per episode; episodes with the same id (same environment seed) form a group.
    reward_mode: "return" (episode return on every row), "return_to_go" (context "last" only: each
    turn's row gets the reward still to come, grouped with the same turn of its group's episodes) or
    "regret_to_go" (like return_to_go, with minus the *expected* regret still to come, from the "regret"
    the environment reports per turn: a simulator knows its arm means, so the training signal need not
    carry the noise of the reward draws) or "regret" (minus this turn's expected regret alone: a myopic,
    low-variance signal for the bandits).
    turns_per_episode (context "last"): train on this many turns per episode, the same turn indices for
    every episode of a group (0: all turns).
    """
    if reward_mode not in REWARD_MODES:
        raise ValueError(f"reward_mode={reward_mode!r} is not valid; use one of {', '.join(REWARD_MODES)}")
    if reward_mode.startswith("regret") and any("regret" not in t.info for ep in episodes for t in ep.turns):
        raise ValueError(f"reward_mode={reward_mode!r} needs an environment whose step info reports 'regret' "
                         "(the bandits do); use return_to_go for others")
    if any(t.completion_ids is None for ep in episodes for t in ep.turns):
        raise ValueError("episodes_to_rollout needs episodes played by a PolicyAgent (token records missing)")
    prompts, completions, masks, attention, logprobs, rewards, groups, reasons, texts, sources, observations = [], [], [], [], [], [], [], [], [], [], []
    order = sorted(range(len(episodes)), key=lambda i: group_ids[i])  # rows of a group are contiguous
    group_number: dict[Any, int] = {}

    def add(prompt, completion, mask, lps, reward, group_key, reason, text, observation):
        sources.append(i)
        observations.append(observation)
        prompts.append(prompt)
        texts.append(text)
        completions.append(completion)
        masks.append(mask)
        attention.append([1] * len(completion))
        logprobs.append(lps)
        rewards.append(reward)
        groups.append(group_number.setdefault(group_key, len(group_number)))
        reasons.append(reason)

    picked_turns: dict[int, list[int]] = {}
    for i in order:
        ep, gid = episodes[i], group_ids[i]
        reason = "length" if any(t.finish_reason == "length" for t in ep.turns) else "eos"
        if ep.context == "full":
            if reward_mode != "return":
                raise ValueError(f"reward_mode={reward_mode!r} needs context='last' (one row per turn)")
            first = ep.turns[0]
            completion, mask, lps = [], [], []
            for k, turn in enumerate(ep.turns):
                completion += turn.completion_ids
                mask += [1] * len(turn.completion_ids)
                lps += turn.logprobs
                if k + 1 < len(ep.turns):
                    sequence = first.prompt_ids + completion
                    following = ep.turns[k + 1].prompt_ids
                    if following[: len(sequence)] != sequence:
                        raise RuntimeError("turn prompts do not extend the conversation; the episode record is corrupt")
                    environment = following[len(sequence):]
                    completion += environment
                    mask += [0] * len(environment)
                    lps += [0.0] * len(environment)
            add(first.prompt_ids, completion, mask, lps, ep.episode_return, gid, reason, " | ".join(t.text for t in ep.turns),
                _observation(ep, 0))
            continue
        if reward_mode == "regret_to_go":
            to_go = [-r for r in returns_to_go([float(t.info["regret"]) for t in ep.turns])]
        elif reward_mode == "regret":
            to_go = [-float(t.info["regret"]) for t in ep.turns]
        else:
            to_go = returns_to_go([t.reward for t in ep.turns])
        if gid not in picked_turns:
            n = len(ep.turns)
            picked = torch.randperm(n, generator=generator)[:turns_per_episode].sort().values.tolist() if 0 < turns_per_episode < n else list(range(n))
            picked_turns[gid] = picked
        for k in picked_turns[gid]:
            if k >= len(ep.turns):
                continue
            turn = ep.turns[k]
            reward = ep.episode_return if reward_mode == "return" else to_go[k]
            key = gid if reward_mode == "return" else (gid, k)
            add(turn.prompt_ids, turn.completion_ids, [1] * len(turn.completion_ids), turn.logprobs, reward, key, turn.finish_reason, turn.text,
                _observation(ep, k))
    if reward_mode != "return":  # make each (group, turn) block contiguous
        perm = sorted(range(len(groups)), key=lambda r: groups[r])
        prompts, completions, masks, attention, logprobs, rewards, groups, reasons, texts, sources, observations = (
            [seq[r] for r in perm]
            for seq in (prompts, completions, masks, attention, logprobs, rewards, groups, reasons, texts, sources, observations)
        )
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    completion_ids = pad_values(completions, pad_id)
    rollout = Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=pad_values(masks, 0),
        sampled_logprobs=pad_values(logprobs, 0.0).float(),
        group_index=torch.tensor(groups, dtype=torch.long),
        finish_reason=reasons,
        prompts_text=observations,
        completions_text=texts,
        completion_attention_mask=pad_values(attention, 0),
    )
    return rollout, torch.tensor(rewards, dtype=torch.float32), sources
