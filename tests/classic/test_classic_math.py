"""Hand-computed checks of the estimators and update rules, on ChainEnv/LoopEnv (see conftest.py).

ChainEnv(length=3) from position 0 pays rewards 1, 2, 3 and terminates. The critic in these tests is
a single linear layer set to V(s) = s + 10, so V(0) = 10, V(1) = 11, V(2) = 12. gamma = 0.9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewardlab.classic.dqn import DQNConfig, td_targets, update_target
from rewardlab.classic.dqn import train as train_dqn
from rewardlab.classic.envs import EpisodeTracker, make_env, make_vec_env
from rewardlab.classic.networks import ActorCritic, NumpyMLP, QNetwork, mlp
from rewardlab.classic.q_learning import QLearningConfig, q_learning_update
from rewardlab.classic.q_learning import train as train_q_learning
from rewardlab.classic.reinforce import play_episodes, returns_to_go
from rewardlab.classic.replay import ReplayBuffer
from rewardlab.classic.returns import discounted_returns, gae
from rewardlab.classic.rollouts import collect_rollout
from rewardlab.classic.runs import read_trainer_state

CHAIN = "rewardlab_test/Chain-v0"
GAMMA = 0.9
BOX_1D = {"kind": "box", "dim": 1}
TWO_ACTIONS = {"kind": "discrete", "n": 2, "start": 0}


def linear_critic_agent() -> ActorCritic:
    """No hidden layers, so the critic is exactly V(s) = 1 * s + 10."""
    agent = ActorCritic(BOX_1D, TWO_ACTIONS, hidden_sizes=())
    with torch.no_grad():
        agent.critic[0].weight.fill_(1.0)
        agent.critic[0].bias.fill_(10.0)
    return agent


# --- tabular Q-learning ------------------------------------------------------------------------------


def test_q_learning_update_by_hand():
    q_table = np.zeros((2, 2))
    q_table[1] = [0.5, 2.0]
    # not terminated: target = 1 + 0.9 * max(0.5, 2.0) = 2.8; TD error 2.8 - 0 = 2.8; Q(0,1) = 0 + 0.1 * 2.8 = 0.28
    td_error = q_learning_update(q_table, 0, 1, 1.0, 1, False, learning_rate=0.1, gamma=GAMMA)
    assert td_error == pytest.approx(2.8, abs=1e-12)
    assert q_table[0, 1] == pytest.approx(0.28, abs=1e-12)
    # terminated: no bootstrap, target = 1; TD error 1 - 0.28 = 0.72; Q(0,1) = 0.28 + 0.1 * 0.72 = 0.352
    td_error = q_learning_update(q_table, 0, 1, 1.0, 1, True, learning_rate=0.1, gamma=GAMMA)
    assert td_error == pytest.approx(0.72, abs=1e-12)
    assert q_table[0, 1] == pytest.approx(0.352, abs=1e-12)
    assert q_table[0, 0] == 0.0 and list(q_table[1]) == [0.5, 2.0]  # nothing else moved


def test_q_learning_converges_to_closed_form_on_chain(quiet):
    # Both actions do the same, so Q*(s, .) = V*(s): V*(2) = 3, V*(1) = 2 + 0.9 * 3 = 4.7,
    # V*(0) = 1 + 0.9 * 4.7 = 5.23. Deterministic env + constant alpha 0.5: converges geometrically.
    config = QLearningConfig(env_id=CHAIN, env_kwargs={"discrete_obs": True}, total_steps=3000, gamma=GAMMA,
                             learning_rate=0.5, learning_rate_end=None, epsilon_start=1.0, epsilon_end=1.0, **quiet)
    policy, _ = train_q_learning(config)
    np.testing.assert_allclose(policy.q_table[:3], [[5.23, 5.23], [4.7, 4.7], [3.0, 3.0]], atol=1e-9)


def test_q_learning_bootstraps_through_time_limit(quiet):
    # LoopEnv never terminates; a 5-step time limit cuts every episode. Bootstrapping on truncation:
    # Q = 1 + 0.9 Q  ->  Q = 1 / (1 - 0.9) = 10. Treating the cut as terminal would drag Q toward 1.
    config = QLearningConfig(env_id="rewardlab_test/Loop-v0", env_kwargs={"max_episode_steps": 5}, total_steps=3000,
                             gamma=GAMMA, learning_rate=0.5, learning_rate_end=None, **quiet)
    policy, _ = train_q_learning(config)
    assert policy.q_table[0, 0] == pytest.approx(10.0, abs=1e-9)


# --- GAE / n-step returns through the real rollout collector ------------------------------------------


def chain_rollout(num_steps: int, **env_kwargs):
    envs = make_vec_env(CHAIN, 1, env_kwargs)
    obs, _ = envs.reset(seed=0)
    tracker = EpisodeTracker(1)
    rollout = collect_rollout(envs, linear_critic_agent(), obs, num_steps, np.random.default_rng(0), tracker)
    return rollout, tracker


def test_gae_and_n_step_returns_closed_form_on_chain():
    # 5 steps: s=0 r=1, s=1 r=2, s=2 r=3 (terminates; autoreset), s=0 r=1, s=1 r=2 (rollout ends in s=2).
    rollout, tracker = chain_rollout(5, length=3)
    np.testing.assert_array_equal(rollout.obs[:, 0, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(rollout.rewards[:, 0], [1, 2, 3, 1, 2])
    np.testing.assert_array_equal(rollout.terminated[:, 0], [False, False, True, False, False])
    np.testing.assert_allclose(rollout.values[:, 0], [10, 11, 12, 10, 11], atol=1e-6)
    # value of the state reached: V(1), V(2), 0 (terminal), V(1), V(2) (bootstrap at the rollout end)
    np.testing.assert_allclose(rollout.next_values[:, 0], [11, 12, 0, 11, 12], atol=1e-6)
    assert tracker.finished_returns == [6.0] and tracker.finished_lengths == [3]

    # lambda = 1: n-step returns. G2 = 3; G1 = 2 + 0.9*3 = 4.7; G0 = 1 + 0.9*4.7 = 5.23;
    # G4 = 2 + 0.9*V(2) = 12.8; G3 = 1 + 0.9*12.8 = 12.52 (= 1 + 0.9*2 + 0.81*12, the 2-step return)
    advantages, returns = gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated,
                              rollout.episode_end, GAMMA, 1.0)
    np.testing.assert_allclose(returns[:, 0], [5.23, 4.7, 3.0, 12.52, 12.8], atol=1e-5)
    np.testing.assert_allclose(advantages[:, 0], [-4.77, -6.3, -9.0, 2.52, 1.8], atol=1e-5)

    # lambda = 0.8 (gamma*lambda = 0.72). deltas: 1 + 0.9*11 - 10 = 0.9, 2 + 0.9*12 - 11 = 1.8,
    # 3 - 12 = -9, 0.9, 1.8. A4 = 1.8; A3 = 0.9 + 0.72*1.8 = 2.196; A2 = -9 (episode ends);
    # A1 = 1.8 + 0.72*(-9) = -4.68; A0 = 0.9 + 0.72*(-4.68) = -2.4696
    advantages, returns = gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated,
                              rollout.episode_end, GAMMA, 0.8)
    np.testing.assert_allclose(advantages[:, 0], [-2.4696, -4.68, -9.0, 2.196, 1.8], atol=1e-5)
    np.testing.assert_allclose(returns[:, 0], advantages[:, 0] + [10, 11, 12, 10, 11], atol=1e-5)


def test_truncation_bootstraps_from_final_obs_termination_does_not():
    # A 2-step time limit on a length-3 chain: s=0 r=1, s=1 r=2 -> cut in s=2 (not terminal); twice.
    rollout, _ = chain_rollout(4, length=3, max_episode_steps=2)
    np.testing.assert_array_equal(rollout.terminated[:, 0], [False] * 4)
    np.testing.assert_array_equal(rollout.episode_end[:, 0], [False, True, False, True])
    # after a cut, the state reached is s=2 from info["final_obs"]: V = 12, not V(reset obs 0) = 10, not 0
    np.testing.assert_allclose(rollout.next_values[:, 0], [11, 12, 11, 12], atol=1e-6)
    _, returns = gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.episode_end, GAMMA, 1.0)
    # G1 = 2 + 0.9*12 = 12.8; G0 = 1 + 0.9*12.8 = 12.52
    np.testing.assert_allclose(returns[:, 0], [12.52, 12.8, 12.52, 12.8], atol=1e-5)

    # The same two steps ending in a real termination (length-2 chain): G1 = 2, G0 = 1 + 0.9*2 = 2.8
    rollout, _ = chain_rollout(4, length=2)
    np.testing.assert_array_equal(rollout.terminated[:, 0], [False, True, False, True])
    _, returns = gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.episode_end, GAMMA, 1.0)
    np.testing.assert_allclose(returns[:, 0], [2.8, 2.0, 2.8, 2.0], atol=1e-5)


def test_gae_matches_slow_reference():
    """The backward recursion against the definition A_t = sum_k (gamma*lam)^k delta_{t+k} within the episode."""
    rng = np.random.default_rng(0)
    steps, envs, gamma, lam = 9, 3, 0.97, 0.9
    rewards, values, next_values = rng.normal(size=(3, steps, envs))
    terminated = rng.random((steps, envs)) < 0.15
    episode_end = terminated | (rng.random((steps, envs)) < 0.15)
    advantages, returns = gae(rewards, values, next_values, terminated, episode_end, gamma, lam)
    deltas = rewards + gamma * (1 - terminated) * next_values - values
    for env in range(envs):
        for t in range(steps):
            expected, weight = 0.0, 1.0
            for k in range(t, steps):
                expected += weight * deltas[k, env]
                if episode_end[k, env]:
                    break
                weight *= gamma * lam
            assert advantages[t, env] == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(returns, advantages + values, atol=1e-12)


def test_discounted_returns_closed_form():
    # Column 0: episode [1, 2, 3] terminated, then [1, 2] cut by a time limit in a state worth 12.
    # Column 1: one episode [1, 1, 1, 1, 1] that terminates.
    rewards = np.array([[1, 1], [2, 1], [3, 1], [1, 1], [2, 1]], dtype=float)
    episode_end = np.array([[0, 0], [0, 0], [1, 0], [0, 0], [1, 1]], dtype=bool)
    bootstrap = np.zeros((5, 2))
    bootstrap[4, 0] = 12.0
    returns = discounted_returns(rewards, episode_end, bootstrap, GAMMA)
    np.testing.assert_allclose(returns[:, 0], [5.23, 4.7, 3.0, 12.52, 12.8], atol=1e-12)
    # 1 + 0.9 + 0.81 + 0.729 + 0.6561 = 4.0951, then 3.439, 2.71, 1.9, 1
    np.testing.assert_allclose(returns[:, 1], [4.0951, 3.439, 2.71, 1.9, 1.0], atol=1e-12)


def test_reinforce_episodes_bootstrap_only_on_truncation():
    env = make_env(CHAIN, {"length": 3, "max_episode_steps": 2})
    obs, _ = env.reset(seed=0)
    agent = linear_critic_agent()
    batch, _ = play_episodes(env, agent, obs, 2, np.random.default_rng(0), EpisodeTracker(1))
    assert batch.truncated_rows == [1, 3]
    np.testing.assert_array_equal(batch.truncated_obs[:, 0], [2.0, 2.0])
    # bootstrapped: G1 = 2 + 0.9 * V(2) = 12.8, G0 = 12.52; without: G1 = 2, G0 = 2.8
    np.testing.assert_allclose(returns_to_go(batch, agent, GAMMA, True), [12.52, 12.8, 12.52, 12.8], atol=1e-5)
    np.testing.assert_allclose(returns_to_go(batch, agent, GAMMA, False), [2.8, 2.0, 2.8, 2.0], atol=1e-12)


# --- DQN pieces -----------------------------------------------------------------------------------------


def test_td_targets_dqn_and_double_dqn():
    # One-hot states, no hidden layer: Q(s) = column s of W. Target net: Q_t(1) = [5, 2].
    # Online net: Q(1) = [0, 1], so Double DQN picks action 1 and scores it with the target: 2.
    states = {"kind": "discrete", "n": 2, "start": 0}
    online, target = QNetwork(states, TWO_ACTIONS, hidden_sizes=()), QNetwork(states, TWO_ACTIONS, hidden_sizes=())
    with torch.no_grad():
        online.net[0].weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
        target.net[0].weight.copy_(torch.tensor([[1.0, 5.0], [3.0, 2.0]]))
        online.net[0].bias.zero_()
        target.net[0].bias.zero_()
    batch = {
        "rewards": torch.tensor([1.0, 1.0]),
        "next_obs": torch.tensor([[0.0, 1.0], [0.0, 1.0]]),
        "terminated": torch.tensor([0.0, 1.0]),
    }
    # DQN: 1 + 0.9 * max(5, 2) = 5.5; terminated row: 1
    torch.testing.assert_close(td_targets(batch, online, target, GAMMA, double_dqn=False), torch.tensor([5.5, 1.0]))
    # Double: 1 + 0.9 * Q_t(1, argmax Q(1)) = 1 + 0.9 * 2 = 2.8
    torch.testing.assert_close(td_targets(batch, online, target, GAMMA, double_dqn=True), torch.tensor([2.8, 1.0]))


def test_update_target_copy_and_polyak():
    spec_obs = {"kind": "box", "dim": 3}
    torch.manual_seed(0)
    online, target = QNetwork(spec_obs, TWO_ACTIONS), QNetwork(spec_obs, TWO_ACTIONS)
    before = [p.detach().clone() for p in target.parameters()]
    update_target(target, online, tau=0.25)
    for new, old, source in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(new, old + 0.25 * (source - old))
    update_target(target, online, tau=1.0)
    for new, source in zip(target.parameters(), online.parameters()):
        assert torch.equal(new, source)
    with torch.no_grad():  # a copy, not an alias: training the online net leaves the target alone
        next(online.parameters()).add_(1.0)
    assert not torch.equal(next(target.parameters()), next(online.parameters()))


def test_dqn_syncs_target_only_every_target_network_frequency(quiet):
    # Learning from step 1, a gradient step every step, target sync every 7 steps: right after the
    # sync at step 14 target == online; by step 20 six more gradient steps have moved the online net.
    config = DQNConfig(env_id="CartPole-v1", total_steps=20, learning_starts=0, train_frequency=1, batch_size=4,
                       target_network_frequency=7, checkpoint_every=14, keep_checkpoints=0, **quiet)
    train_dqn(config)
    for step, synced in ((14, True), (20, False)):
        state = read_trainer_state(config.run_dir / f"checkpoint-{step}")["stateful"]
        same = all(torch.equal(state["q_network"][k], state["target_network"][k]) for k in state["q_network"])
        assert same is synced, step


@pytest.mark.parametrize("length, time_limit, terminated", [(3, 2, [0, 0] * 3), (2, None, [0, 1] * 3)])
def test_dqn_replay_stores_reached_state_and_terminated_only(quiet, length, time_limit, terminated):
    # Six steps of the chain, no learning. Transitions 0->1 and 1->2: next_obs must be the state
    # reached (2), not the reset observation (0); `terminated` is set by termination, never by the cut.
    env_kwargs = {"length": length, **({"max_episode_steps": time_limit} if time_limit else {})}
    config = DQNConfig(env_id=CHAIN, env_kwargs=env_kwargs, total_steps=6, learning_starts=100, **quiet)
    train_dqn(config)
    buffer = read_trainer_state(config.run_dir / "checkpoint-6")["stateful"]["replay_buffer"]
    np.testing.assert_array_equal(buffer["obs"][:, 0].numpy(), [0, 1] * 3)
    np.testing.assert_array_equal(buffer["next_obs"][:, 0].numpy(), [1, 2] * 3)
    np.testing.assert_array_equal(buffer["rewards"].numpy(), [1, 2] * 3)
    np.testing.assert_array_equal(buffer["terminated"].numpy(), terminated)


def test_replay_buffer_overwrites_oldest_and_samples_uniformly():
    buffer = ReplayBuffer(capacity=4, obs_dim=1)
    for i in range(6):  # 0 and 1 get overwritten by 4 and 5
        buffer.add(np.array([i]), i % 2, 10.0 * i, np.array([i + 1]), i == 5)
    assert (buffer.size, buffer.position) == (4, 2)
    np.testing.assert_array_equal(buffer.obs[:, 0], [4, 5, 2, 3])

    batch = buffer.sample(20_000, np.random.default_rng(0))
    obs = batch["obs"][:, 0].numpy()
    assert set(obs.tolist()) == {2.0, 3.0, 4.0, 5.0}
    # every field of a sampled row comes from the same transition
    np.testing.assert_array_equal(batch["rewards"].numpy(), 10 * obs)
    np.testing.assert_array_equal(batch["next_obs"][:, 0].numpy(), obs + 1)
    np.testing.assert_array_equal(batch["actions"].numpy(), obs % 2)
    np.testing.assert_array_equal(batch["terminated"].numpy(), obs == 5)
    # uniform: each of the 4 frequencies is 0.25 with std sqrt(0.25*0.75/20000) = 0.003; allow 5 std
    frequencies = np.array([np.mean(obs == value) for value in (2, 3, 4, 5)])
    np.testing.assert_allclose(frequencies, 0.25, atol=0.015)


def test_replay_buffer_partial_fill_empty_and_state_roundtrip():
    buffer = ReplayBuffer(capacity=10, obs_dim=2)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1, np.random.default_rng(0))
    for i in range(3):
        buffer.add(np.array([i, -i]), 0, float(i), np.array([i, i]), False)
    assert set(buffer.sample(500, np.random.default_rng(1))["rewards"].tolist()) == {0.0, 1.0, 2.0}
    restored = ReplayBuffer(capacity=10, obs_dim=2)
    restored.load_state_dict(buffer.state_dict())
    assert (restored.size, restored.position) == (3, 3)
    np.testing.assert_array_equal(restored.obs, buffer.obs)


# --- fast paths against their references -------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_mlp_matches_torch_and_follows_weight_updates(activation):
    torch.manual_seed(0)
    module = mlp(5, (16, 8), 3, activation, out_gain=1.0)
    fast = NumpyMLP(module)
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(fast(x), module(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)  # in-place update: the numpy views see it
    module(torch.from_numpy(x)).sum().backward()
    optimizer.step()
    np.testing.assert_allclose(fast(x), module(torch.from_numpy(x)).detach().numpy(), atol=1e-6)


@pytest.mark.parametrize("actions", [{"kind": "discrete", "n": 3, "start": 0}, {"kind": "box", "dim": 2, "low": [-1, -1], "high": [1, 1]}])
def test_sampled_log_probs_match_log_prob_entropy(actions):
    torch.manual_seed(0)
    agent = ActorCritic({"kind": "box", "dim": 4}, actions)
    with torch.no_grad():  # larger output weights than the 0.01 init, so the check is not trivially uniform
        agent.actor[-1].weight.mul_(100)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    sampled, log_probs, values = agent.sample(obs, np.random.default_rng(1))
    reference, _ = agent.log_prob_entropy(torch.from_numpy(obs), torch.from_numpy(sampled))
    np.testing.assert_allclose(log_probs, reference.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(values, agent.value(torch.from_numpy(obs)).detach().numpy(), atol=1e-6)


def test_discrete_sampling_frequencies_follow_softmax():
    agent = ActorCritic({"kind": "box", "dim": 1}, {"kind": "discrete", "n": 3, "start": 0}, hidden_sizes=())
    with torch.no_grad():
        agent.actor[0].weight.zero_()
        agent.actor[0].bias.copy_(torch.log(torch.tensor([0.2, 0.5, 0.3])))
    actions, _, _ = agent.sample(np.zeros((30_000, 1), np.float32), np.random.default_rng(0))
    # std of each frequency <= sqrt(0.25 / 30000) = 0.0029; allow 5 std
    np.testing.assert_allclose(np.bincount(actions, minlength=3) / 30_000, [0.2, 0.5, 0.3], atol=0.015)
