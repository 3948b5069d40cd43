"""Learning tests for the five classic algorithms: a short run on a fixed tiny problem must raise the
return or lower the value error far past run-to-run noise, measured here on the untrained start and
the saved final/ policy, so a flipped update direction fails.

Margins were checked over seeds 0-4 (and with the update's sign flipped, which must fail); the numbers
seen are in each test's docstring. Each test runs one fixed seed.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rewardlab.classic import a2c, dqn, ppo, q_learning, reinforce
from rewardlab.classic.envs import action_spec, make_env, obs_spec
from rewardlab.classic.evaluate import evaluate
from rewardlab.classic.networks import ActorCritic
from rewardlab.classic.policies import TabularPolicy, load_policy
from rewardlab.runs import set_seed

SEED = 0
FAST = {"progress": False, "tensorboard": False, "eval_episodes": 0, "checkpoint_every": 0, "torch_threads": 1}


class SignEnv(gym.Env):
    """A contextual bandit played 4 times an episode: each step shows x ~ U(-1, 1) and pays 1 for
    action 1 when x > 0, for action 0 otherwise. The expected return of a policy is 4 mean_x p(right | x):
    2 for a coin flip, 4 for the best policy."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)
    horizon = 4

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.x = self.np_random.uniform(-1.0, 1.0, (1,)).astype(np.float32)
        return self.x, {}

    def step(self, action):
        reward = float(int(action) == int(self.x[0] > 0))
        self.t += 1
        self.x = self.np_random.uniform(-1.0, 1.0, (1,)).astype(np.float32)
        return self.x, reward, self.t >= self.horizon, False, {}


if "rewardlab_test/Sign-v0" not in gym.registry:
    gym.register("rewardlab_test/Sign-v0", entry_point=SignEnv)


# ---------------------------------------------------------------- value-based: error to the true Q*


def frozen_lake_q_star(gamma: float) -> np.ndarray:
    """Q* of the deterministic 4x4 FrozenLake by value iteration on its transition table."""
    P = make_env("FrozenLake-v1", {"is_slippery": False}).unwrapped.P
    q = np.zeros((16, 4))
    for _ in range(100):
        v = q.max(1)
        q = np.array([[sum(p * (r + gamma * (not done) * v[s2]) for p, s2, r, done in P[s][a]) for a in range(4)] for s in range(16)])
    return q


def q_learning_before_after(tmp_path, seed: int) -> dict[str, float]:
    gamma = 0.9
    config = q_learning.QLearningConfig(env_id="FrozenLake-v1", env_kwargs={"is_slippery": False}, total_steps=4000,
                                        learning_rate=0.5, learning_rate_end=None, gamma=gamma, exploration_fraction=0.5,
                                        seed=seed, runs_dir=str(tmp_path), name="q", log_every=1000, **FAST)
    q_learning.train(config)
    final = load_policy(tmp_path / "q" / "final" / "policy.pt")
    start = TabularPolicy(np.zeros((16, 4)))  # Q-learning starts from an all-zero table
    q_star = frozen_lake_q_star(gamma)
    reachable = q_star.max(1) > 0  # states from which the goal can be reached (not holes, not the goal)
    error = lambda policy: float(np.abs(policy.q_table - q_star)[reachable].mean())  # noqa: E731
    ret = lambda policy: evaluate(policy, "FrozenLake-v1", 5, seed=1000, env_kwargs={"is_slippery": False}).mean  # noqa: E731
    return {"error_before": error(start), "error_after": error(final), "return_before": ret(start), "return_after": ret(final)}


def test_q_learning_finds_q_star_and_the_goal(tmp_path):
    """Deterministic FrozenLake, gamma 0.9. Seeds 0-4: mean |Q - Q*| over the states that can reach
    the goal 0.55 -> 0.06-0.13, greedy return 0 -> 1; update sign flipped: error 0.58-0.64, return stays 0."""
    seen = q_learning_before_after(tmp_path, SEED)
    assert seen["error_after"] < 0.35 * seen["error_before"], seen
    assert seen["return_before"] == 0.0 and seen["return_after"] == 1.0, seen


CHAIN_GAMMA = 0.9


