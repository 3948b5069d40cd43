"""SAC: the tanh-Gaussian log-prob, the soft target update, the entropy-coefficient loss, learning on a
one-step continuous bandit, and the policy round trip. Exact resume is in test_classic_runs.py."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewardlab.classic import sac
from rewardlab.classic.cli import main
from rewardlab.classic.networks import SquashedGaussianActor, squashed_gaussian_log_prob, to_env_box
from rewardlab.classic.policies import SquashedGaussianPolicy, load_policy
from rewardlab.classic.replay import ReplayBuffer


class ContinuousBanditEnv(gym.Env):
    """One step, a constant observation, a Box(-1, 1) action, reward -(a - 0.5)^2: the best action is 0.5."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        reward = -float((np.asarray(action)[0] - 0.5) ** 2)
        return np.zeros(1, np.float32), reward, True, False, {}


if "rewardlab_test/ContinuousBandit-v0" not in gym.registry:
    gym.register("rewardlab_test/ContinuousBandit-v0", entry_point=ContinuousBanditEnv)

BOX = {"kind": "box", "dim": 1, "low": [-2.0], "high": [2.0]}
OBS = {"kind": "box", "dim": 1}


def test_tanh_gaussian_log_prob_matches_hand_computation():
    # u = 0.5 under N(0, 1): log N = -0.125 - 0.5 log(2 pi); tanh correction log(1 - tanh(0.5)^2)
    u, mean, log_std = torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.tensor([[0.0]])
    expected = -0.125 - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(0.5) ** 2)
    assert squashed_gaussian_log_prob(u, mean, log_std).item() == pytest.approx(expected, abs=1e-6)
    # two dimensions, std 2 (log_std = log 2), mean 1: the terms add over dimensions
    u = torch.tensor([[1.0, -3.0]])
    mean, log_std = torch.tensor([[1.0, 1.0]]), torch.full((1, 2), math.log(2.0))
    gaussian = sum(-0.5 * ((x - 1.0) / 2.0) ** 2 - math.log(2.0) - 0.5 * math.log(2 * math.pi) for x in (1.0, -3.0))
    correction = sum(math.log(1 - math.tanh(x) ** 2) for x in (1.0, -3.0))
    assert squashed_gaussian_log_prob(u, mean, log_std).item() == pytest.approx(gaussian - correction, abs=1e-5)
    # far in the tail the naive formula gives log(0) = -inf; ours stays finite: log(1 - tanh^2) ~ 2 log 2 - 2|u|
    far = squashed_gaussian_log_prob(torch.tensor([[30.0]]), torch.tensor([[30.0]]), torch.tensor([[0.0]]))
    assert far.item() == pytest.approx(-0.5 * math.log(2 * math.pi) - (2 * math.log(2) - 60.0), abs=1e-4)


def test_tanh_gaussian_log_prob_integrates_to_one():
    # the density of a = tanh(u) over (-1, 1), integrated numerically, is 1 (the correction is right)
    a = torch.linspace(-0.999999, 0.999999, 400_001, dtype=torch.float64)[:, None]
    u = torch.atanh(a)
    density = squashed_gaussian_log_prob(u, torch.full_like(u, 0.3), torch.full_like(u, math.log(0.7))).exp()
    assert torch.trapezoid(density, a[:, 0]).item() == pytest.approx(1.0, abs=1e-3)


def test_actor_sample_and_numpy_twin_agree():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS, BOX, hidden_sizes=(8,))
    obs = np.array([[0.3], [-1.2]], np.float32)
    mean, _ = actor(torch.from_numpy(obs))
    np.testing.assert_allclose(actor.act(obs), np.tanh(mean.detach().numpy()), atol=1e-6)
    actions, log_probs = actor.sample(torch.from_numpy(obs))
    assert actions.abs().max() < 1 and log_probs.shape == (2,)
    # [-1, 1] -> the env's bounds [-2, 2]
    np.testing.assert_allclose(to_env_box(np.array([[-1.0], [0.0], [0.5], [1.0]]), BOX)[:, 0], [-2.0, 0.0, 1.0, 2.0])


def test_soft_target_update():
    online, target = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        online.weight.fill_(1.0), online.bias.fill_(-2.0), target.weight.fill_(3.0), target.bias.fill_(4.0)
    sac.soft_update(target, online, tau=0.25)
    assert target.weight.item() == pytest.approx(0.25 * 1.0 + 0.75 * 3.0)
    assert target.bias.item() == pytest.approx(0.25 * -2.0 + 0.75 * 4.0)
    assert online.weight.item() == 1.0  # the online network is untouched


def test_entropy_coefficient_loss_sign():
    # target entropy -1: a policy whose entropy (-log pi = 3) is above the target lowers alpha, one
    # whose entropy (-log pi = -3) is below raises it; the loss is -log_alpha * (log pi + target_entropy)
    for log_prob, direction in ((-3.0, -1), (3.0, +1)):
        log_alpha = torch.zeros(1, requires_grad=True)
        loss = sac.alpha_loss(log_alpha, torch.full((4,), log_prob), target_entropy=-1.0)
        loss.backward()
        assert loss.item() == pytest.approx(0.0)  # log_alpha = 0
        assert log_alpha.grad.item() == pytest.approx(-(log_prob - 1.0))
        assert np.sign(-log_alpha.grad.item()) == direction  # gradient descent moves log_alpha this way
    # the loss does not reach into the policy: log_probs are detached
    log_probs = torch.full((4,), 0.5, requires_grad=True)
    sac.alpha_loss(torch.zeros(1, requires_grad=True), log_probs, -1.0).backward()
    assert log_probs.grad is None


