import os
import tempfile

import pytest
import torch

from rewardlab.models import build_char_tokenizer, build_tiny_model

# the classic env-snapshot signing key (classic/envs.py): the tests' own, never the user's
os.environ.setdefault("REWARDLAB_KEY_DIR", tempfile.mkdtemp(prefix="rewardlab-test-key-"))


@pytest.fixture(scope="session")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture()
def tiny_model(tokenizer):
    # two layers keep tests fast; the architecture is the same as the default
    return build_tiny_model(tokenizer, seed=0, hidden_size=64, intermediate_size=128, num_hidden_layers=2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