def chain_q_star(length: int = 3) -> np.ndarray:
    """Q*(position) of tests/classic/conftest.py's ChainEnv: rewards position + 1 until `length`."""
    return np.array([sum(CHAIN_GAMMA ** (k - s) * (k + 1) for k in range(s, length)) for s in range(length)])


def dqn_before_after(tmp_path, seed: int) -> tuple[float, float]:
    config = dqn.DQNConfig(env_id="rewardlab_test/Chain-v0", total_steps=1500, learning_starts=100, train_frequency=1,
                           batch_size=32, target_network_frequency=50, learning_rate=3e-3, gamma=CHAIN_GAMMA,
                           hidden_sizes=(32,), exploration_fraction=0.5, seed=seed, runs_dir=str(tmp_path), name="dqn",
                           log_every=500, **FAST)
    dqn.train(config)
    final = load_policy(tmp_path / "dqn" / "final" / "policy.pt").q_network
    set_seed(seed)  # what train() does before it builds the network: the untrained start
    env = make_env(config.env_id)
    start = type(final)(obs_spec(env.observation_space), action_spec(env.action_space, "dqn", False), config.hidden_sizes)
    states = torch.arange(3, dtype=torch.float32)[:, None]
    q_star = torch.from_numpy(chain_q_star()).float()[:, None]
    with torch.no_grad():
        return tuple(float((net(states) - q_star).abs().mean()) for net in (start, final))


def test_dqn_regresses_q_onto_the_bootstrapped_target(tmp_path):
    """The 3-step chain (rewards 1, 2, 3; Q* = 5.23, 4.7, 3). Seeds 0-4: mean |Q - Q*| 4.2-4.8 -> 0.002-0.015;
    loss negated: it diverges (2000-3300)."""
    before, after = dqn_before_after(tmp_path, SEED)
    assert after < 0.1 * before, (before, after)


# ---------------------------------------------------------------- policy gradient: expected return


def expected_return(agent: ActorCritic) -> float:
    """SignEnv's expected return under the stochastic policy, exactly: 4 * mean_x p(right action | x)."""
    x = torch.linspace(-1, 1, 201)[:, None]
    right = (x[:, 0] > 0).long()
    with torch.no_grad():
        log_p, _ = agent.log_prob_entropy(x, right)
    return SignEnv.horizon * float(log_p.exp().mean())


def pg_before_after(tmp_path, module, config_class, seed: int, **options) -> tuple[float, float]:
    config = config_class(env_id="rewardlab_test/Sign-v0", seed=seed, runs_dir=str(tmp_path), name="pg", **FAST, **options)
    module.train(config)
    final = load_policy(tmp_path / "pg" / "final" / "policy.pt").agent
    set_seed(seed)  # what train() does before it builds the agent: the untrained start
    env = make_env(config.env_id)
    start = ActorCritic(obs_spec(env.observation_space), action_spec(env.action_space, config.algo, True),
                        config.hidden_sizes, config.activation)
    return expected_return(start), expected_return(final)


def test_reinforce_raises_the_expected_return(tmp_path):
    """Seeds 0-4: expected return 2.00 -> 3.82-3.97 (best 4); loss negated: 0.08-1.78."""
    before, after = pg_before_after(tmp_path, reinforce, reinforce.ReinforceConfig, SEED, total_steps=2000,
                                    episodes_per_update=4, learning_rate=1e-2, anneal_lr=False, log_every=500)
    assert after > before + 1.4, (before, after)


def test_a2c_raises_the_expected_return(tmp_path):
    """Seeds 0-4: expected return 2.00 -> 3.80-3.92 (best 4); loss negated: 0.12-2.01."""
    before, after = pg_before_after(tmp_path, a2c, a2c.A2CConfig, SEED, total_steps=2000, learning_rate=5e-3,
                                    log_every=500)
    assert after > before + 1.4, (before, after)


def test_ppo_raises_the_expected_return(tmp_path):
    """Seeds 0-4: expected return 2.00 -> 3.86-3.93 (best 4); loss negated: 0.25-0.43."""
    before, after = pg_before_after(tmp_path, ppo, ppo.PPOConfig, SEED, total_steps=2048, num_envs=4, num_steps=32,
                                    learning_rate=3e-3, anneal_lr=False, log_every=512)
    assert after > before + 1.4, (before, after)
