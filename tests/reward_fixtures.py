"""Reward functions used by tests that run the trainer in a subprocess (imported as reward_fixtures:NAME)."""


def digit_share(completions, **kwargs):
    """Share of digit characters: a random tiny model gets a graded, non-constant reward from it."""
    return [sum(c.isdigit() for c in text) / max(1, len(text)) for text in completions]


def starts_with_digit(completions, **kwargs):
    """1.0 when a completion starts with a digit: about one sample in ten of a random tiny model."""
    return [float(text[:1].isdigit()) for text in completions]
