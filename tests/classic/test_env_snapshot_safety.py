"""envs.pkl is unpickled only when this user's key signed it: a planted or edited snapshot never runs."""

import os
import pickle

import numpy as np
import pytest

from rewardlab.classic.envs import (
    SNAPSHOT_MAGIC,
    UnverifiedSnapshotError,
    env_snapshot_bytes,
    load_env_snapshot,
    make_env,
)


class Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_signed_snapshot_restores_the_env_mid_episode():
    env = make_env("CartPole-v1")
    obs, _ = env.reset(seed=3)
    for _ in range(5):
        obs, *_ = env.step(0)
    restored, restored_obs = load_env_snapshot(env_snapshot_bytes(env, obs))
    assert np.array_equal(restored_obs, obs)
    assert np.array_equal(restored.step(1)[0], env.step(1)[0])


@pytest.mark.parametrize("how", ["unsigned", "edited", "other_key"])
def test_a_planted_or_altered_snapshot_is_refused_and_never_runs(tmp_path, monkeypatch, how):
    marker = tmp_path / "ran"
    payload = pickle.dumps(Planted(marker))
    if how == "unsigned":
        data = payload
    elif how == "edited":  # a genuine snapshot whose pickle was swapped after signing
        env = make_env("CartPole-v1")
        obs, _ = env.reset(seed=0)
        genuine = env_snapshot_bytes(env, obs)
        data = genuine[: len(SNAPSHOT_MAGIC) + 32] + payload
    else:  # signed, but with another machine's (an attacker's) key
        monkeypatch.setenv("REWARDLAB_KEY_DIR", str(tmp_path / "attacker"))
        env = make_env("CartPole-v1")
        obs, _ = env.reset(seed=0)
        import hashlib
        import hmac

        from rewardlab.classic.envs import snapshot_key

        data = SNAPSHOT_MAGIC + hmac.new(snapshot_key(), payload, hashlib.sha256).digest() + payload
        monkeypatch.setenv("REWARDLAB_KEY_DIR", str(tmp_path / "victim"))
    with pytest.raises(UnverifiedSnapshotError):
        load_env_snapshot(data)
    assert not marker.exists()


def test_the_key_is_readable_by_its_owner_only(tmp_path, monkeypatch):
    from rewardlab.classic.envs import snapshot_key

    monkeypatch.setenv("REWARDLAB_KEY_DIR", str(tmp_path))
    assert len(snapshot_key()) == 32 and snapshot_key() == snapshot_key()
    assert (tmp_path / "snapshot.key").stat().st_mode & 0o777 == 0o600
