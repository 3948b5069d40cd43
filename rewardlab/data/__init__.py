"""Records in, validated and rendered: loading, schema checks, chat templates, reward-function columns."""

from rewardlab.data.chat import render_completion, render_prompt
from rewardlab.data.records import (
    DataError,
    columns,
    load_records,
    validate_preference_records,
    validate_prompt_records,
    validate_sft_records,
    validate_unpaired_records,
)
from rewardlab.data.sources import InMemoryData, as_source

__all__ = [
    "DataError",
    "InMemoryData",
    "as_source",
    "columns",
    "load_records",
    "render_completion",
    "render_prompt",
    "validate_preference_records",
    "validate_prompt_records",
    "validate_sft_records",
    "validate_unpaired_records",
]
