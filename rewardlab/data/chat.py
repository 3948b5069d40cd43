"""Turning chat-format prompts and completions into the text the model actually sees."""

from __future__ import annotations

from typing import Any

from rewardlab.data.records import DataError


def _require_template(tokenizer: Any, what: str) -> None:
    if not hasattr(tokenizer, "apply_chat_template") or not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise DataError(
            f"the tokenizer ({name}) has no chat_template, so a chat-format {what} cannot be rendered. "
            "Use plain-string prompts, load the tokenizer of an instruct/chat model, or set "
            "tokenizer.chat_template to a Jinja template."
        )


def _render(tokenizer: Any, messages: list[dict], add_generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    if not isinstance(text, str):  # some tokenizers return a one-element batch
        text = text[0]
    return text


def render_prompt(prompt: str | list[dict], tokenizer: Any) -> str:
    """A string prompt unchanged; a chat rendered with the tokenizer's template plus the generation prompt."""
    if isinstance(prompt, str):
        return prompt
    _require_template(tokenizer, "prompt")
    return _render(tokenizer, list(prompt), add_generation_prompt=True)


def render_completion(
    completion: str | list[dict], tokenizer: Any, prompt: str | list[dict] | None = None
) -> str:
    """The text a chat-format completion adds after the rendered prompt (the generation prompt included).

    A string completion is returned unchanged. For a chat, `prompt` holds the conversation before it;
    when omitted, `completion` must hold the whole conversation and its trailing assistant messages are
    the completion. The full conversation is rendered and the rendered prompt is cut off its front; if the
    template does not render the prompt as a prefix of the conversation, DataError says so.
    """
    if isinstance(completion, str):
        return completion
    messages = list(completion)
    if prompt is None:
        split = len(messages)
        while split > 0 and messages[split - 1].get("role") == "assistant":
            split -= 1
        if split == 0 or split == len(messages):
            raise DataError(
                "render_completion got a chat completion without prompt=, and could not split it into "
                "prompt messages followed by assistant messages; pass prompt= explicitly."
            )
        prompt, messages = messages[:split], messages[split:]
    if isinstance(prompt, str):
        raise DataError(
            "render_completion got a string prompt with a chat completion; use chat lists for both or "
            "strings for both."
        )
    _require_template(tokenizer, "completion")
    prefix = _render(tokenizer, list(prompt), add_generation_prompt=True)
    full = _render(tokenizer, list(prompt) + messages, add_generation_prompt=False)
    if not full.startswith(prefix):
        at = next((i for i, (a, b) in enumerate(zip(prefix, full)) if a != b), min(len(prefix), len(full)))
        raise DataError(
            "the chat template does not render the prompt as a prefix of prompt + completion (they differ at "
            f"character {at}: prompt renders {prefix[at:at + 40]!r}, conversation renders {full[at:at + 40]!r}). "
            "Such templates (e.g. ones that drop earlier reasoning) cannot split a completion off; "
            "pass the completion as a string instead."
        )
    return full[len(prefix):]


def render_conversation(messages: list[dict], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """A whole conversation rendered with the chat template (no generation prompt), and the character span
    of each assistant turn in it: from the end of the conversation before the turn, rendered with the
    generation prompt, to the end of the conversation through the turn. So a span holds what the model
    writes after the generation prompt (the reply and its end-of-turn text), the part SFT's
    assistant_only_loss trains on. DataError when the template does not render each earlier part as a
    prefix of the whole (templates that rewrite earlier turns)."""
    _require_template(tokenizer, "conversation")
    messages = list(messages)
    full = _render(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = _render(tokenizer, messages[:index], add_generation_prompt=True) if index else ""
        through = _render(tokenizer, messages[: index + 1], add_generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through)):
            raise DataError(
                f"the chat template does not render the conversation before assistant message {index} as a prefix "
                "of the whole conversation, so that message's tokens cannot be located; such templates (e.g. ones "
                "that drop earlier reasoning) cannot train on assistant turns only: set assistant_only_loss false."
            )
        spans.append((len(before), len(through)))
    return full, spans
