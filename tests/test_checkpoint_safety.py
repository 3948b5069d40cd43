"""trainer_state.pt is loaded weights-only: a checkpoint cannot run code on --resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rewardlab.models import build_char_tokenizer, build_tiny_model
from rewardlab.trainers.checkpoint import STATE_FILE, UnsafeCheckpointError, load_checkpoint, save_checkpoint


class Planted:
    """What an attacker adds to a checkpoint: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def small_run():
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    optimizer.step()
    scheduler.step()
    return model, tok, optimizer, scheduler


def test_a_checkpoint_round_trips_weights_only_with_the_rng_state(tmp_path):
    model, tok, optimizer, scheduler = small_run()
    np.random.seed(3)
    path = save_checkpoint(tmp_path, 1, model, tok, optimizer, scheduler, {"data_cursor": 7}, 0)
    expected = np.random.rand(3)
    np.random.seed(99)
    state = load_checkpoint(path, *small_run()[:1], optimizer, scheduler)
    assert state["extra"]["data_cursor"] == 7
    np.testing.assert_array_equal(np.random.rand(3), expected)  # numpy's RNG state came back through the allow-list


def test_a_planted_object_is_refused_and_never_runs(tmp_path):
    model, tok, optimizer, scheduler = small_run()
    path = save_checkpoint(tmp_path, 1, model, tok, optimizer, scheduler, {}, 0)
    marker = tmp_path / "planted-code-ran"
    state = torch.load(path / STATE_FILE, weights_only=False)  # the test writes the attack itself
    state["extra"]["evil"] = Planted(marker)
    torch.save(state, path / STATE_FILE)
    with pytest.raises(UnsafeCheckpointError, match=str(path / STATE_FILE)):
        load_checkpoint(path, model, optimizer, scheduler)
    assert not marker.exists()