def test_soft_q_targets_hand_computed():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS, BOX, hidden_sizes=(4,))
    batch = {"obs": torch.zeros(2, 1), "actions": torch.zeros(2, 1), "rewards": torch.tensor([1.0, 2.0]),
             "next_obs": torch.ones(2, 1), "terminated": torch.tensor([0.0, 1.0])}

    class ConstantQ(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, obs, actions):
            return torch.full((obs.shape[0],), self.value)

    torch.manual_seed(1)
    targets = sac.soft_q_targets(batch, actor, [ConstantQ(5.0), ConstantQ(3.0)], alpha=0.5, gamma=0.9)
    torch.manual_seed(1)
    _, next_log_probs = actor.sample(batch["next_obs"])
    assert targets[0].item() == pytest.approx(1.0 + 0.9 * (3.0 - 0.5 * next_log_probs[0].item()), abs=1e-5)  # min of the two
    assert targets[1].item() == pytest.approx(2.0)  # terminated: no bootstrap


def test_replay_buffer_stores_box_actions():
    buffer = ReplayBuffer(capacity=3, obs_dim=1, action_dim=2)
    for i in range(4):
        buffer.add(np.array([i], np.float32), np.array([i, -i], np.float32), float(i), np.array([i + 1], np.float32), False)
    assert buffer.actions.dtype == np.float32 and buffer.size == 3
    np.testing.assert_array_equal(buffer.actions[0], [3.0, -3.0])  # slot 0 overwritten by the 4th transition
    restored = ReplayBuffer(capacity=3, obs_dim=1, action_dim=2)
    restored.load_state_dict(buffer.state_dict())
    np.testing.assert_array_equal(restored.actions, buffer.actions)
    batch = buffer.sample(5, np.random.default_rng(0))
    assert batch["actions"].shape == (5, 2) and batch["actions"].dtype == torch.float32


def bandit_config(quiet, **overrides):
    fields = {"env_id": "rewardlab_test/ContinuousBandit-v0", "total_steps": 400, "learning_starts": 50, "batch_size": 64,
              "learning_rate": 3e-3, "hidden_sizes": (32, 32), "log_every": 100, "checkpoint_every": 0}
    return sac.SACConfig(**{**quiet, **fields, **overrides})


def greedy_action(policy):
    return float(policy.act(np.zeros(1, np.float32))[0])


def test_learns_the_best_action_of_a_continuous_bandit(quiet, monkeypatch):
    untrained, _ = sac.train(bandit_config(quiet, name="untrained", total_steps=1))
    start = greedy_action(untrained)
    policy, history = sac.train(bandit_config(quiet, name="trained"))
    learned = greedy_action(policy)
    assert abs(learned - 0.5) < 0.15 and abs(learned - 0.5) < abs(start - 0.5) - 0.2, (start, learned)
    assert history[-1]["episode_return"] > -0.3  # uniform random actions average -(1/3 + 0.25) = -0.58

    # the same run with the actor's update direction flipped (ascending its loss) must not get there
    adam = torch.optim.Adam

    def flipped_actor_adam(params, **kwargs):
        params = list(params)
        kwargs["maximize"] = len(params) == 4  # the actor (2 layers); the critics hold 12 tensors, alpha 1
        return adam(params, **{k: v for k, v in kwargs.items() if k != "fused"})

    monkeypatch.setattr(torch.optim, "Adam", flipped_actor_adam)
    flipped, _ = sac.train(bandit_config(quiet, name="flipped", hidden_sizes=(32,)))
    assert abs(greedy_action(flipped) - 0.5) > 0.3


def test_policy_file_round_trip_and_cli_eval(quiet, tmp_path, capsys):
    config = bandit_config(quiet, env_id="Pendulum-v1", total_steps=300, learning_starts=100, batch_size=32, name="pend")
    policy, _ = sac.train(config)
    assert isinstance(policy, SquashedGaussianPolicy)
    loaded = load_policy(config.run_dir / "final" / "policy.pt")
    obs = np.array([0.6, 0.8, -1.0], np.float32)
    action = loaded.act(obs)
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0
    np.testing.assert_array_equal(action, policy.act(obs))
    sampled = {float(loaded.act(obs, deterministic=False)[0]) for _ in range(5)}
    assert len(sampled) > 1
    assert main(["eval", str(config.run_dir), "--episodes", "2", "--json"]) == 0
    assert '"eval_episodes": 2' in capsys.readouterr().out


def test_config_errors():
    with pytest.raises(ValueError, match="sac.tau must be in"):
        sac.SACConfig(tau=0.0)
    with pytest.raises(ValueError, match="sac needs a 1-D Box action space"):
        sac.train(sac.SACConfig(env_id="CartPole-v1", progress=False))
