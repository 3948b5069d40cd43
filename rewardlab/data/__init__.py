"""Records in, validated and rendered: loading, schema checks, chat templates, reward-function columns."""

from rewardlab.data.chat import render_completion, render_prompt
from rewardlab.data.records import (
    DataError,
    columns,
    load_records,
    validate_preference_records,
    validate_prompt_records,
    validate_unpaired_records,
)

__all__ = [
    "DataError",
    "columns",
    "load_records",
    "render_completion",
    "render_prompt",
    "validate_preference_records",
    "validate_prompt_records",
    "validate_unpaired_records",
]
